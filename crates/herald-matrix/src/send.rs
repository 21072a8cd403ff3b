//! Replies out: the engine's outbox for Matrix sessions, the sender that empties it, and drafts.
//!
//! **Invariant:** a reply is marked delivered only after the homeserver accepted every part of it (the
//! text, then each file); one it refuses for good is set aside, one it cannot take now is retried with a
//! backoff until the stop (and then by the next start, from the journal). The text goes out with the
//! transaction id `herald-<turn>`, so a resend from this device after a crash is dropped by the
//! homeserver as a repeat.
//!
//! A streaming agent's answer shows as one message edited as it grows (`m.replace`, at most once a
//! second); its event id is journaled (`set_draft`) so a resumed turn edits the same message, and the
//! final reply is one last edit of it rather than a second message.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_gateway::backoff::{Backoff, Jitter, pause};
use herald_gateway::engine::{Drafting, Engine, Outbox};
use herald_gateway::health::HealthHandle;
use herald_gateway::journal::Delivery;
use herald_home::config::MatrixReplyKind;
use herald_home::records::HealthState;
use herald_home::sync::MutexExt;
use matrix_sdk::attachment::AttachmentConfig;
use matrix_sdk::ruma::events::room::message::{ReplacementMetadata, RoomMessageEventContent};
use matrix_sdk::ruma::{OwnedEventId, OwnedRoomId, OwnedTransactionId};
use matrix_sdk::{Client, RoomState};
use tokio::sync::{mpsc, watch};

use crate::{ADAPTER, MatrixOptions, route};

/// The retry schedule of a reply the homeserver could not take: 1 s … 30 s.
const RETRY: Backoff = Backoff {
    base: Duration::from_secs(1),
    max: Duration::from_secs(30),
    jitter: Jitter::Equal,
};

/// Most undelivered replies loaded at start in one go.
const UNDELIVERED_BATCH: usize = 10_000;

/// The least time between two edits of a draft.
const DRAFT_EVERY: Duration = Duration::from_secs(1);

/// The receiving ends of the outbox of one generation.
#[derive(Debug)]
pub(crate) struct Queue {
    replies: mpsc::UnboundedReceiver<Delivery>,
    drafts: mpsc::UnboundedReceiver<Drafting>,
}

impl Queue {
    /// Registers a new outbox with the engine (replacing the last generation's).
    pub(crate) fn register(engine: &Arc<Engine>) -> Queue {
        let (replies_tx, replies) = mpsc::unbounded_channel();
        let (drafts_tx, drafts) = mpsc::unbounded_channel();
        engine.register_outbox(
            ADAPTER,
            Arc::new(QueueOutbox {
                replies: replies_tx,
                drafts: drafts_tx,
            }),
        );
        Queue { replies, drafts }
    }
}

#[derive(Debug)]
struct QueueOutbox {
    replies: mpsc::UnboundedSender<Delivery>,
    drafts: mpsc::UnboundedSender<Drafting>,
}

impl Outbox for QueueOutbox {
    fn deliver(&self, delivery: Delivery) {
        // Gone only after the stop: the reply stays undelivered in the journal for the next start.
        let _ = self.replies.send(delivery);
    }

    fn drafting(&self, drafting: Drafting) {
        let _ = self.drafts.send(drafting);
    }
}

/// The drafts being shown: the message each turn's answer grows in, and a lock its edits and the final
/// reply take turns on (so no late edit overwrites the answer).
#[derive(Debug, Default)]
struct Drafts {
    shown: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<Option<OwnedEventId>>>>>,
}

impl Drafts {
    fn slot(&self, turn: i64) -> Arc<tokio::sync::Mutex<Option<OwnedEventId>>> {
        self.shown.lock_unpoisoned().entry(turn).or_default().clone()
    }

    fn forget(&self, turn: i64) {
        self.shown.lock_unpoisoned().remove(&turn);
    }
}

/// Sends what an earlier run left undelivered, then every reply handed over, until `stop`.
pub(crate) async fn run(
    client: Client,
    options: MatrixOptions,
    engine: Arc<Engine>,
    health: HealthHandle,
    mut queue: Queue,
    mut stop: watch::Receiver<bool>,
) {
    let drafts = Arc::new(Drafts::default());
    let mut seen = HashSet::new();
    match engine.undelivered(ADAPTER, UNDELIVERED_BATCH).await {
        Ok(backlog) => {
            if !backlog.is_empty() {
                tracing::info!(
                    count = backlog.len(),
                    "matrix: sending replies an earlier run left undelivered"
                );
            }
            for delivery in backlog {
                if seen.insert(delivery.turn_id)
                    && !deliver(&client, &options, &engine, &health, &drafts, delivery, &mut stop).await
                {
                    return;
                }
            }
        }
        Err(e) => tracing::warn!("matrix: cannot read undelivered replies: {e}"),
    }
    let mut halt = stop.clone();
    loop {
        tokio::select! {
            delivery = queue.replies.recv() => {
                let Some(delivery) = delivery else { return };
                if seen.insert(delivery.turn_id)
                    && !deliver(&client, &options, &engine, &health, &drafts, delivery, &mut stop).await
                {
                    return;
                }
            }
            drafting = queue.drafts.recv() => {
                if let Some(drafting) = drafting {
                    tokio::spawn(show_draft(client.clone(), options.clone(), engine.clone(), drafts.clone(), drafting));
                }
            }
            // (Mapped to `()`: the guard it returns must not live across the other branches' awaits.)
            () = async { let _ = halt.wait_for(|s| *s).await; } => return,
        }
    }
}

/// Why a part of a reply did not go out.
enum SendError {
    /// Not now (the network, a 5xx, a 429): try again.
    Transient(String),
    /// Never (not in the room, forbidden, a file gone): set the reply aside.
    Permanent(String),
}

fn send_error(e: &matrix_sdk::Error) -> SendError {
    match e.as_client_api_error() {
        Some(api) if api.status_code.is_client_error() && api.status_code.as_u16() != 429 => {
            SendError::Permanent(e.to_string())
        }
        _ => SendError::Transient(e.to_string()),
    }
}

/// Delivers one reply, retrying what can be retried. `false` when the stop came first.
async fn deliver(
    client: &Client,
    options: &MatrixOptions,
    engine: &Arc<Engine>,
    health: &HealthHandle,
    drafts: &Arc<Drafts>,
    delivery: Delivery,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let mut retry = RETRY.retries();
    // Parts already accepted (the text is part 0, then each file), so a retry does not repeat them.
    let mut done = 0;
    let slot = drafts.slot(delivery.turn_id);
    let mut draft = slot.lock().await;
    let outcome = loop {
        match send_parts(client, options, &delivery, draft.clone(), &mut done).await {
            Ok(()) => break Ok(()),
            Err(SendError::Permanent(why)) => break Err(why),
            Err(SendError::Transient(why)) => {
                let wait = retry.next_delay();
                tracing::warn!(
                    turn = delivery.turn_id,
                    "matrix: cannot send a reply ({why}); retrying in {:.1} s",
                    wait.as_secs_f64()
                );
                health.set(HealthState::Degraded, Some(format!("cannot send replies: {why}")));
                if !pause(wait, stop).await {
                    return false;
                }
            }
        }
    };
    // No late edit of the draft after this.
    *draft = None;
    drop(draft);
    drafts.forget(delivery.turn_id);
    match outcome {
        Ok(()) => {
            health.outbound();
            if health.state() == Some(HealthState::Degraded) {
                health.set(HealthState::Connected, None);
            }
            if let Err(e) = engine.mark_delivered(delivery.turn_id).await {
                tracing::warn!(
                    turn = delivery.turn_id,
                    "matrix: cannot mark a reply delivered: {e}"
                );
            }
        }
        Err(why) => {
            tracing::warn!(
                turn = delivery.turn_id,
                "matrix: a reply cannot be delivered, set aside: {why}"
            );
            if let Err(e) = engine.fail_delivery(delivery.turn_id, &why).await {
                tracing::warn!(turn = delivery.turn_id, "matrix: cannot set a reply aside: {e}");
            }
        }
    }
    true
}

fn content(options: &MatrixOptions, text: &str, failed: bool) -> RoomMessageEventContent {
    if failed || options.reply_as == MatrixReplyKind::Notice {
        RoomMessageEventContent::notice_markdown(text)
    } else {
        RoomMessageEventContent::text_markdown(text)
    }
}

/// Sends the parts of a reply from `*done` on, counting each accepted one.
async fn send_parts(
    client: &Client,
    options: &MatrixOptions,
    delivery: &Delivery,
    draft: Option<OwnedEventId>,
    done: &mut usize,
) -> Result<(), SendError> {
    let room_id = route::room_of(&delivery.session.chat_id);
    let room_id: OwnedRoomId = room_id
        .parse()
        .map_err(|e| SendError::Permanent(format!("{room_id:?} is not a Matrix room id: {e}")))?;
    let Some(room) = client.get_room(&room_id) else {
        return Err(SendError::Permanent(format!("the bot is not in room {room_id}")));
    };
    if room.state() != RoomState::Joined {
        return Err(SendError::Permanent(format!(
            "the bot is no longer in room {room_id}"
        )));
    }
    let turn = delivery.turn_id;
    if *done == 0 {
        let text = &delivery.reply.text;
        if !text.trim().is_empty() {
            let body = content(options, text, delivery.reply.failed);
            let earlier = draft.or_else(|| delivery.draft.as_deref().and_then(|d| d.parse().ok()));
            let (body, txn) = match earlier {
                Some(event) => (
                    body.make_replacement(ReplacementMetadata::new(event, None)),
                    format!("herald-{turn}-final"),
                ),
                None => (body, format!("herald-{turn}")),
            };
            let txn = OwnedTransactionId::from(txn);
            room.send(body)
                .with_transaction_id(txn)
                .await
                .map_err(|e| send_error(&e))?;
        }
        *done = 1;
    }
    for (index, file) in delivery.reply.files.iter().enumerate().skip(*done - 1) {
        let data = tokio::fs::read(&file.path)
            .await
            .map_err(|e| SendError::Permanent(format!("cannot read the file {}: {e}", file.path)))?;
        let mime: mime::Mime = file.mime.parse().unwrap_or(mime::APPLICATION_OCTET_STREAM);
        let name = file.name.clone().unwrap_or_else(|| {
            std::path::Path::new(&file.path)
                .file_name()
                .map_or_else(|| "file".to_owned(), |n| n.to_string_lossy().into_owned())
        });
        let config =
            AttachmentConfig::new().txn_id(OwnedTransactionId::from(format!("herald-{turn}-file{index}")));
        room.send_attachment(name, &mime, data, config)
            .await
            .map_err(|e| send_error(&e))?;
        *done = index + 2;
    }
    Ok(())
}

/// Shows a streaming answer as one message edited as it grows, until the reply takes it over.
async fn show_draft(
    client: Client,
    options: MatrixOptions,
    engine: Arc<Engine>,
    drafts: Arc<Drafts>,
    mut drafting: Drafting,
) {
    let room_id = route::room_of(&drafting.session.chat_id).to_owned();
    let Some(room) = room_id
        .parse::<OwnedRoomId>()
        .ok()
        .and_then(|id| client.get_room(&id))
    else {
        return;
    };
    let slot = drafts.slot(drafting.turn_id);
    {
        let mut shown = slot.lock().await;
        if shown.is_none() {
            *shown = drafting.earlier.as_deref().and_then(|d| d.parse().ok());
        }
    }
    let mut last = String::new();
    loop {
        let text = drafting.text.borrow_and_update().clone();
        if !text.trim().is_empty() && text != last {
            let mut shown = slot.lock().await;
            // The reply took over (it clears the slot's lock holder by forgetting the turn).
            if !drafts.shown.lock_unpoisoned().contains_key(&drafting.turn_id) {
                return;
            }
            let body = content(&options, &format!("{text} …"), false);
            let sent = match shown.clone() {
                Some(event) => room
                    .send(body.make_replacement(ReplacementMetadata::new(event, None)))
                    .await
                    .map(|_| None),
                None => room.send(body).await.map(|r| Some(r.response.event_id)),
            };
            match sent {
                Ok(Some(event)) => {
                    if let Err(e) = engine.set_draft(drafting.turn_id, event.as_str()).await {
                        tracing::debug!("matrix: cannot journal a draft: {e}");
                    }
                    *shown = Some(event);
                }
                Ok(None) => {}
                Err(e) => tracing::debug!("matrix: a draft edit failed: {e}"),
            }
            last = text;
        }
        tokio::time::sleep(DRAFT_EVERY).await;
        if drafting.text.changed().await.is_err() {
            return;
        }
    }
}
