//! One generation of the adapter: log in on the bot's device, start the sender, and — once the gateway
//! opens — sync: invites, then each room's new messages, then the token.
//!
//! **Invariant:** the token is committed after the batch it confirms is handled, never before (see the
//! crate's invariants); a batch that cannot be stored is synced again from the old token.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use herald_gateway::backoff::{Backoff, Jitter, pause};
use herald_gateway::commands::{self, Caller, CommandDesk};
use herald_gateway::engine::{Engine, SubmitError};
use herald_gateway::health::HealthHandle;
use herald_gateway::journal::{JournalError, SessionKey};
use herald_home::records::HealthState;
use matrix_sdk::config::{RequestConfig, SyncSettings};
use matrix_sdk::deserialized_responses::TimelineEvent;
use matrix_sdk::ruma::api::client::receipt::create_receipt::v3::ReceiptType;
use matrix_sdk::ruma::events::receipt::ReceiptThread;
use matrix_sdk::ruma::events::room::message::{MessageType, Relation, RoomMessageEventContent};
use matrix_sdk::ruma::events::{AnySyncMessageLikeEvent, AnySyncTimelineEvent, SyncMessageLikeEvent};
use matrix_sdk::ruma::{OwnedDeviceId, OwnedUserId};
use matrix_sdk::{Client, Room, RoomState};
use tokio::sync::watch;

use crate::device::{DeviceRecord, Paths, StoreCheck};
use crate::route::{self, Incoming, Me, Route};
use crate::send::{self, Queue};
use crate::{ADAPTER, MatrixOptions, Secret};

/// How long to wait after the homeserver failed: 1 s, 2 s, 4 s … 30 s.
const RETRY: Backoff = Backoff {
    base: Duration::from_secs(1),
    max: Duration::from_secs(30),
    jitter: Jitter::Tenth,
};

/// How long to wait after the homeserver refused the credentials: 5 s … 10 min (a person has to fix
/// them; meanwhile the rest of the gateway serves).
const CREDENTIALS_RETRY: Backoff = Backoff {
    base: Duration::from_secs(5),
    max: Duration::from_secs(600),
    jitter: Jitter::Tenth,
};

/// Longer than a sync may take on a healthy server: its long-poll timeout plus this.
const SYNC_MARGIN: Duration = Duration::from_secs(30);

/// Why a login did not happen.
pub(crate) enum ConnectError {
    /// The homeserver refused the password or token.
    Credentials(String),
    /// The home's device record or key store needs a person.
    Store(String),
    /// Anything else: the network, the homeserver, the client library (tried again).
    Other(String),
}

/// Runs one generation until `stop`.
pub(crate) async fn run(
    options: MatrixOptions,
    engine: Arc<Engine>,
    health: HealthHandle,
    queue: Queue,
    mut opened: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(client) = connect(&options, &health, &mut stop).await else {
        return;
    };
    let sender = tokio::spawn(send::run(
        client.clone(),
        options.clone(),
        engine.clone(),
        health.clone(),
        queue,
        stop.clone(),
    ));
    let go = tokio::select! {
        opened = opened.wait_for(|o| *o) => opened.is_ok(),
        _ = stop.wait_for(|s| *s) => false,
    };
    if go {
        let mut retry = TASK_RESTART.retries();
        loop {
            // A panic in the loop restarts the loop alone (the sender keeps delivering).
            let task = tokio::spawn(sync_loop(
                client.clone(),
                options.clone(),
                engine.clone(),
                health.clone(),
                stop.clone(),
            ));
            let abort = task.abort_handle();
            let outcome = task.await;
            abort.abort();
            match outcome {
                Err(e) if e.is_panic() && !*stop.borrow() => {
                    let wait = retry.next_delay();
                    tracing::error!("matrix: the sync task failed (a panic); restarting it in {wait:?}");
                    health.set(
                        HealthState::Degraded,
                        Some("the sync task failed; restarting it".into()),
                    );
                    health.restarted();
                    if !pause(wait, &mut stop).await {
                        break;
                    }
                }
                _ => break,
            }
        }
    }
    // The sender ends at the stop (after the drain, replies still go out).
    let _ = sender.await;
}

/// How long a sync task that failed waits before it runs again.
const TASK_RESTART: Backoff = Backoff {
    base: Duration::from_secs(1),
    max: Duration::from_secs(60),
    jitter: Jitter::Tenth,
};

/// Logs in, retrying until it works or `stop`.
async fn connect(
    options: &MatrixOptions,
    health: &HealthHandle,
    stop: &mut watch::Receiver<bool>,
) -> Option<Client> {
    let mut network = RETRY.retries();
    let mut credentials = CREDENTIALS_RETRY.retries();
    loop {
        let wait = match login(options).await {
            Ok(client) => {
                tracing::info!(
                    user = %options.user_id,
                    device = ?client.device_id().map(|d| d.to_string()),
                    "matrix: logged in"
                );
                health.set(HealthState::Connected, None);
                return Some(client);
            }
            Err(ConnectError::Credentials(why)) => {
                tracing::error!("matrix: {why}; the rest of the gateway keeps serving");
                health.set(HealthState::BadCredentials, Some(why));
                credentials.next_delay()
            }
            Err(ConnectError::Store(why)) => {
                tracing::error!("matrix: {why}");
                health.set(HealthState::BadCredentials, Some(why));
                credentials.next_delay()
            }
            Err(ConnectError::Other(why)) => {
                tracing::warn!("matrix: cannot log in: {why}");
                health.set(HealthState::Degraded, Some(format!("cannot log in: {why}")));
                network.next_delay()
            }
        };
        if !pause(wait, stop).await {
            return None;
        }
    }
}

/// One login: check the home's device, build the client on its store, log in on that device.
async fn login(options: &MatrixOptions) -> Result<Client, ConnectError> {
    let paths = Paths::of(&options.home);
    let known = match paths
        .check(&options.user_id, &options.homeserver)
        .map_err(ConnectError::Store)?
    {
        StoreCheck::Fresh => None,
        StoreCheck::Known(record) => Some(record),
        StoreCheck::Lost { why, .. } => return Err(ConnectError::Store(why)),
        StoreCheck::OtherAccount(record) => {
            return Err(ConnectError::Store(format!(
                "{} is the device of {} on {}, but [matrix] names {} on {}: move {} aside to start \
                 over with this account",
                paths.record().display(),
                record.user_id,
                record.homeserver,
                options.user_id,
                options.homeserver,
                paths.dir.display()
            )));
        }
    };
    for dir in [paths.dir.clone(), paths.store()] {
        options
            .home
            .ensure_private_dir(&dir)
            .map_err(|e| ConnectError::Store(format!("cannot make {}: {e}", dir.display())))?;
    }
    let client = Client::builder()
        .homeserver_url(&options.homeserver)
        .sqlite_store(paths.store(), None)
        .request_config(
            RequestConfig::new()
                .timeout(Duration::from_secs(30))
                .retry_limit(1),
        )
        .build()
        .await
        .map_err(|e| {
            ConnectError::Other(format!(
                "cannot open the Matrix client on {}: {e}",
                paths.store().display()
            ))
        })?;
    let user: OwnedUserId = options.user_id.parse().map_err(|e| {
        ConnectError::Credentials(format!("{} is not a Matrix user id: {e}", options.user_id))
    })?;
    let device: OwnedDeviceId = match &options.secret {
        Secret::Password(password) => {
            let mut login = client
                .matrix_auth()
                .login_username(&user, password)
                .initial_device_display_name(&options.device_name);
            if let Some(record) = &known {
                login = login.device_id(&record.device_id);
            }
            login.send().await.map_err(|e| classify(&e))?.device_id
        }
        Secret::AccessToken(token) => {
            let device = token_device(options, &user, token).await?;
            if let Some(record) = &known
                && record.device_id != device.as_str()
            {
                return Err(ConnectError::Store(format!(
                    "the access token is device {device}'s, but the keys in {} are device {}'s: use a token \
                     of that device, or move {} aside to start over as {device}",
                    paths.store().display(),
                    record.device_id,
                    paths.dir.display()
                )));
            }
            let session = matrix_sdk::authentication::matrix::MatrixSession {
                meta: matrix_sdk::SessionMeta {
                    user_id: user.clone(),
                    device_id: device.clone(),
                },
                tokens: matrix_sdk::SessionTokens {
                    access_token: token.clone(),
                    refresh_token: None,
                },
            };
            client.restore_session(session).await.map_err(|e| classify(&e))?;
            device
        }
    };
    paths
        .save(&DeviceRecord {
            user_id: options.user_id.clone(),
            device_id: device.to_string(),
            homeserver: options.homeserver.clone(),
        })
        .map_err(ConnectError::Store)?;
    Ok(client)
}

/// The device an access token belongs to (`/account/whoami`, on a client without a store).
pub(crate) async fn token_device(
    options: &MatrixOptions,
    user: &OwnedUserId,
    token: &str,
) -> Result<OwnedDeviceId, ConnectError> {
    let probe = Client::builder()
        .homeserver_url(&options.homeserver)
        .request_config(
            RequestConfig::new()
                .timeout(Duration::from_secs(30))
                .retry_limit(1),
        )
        .build()
        .await
        .map_err(|e| ConnectError::Other(e.to_string()))?;
    let session = matrix_sdk::authentication::matrix::MatrixSession {
        meta: matrix_sdk::SessionMeta {
            user_id: user.clone(),
            device_id: "HERALDPROBE".into(),
        },
        tokens: matrix_sdk::SessionTokens {
            access_token: token.to_owned(),
            refresh_token: None,
        },
    };
    probe.restore_session(session).await.map_err(|e| classify(&e))?;
    let who = probe.whoami().await.map_err(|e| {
        if matches!(
            e.client_api_error_kind(),
            Some(
                matrix_sdk::ruma::api::error::ErrorKind::UnknownToken(_)
                    | matrix_sdk::ruma::api::error::ErrorKind::Forbidden
            )
        ) {
            ConnectError::Credentials(format!("the homeserver refused the access token ({e})"))
        } else {
            ConnectError::Other(e.to_string())
        }
    })?;
    if who.user_id != *user {
        return Err(ConnectError::Credentials(format!(
            "the access token is {}'s, not {user}'s",
            who.user_id
        )));
    }
    who.device_id.ok_or_else(|| {
        ConnectError::Credentials("the access token has no device (an appservice token?)".into())
    })
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Credentials(why) | ConnectError::Store(why) | ConnectError::Other(why) => {
                f.write_str(why)
            }
        }
    }
}

fn classify(e: &matrix_sdk::Error) -> ConnectError {
    use matrix_sdk::ruma::api::error::ErrorKind;
    match e.client_api_error_kind() {
        Some(ErrorKind::Forbidden | ErrorKind::UnknownToken(_) | ErrorKind::UserDeactivated) => {
            ConnectError::Credentials(format!("the homeserver refused the login ({e})"))
        }
        _ => ConnectError::Other(e.to_string()),
    }
}

/// Why a batch was not handled.
enum BatchError {
    Draining,
    Journal(JournalError),
}

/// Syncs until `stop` or a drain, handling each batch before committing its token.
async fn sync_loop(
    client: Client,
    options: MatrixOptions,
    engine: Arc<Engine>,
    health: HealthHandle,
    mut stop: watch::Receiver<bool>,
) {
    let mut drain = engine.turns().drain_signal();
    let mut retry = RETRY.retries();
    let mut token = loop {
        match engine.adapter_cursor(ADAPTER).await {
            Ok(token) => break token,
            Err(e) => {
                health.set(
                    HealthState::Degraded,
                    Some(format!("cannot read the sync token: {e}")),
                );
                if !pause(retry.next_delay(), &mut stop).await {
                    return;
                }
            }
        }
    };
    // Among replicas sharing a journal, a sync never outlasts this replica's lease on the account (see
    // `herald_gateway::cluster`), as Telegram's poll does not.
    let cluster = engine.cluster().cloned();
    let sync_timeout = match &cluster {
        Some(cluster) => options.sync_timeout.min(cluster.lease_ttl() / 4),
        None => options.sync_timeout,
    };
    let deadline = sync_timeout + SYNC_MARGIN;
    health.expect_inbound_every(deadline * 2);
    let desk = CommandDesk::new(engine.clone(), health.board().clone());
    let display_name = client.account().get_display_name().await.ok().flatten();
    let mut declined = HashSet::new();
    let mut strangers = HashSet::new();
    loop {
        if *drain.borrow() || *stop.borrow() {
            return;
        }
        if let Some(cluster) = &cluster {
            let needed = sync_timeout + cluster.lease_ttl() / 10;
            while cluster.lease_left() < needed {
                if cluster.lost().borrow().is_some() || !pause(Duration::from_millis(50), &mut stop).await {
                    return;
                }
            }
        }
        let settings = match &token {
            Some(token) => SyncSettings::default().token(token.clone()).timeout(sync_timeout),
            // The first sync of this home: the rooms' state, and no waiting.
            None => SyncSettings::default().timeout(Duration::ZERO),
        };
        let synced = tokio::select! {
            synced = tokio::time::timeout(deadline, client.sync_once(settings)) => synced,
            _ = stop.wait_for(|s| *s) => return,
            _ = drain.wait_for(|d| *d) => return,
        };
        let response = match synced {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                let (state, wait) = match classify(&e) {
                    ConnectError::Credentials(why) => {
                        tracing::error!("matrix: {why}");
                        (
                            HealthState::BadCredentials,
                            CREDENTIALS_RETRY.base.max(retry.next_delay()),
                        )
                    }
                    ConnectError::Store(why) | ConnectError::Other(why) => {
                        let wait = retry.next_delay();
                        tracing::warn!(
                            "matrix: sync failed: {why}; retrying in {:.1} s",
                            wait.as_secs_f64()
                        );
                        (HealthState::Degraded, wait)
                    }
                };
                health.set(state, Some(format!("sync failed: {e}")));
                if !pause(wait, &mut stop).await {
                    return;
                }
                continue;
            }
            Err(_elapsed) => {
                tracing::warn!("matrix: no answer to a sync within {deadline:?}; syncing again");
                health.set(
                    HealthState::Degraded,
                    Some(format!("no answer to a sync within {} s", deadline.as_secs())),
                );
                continue;
            }
        };
        retry.reset();
        health.inbound();
        health.set(HealthState::Connected, None);
        let me = Me {
            user_id: &options.user_id,
            display_name: display_name.as_deref(),
        };
        answer_invites(&client, &options, &mut declined).await;
        // History from before this home's first sync is not answered: only what comes after.
        let first = token.is_none();
        let mut outcome = Ok(());
        for (room_id, update) in &response.rooms.joined {
            let Some(room) = client.get_room(room_id) else {
                continue;
            };
            if first {
                continue;
            }
            for event in &update.timeline.events {
                let handled = handle_event(&engine, &desk, &options, &me, &room, event, &mut strangers).await;
                if let Err(e) = handled {
                    outcome = Err(e);
                    break;
                }
            }
            if outcome.is_err() {
                break;
            }
        }
        match outcome {
            Ok(()) => match engine.set_adapter_cursor(ADAPTER, &response.next_batch).await {
                Ok(()) => token = Some(response.next_batch),
                // Synced again from the old token: the events find their turns.
                Err(e) => tracing::warn!("matrix: cannot store the sync token: {e}"),
            },
            Err(BatchError::Draining) => return,
            Err(BatchError::Journal(e)) => {
                tracing::warn!("matrix: cannot store a message, will sync it again: {e}");
                health.set(HealthState::Degraded, Some(format!("cannot store messages: {e}")));
                if !pause(retry.next_delay(), &mut stop).await {
                    return;
                }
            }
        }
    }
}

/// Joins the rooms people let in invited the bot to; declines the others (once each).
async fn answer_invites(client: &Client, options: &MatrixOptions, declined: &mut HashSet<String>) {
    for room in client.invited_rooms() {
        let id = room.room_id().to_string();
        if declined.contains(&id) {
            continue;
        }
        let inviter = match room.invite_details().await {
            Ok(invite) => invite.inviter_id.to_string(),
            Err(e) => {
                tracing::debug!(room = %id, "matrix: cannot read an invite: {e}");
                continue;
            }
        };
        if options.access().caller(&inviter).is_some() {
            match room.join().await {
                Ok(()) => tracing::info!(room = %id, inviter = %inviter, "matrix: joined a room on invite"),
                Err(e) => tracing::warn!(room = %id, "matrix: cannot join a room {inviter} invited to: {e}"),
            }
        } else {
            declined.insert(id.clone());
            tracing::info!(
                room = %id,
                "matrix: declined an invite from {inviter}, who is not let in ([matrix] allowed_users)"
            );
            if let Err(e) = room.leave().await {
                tracing::debug!(room = %id, "matrix: cannot decline: {e}");
            }
        }
    }
}

/// Answers a command, stores a message as a turn, or acknowledges anything else.
async fn handle_event(
    engine: &Arc<Engine>,
    desk: &CommandDesk,
    options: &MatrixOptions,
    me: &Me<'_>,
    room: &Room,
    event: &TimelineEvent,
    strangers: &mut HashSet<String>,
) -> Result<(), BatchError> {
    let Ok(parsed) = event.raw().deserialize() else {
        return Ok(());
    };
    let AnySyncTimelineEvent::MessageLike(AnySyncMessageLikeEvent::RoomMessage(
        SyncMessageLikeEvent::Original(message),
    )) = parsed
    else {
        if event.kind.is_utd() && options.access().caller(parsed.sender().as_str()).is_some() {
            unreadable(room, &parsed, me).await;
        }
        return Ok(());
    };
    if room.state() != RoomState::Joined {
        return Ok(());
    }
    let sender = message.sender.to_string();
    let event_id = message.event_id.to_string();
    let mentions: Vec<String> = message
        .content
        .mentions
        .as_ref()
        .map(|m| m.user_ids.iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    let incoming = Incoming {
        room: room.room_id().as_str(),
        sender: &sender,
        msgtype: message.content.msgtype(),
        body: message.content.body(),
        mentions: &mentions,
        is_edit: matches!(message.content.relates_to, Some(Relation::Replacement(_))),
        members: members(room).await,
    };
    let (conversation, text, shared) = match route::route(&incoming, me, options.respond, options.sessions) {
        Route::Answer {
            conversation,
            text,
            shared,
        } => (conversation, text, shared),
        Route::Ignore(why) => {
            tracing::debug!(event = %event_id, members = incoming.members, "matrix: not for the bot: {why}");
            return Ok(());
        }
    };
    let Some((level, why)) = options.access().caller(&sender) else {
        if strangers.insert(sender.clone()) {
            tracing::info!(
                user = %sender,
                room = %room.room_id(),
                "matrix: a message from {sender}, who is not let in ([matrix] allowed_users); ignored"
            );
        }
        return Ok(());
    };
    let session = SessionKey::new(ADAPTER, conversation);
    if let Some(command) = route::command_text(&text).and_then(|t| commands::parse(&t, None)) {
        let caller = Caller {
            kind: "Matrix user",
            user: Some(sender.clone()),
            name: None,
            level,
            why,
            shared_chat: shared,
        };
        let answer = desk
            .run(&session, &event_id, &caller, &command)
            .await
            .map_err(BatchError::Journal)?;
        // One try: the command is done (and recorded); its answer is a courtesy.
        if let Err(e) = room.send(RoomMessageEventContent::notice_markdown(answer)).await {
            tracing::warn!("matrix: cannot answer /{}: {e}", command.name());
        }
        return Ok(());
    }
    let text = match &message.content.msgtype {
        MessageType::Emote(_) => format!("* {text}"),
        _ => text,
    };
    match engine
        .submit_with(session, Some(event_id), text, Vec::new())
        .await
    {
        Ok(ticket) => {
            if ticket.new {
                tokio::spawn(acknowledge(room.clone(), message.event_id.clone(), ticket));
            }
            Ok(())
        }
        Err(SubmitError::Draining) => Err(BatchError::Draining),
        Err(SubmitError::Conflict(id)) => {
            tracing::warn!("matrix: event {id} was stored with another text; ignored");
            Ok(())
        }
        Err(SubmitError::Journal(e)) => Err(BatchError::Journal(e)),
    }
}

/// Joined and invited members, the bot included (a room someone else is invited to is not a private
/// chat): from the room's member events in the store, which the homeserver's summary counts can lag.
async fn members(room: &Room) -> u64 {
    use matrix_sdk::RoomMemberships;
    match room
        .members_no_sync(RoomMemberships::JOIN | RoomMemberships::INVITE)
        .await
    {
        Ok(members) if !members.is_empty() => members.len() as u64,
        _ => room.active_members_count(),
    }
}

/// Marks the message read and shows "typing…" until the turn has its answer (best effort).
async fn acknowledge(
    room: Room,
    event: matrix_sdk::ruma::OwnedEventId,
    ticket: herald_gateway::engine::Ticket,
) {
    if let Err(e) = room
        .send_single_receipt(ReceiptType::Read, ReceiptThread::Unthreaded, event)
        .await
    {
        tracing::debug!("matrix: no read receipt: {e}");
    }
    let outcome = ticket.outcome();
    tokio::pin!(outcome);
    loop {
        if let Err(e) = room.typing_notice(true).await {
            tracing::debug!("matrix: no typing notice: {e}");
            return;
        }
        tokio::select! {
            _ = &mut outcome => break,
            () = tokio::time::sleep(Duration::from_secs(3)) => {}
        }
    }
    let _ = room.typing_notice(false).await;
}

/// An encrypted message from someone let in that this device has no key for: said in the log and in
/// the room, as a notice (they would otherwise wait for an answer that never comes).
async fn unreadable(room: &Room, event: &AnySyncTimelineEvent, me: &Me<'_>) {
    if event.sender().as_str() == me.user_id {
        return;
    }
    tracing::warn!(
        room = %room.room_id(),
        event = %event.event_id(),
        "matrix: cannot decrypt a message from {}: this device has no key for it",
        event.sender()
    );
    let notice = RoomMessageEventContent::notice_plain(
        "I could not decrypt that message: this device was not given its key. Please send it again.",
    );
    if let Err(e) = room.send(notice).await {
        tracing::debug!("matrix: cannot say so: {e}");
    }
}
