//! The Telegram adapter: Bot API long polling in, `sendMessage` out.
//!
//! **Invariant (no lost update):** the adapter's offset — the first update id it has not handled — moves
//! forward only after every update below it is durably handled: a message stored as a turn by the
//! journal (`Engine::submit` returns only after the commit), anything else acknowledged and ignored. The
//! offset is committed to the journal *before* the next `getUpdates` call confirms those updates to
//! Telegram, so a process killed at any moment either finds an update in the journal or gets it again
//! from Telegram.
//!
//! **Invariant (none answered twice):** an update becomes a turn under the message id
//! `u<update_id>-m<message_id>`, and the journal makes at most one turn per message id in a session
//! (a unique index), so an update delivered again — after a crash, or by a server that repeats itself —
//! joins or finds its turn instead of starting a second one. The agent therefore answers each update at
//! most once.
//!
//! **Delivery** is at least once: replies reach the chat through the engine's outbox (every reply of a
//! Telegram session, whether anyone waits or not — resumed and given-up turns too), are marked delivered
//! in the journal once `sendMessage` succeeded, and unmarked ones are sent again when the adapter starts.
//! Only a crash in the instant between Telegram's answer and the mark's commit can make a reply arrive
//! twice; no crash can make one go missing.
//!
//! **Access** is default deny: a message from a user outside `allowed_users` (unless `allow_all`) never
//! reaches the agent or the journal; the user gets one short reply naming their id, and the log gets one
//! line with it.
//!
//! The HTTP client (reqwest, TLS) builds C, so this crate is a leaf only the binary links, like
//! `herald-journal`; the gateway and the daemon know it only as a [`PushAdapter`].

mod api;
pub mod split;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use herald_gateway::adapter::{AdapterStatus, BoxFuture, PushAdapter};
use herald_gateway::backoff::{Backoff, Jitter};
use herald_gateway::engine::{Engine, Outbox, SubmitError, Ticket};
use herald_gateway::journal::{Delivery, JournalError, SessionKey};
use herald_home::config::{Config, TelegramConfig};
use herald_home::records::AdapterState;
use herald_home::secrets::Variables;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use api::{ApiError, BotApi};

/// The adapter name Telegram sessions are stored under (`telegram:<chat id>`).
pub const ADAPTER: &str = "telegram";

/// How long a 409 (another poller) waits before the next try.
const CONFLICT_RETRY: Duration = Duration::from_secs(30);
/// How long a 401 (bad token) waits before the next try: the token may be restored.
const UNAUTHORIZED_RETRY: Duration = Duration::from_secs(60);
/// The longest `retry_after` honoured as such (a longer one is capped).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// The typing indicator lasts about 5 s on Telegram's side; it is renewed this often while a turn runs.
const TYPING_EVERY: Duration = Duration::from_secs(4);
/// A turn that answers within this time gets no typing indicator at all.
const TYPING_DELAY: Duration = Duration::from_millis(300);
/// Most undelivered replies loaded at startup in one go.
const UNDELIVERED_BATCH: usize = 10_000;

/// Why the adapter cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TelegramSetupError {
    #[error(
        "the variable {0} (named by [telegram] token_env) is neither set in the gateway's environment nor \
         in the secrets store: run `herald secret set {0}` (a service-managed gateway sees no shell \
         variables)"
    )]
    TokenEnvMissing(String),
    #[error("[telegram] is enabled but has neither token_env nor token")]
    NoToken,
    #[error("cannot build the Telegram client: {0}")]
    Client(ApiError),
}

/// What the adapter needs to run.
#[derive(Clone)]
pub struct TelegramOptions {
    pub token: String,
    pub api_base: String,
    /// Who may talk to the agent: shared with the running adapter, so a reload changes it live.
    access: Arc<std::sync::RwLock<Access>>,
    pub poll_timeout: Duration,
    pub min_poll_interval: Duration,
}

/// `[telegram] allowed_users` and `allow_all`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Access {
    allowed_users: Vec<i64>,
    allow_all: bool,
}

impl std::fmt::Debug for TelegramOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramOptions")
            .field("token", &"<redacted>")
            .field("api_base", &self.api_base)
            .field("access", &*self.access.read().unwrap_or_else(|e| e.into_inner()))
            .field("poll_timeout", &self.poll_timeout)
            .field("min_poll_interval", &self.min_poll_interval)
            .finish()
    }
}

impl TelegramOptions {
    /// The options from `[telegram]`, with the token looked up in `variables` (the environment, then
    /// the secrets store) when `token_env` names one; that wins over a literal `token`.
    pub fn from_config(
        config: &TelegramConfig,
        variables: &Variables,
    ) -> Result<TelegramOptions, TelegramSetupError> {
        let token = match (&config.token_env, &config.token) {
            (Some(var), _) => match variables.value(var.trim()) {
                Some(token) => token,
                None => return Err(TelegramSetupError::TokenEnvMissing(var.clone())),
            },
            (None, Some(token)) => token.trim().to_owned(),
            (None, None) => return Err(TelegramSetupError::NoToken),
        };
        Ok(TelegramOptions {
            token,
            api_base: config.api_base.clone(),
            access: Arc::new(std::sync::RwLock::new(Access {
                allowed_users: config.allowed_users.clone(),
                allow_all: config.allow_all,
            })),
            poll_timeout: Duration::from_secs(config.poll_timeout_secs),
            min_poll_interval: Duration::from_millis(config.min_poll_interval_ms),
        })
    }

    /// Asks the Bot API who this bot is (`getMe`, within `timeout`): proves the API is reachable and the
    /// token valid, without taking any update.
    pub async fn who_am_i(&self, timeout: Duration) -> Result<String, ApiError> {
        BotApi::new(&self.api_base, &self.token)?.get_me(timeout).await
    }

    fn allows(&self, user: i64) -> bool {
        let access = self.access.read().unwrap_or_else(|e| e.into_inner());
        access.allow_all || access.allowed_users.contains(&user)
    }

    /// Replaces who may talk to the agent (a reload); true when it changed.
    fn set_access(&self, config: &TelegramConfig) -> bool {
        let new = Access {
            allowed_users: config.allowed_users.clone(),
            allow_all: config.allow_all,
        };
        let mut access = self.access.write().unwrap_or_else(|e| e.into_inner());
        let changed = *access != new;
        *access = new;
        changed
    }
}

/// The Telegram adapter (see the module docs for its guarantees).
#[derive(Debug)]
pub struct TelegramAdapter {
    options: Arc<TelegramOptions>,
    api: BotApi,
    run: Option<Running>,
}

#[derive(Debug)]
struct Running {
    engine: Arc<Engine>,
    status: AdapterStatus,
    stop: watch::Sender<bool>,
    sender: JoinHandle<()>,
    poller: Option<JoinHandle<()>>,
}

impl TelegramAdapter {
    pub fn new(options: TelegramOptions) -> Result<TelegramAdapter, TelegramSetupError> {
        let api = BotApi::new(&options.api_base, &options.token).map_err(TelegramSetupError::Client)?;
        Ok(TelegramAdapter {
            options: Arc::new(options),
            api,
            run: None,
        })
    }
}

/// The engine's outbox for Telegram sessions: a queue the delivery task drains.
#[derive(Debug)]
struct QueueOutbox(mpsc::UnboundedSender<Delivery>);

impl Outbox for QueueOutbox {
    fn deliver(&self, delivery: Delivery) {
        // The delivery task is gone only after close; the reply stays undelivered in the journal.
        let _ = self.0.send(delivery);
    }
}

impl PushAdapter for TelegramAdapter {
    fn name(&self) -> &'static str {
        ADAPTER
    }

    fn attach(&mut self, engine: &Arc<Engine>, status: AdapterStatus) {
        let (tx, rx) = mpsc::unbounded_channel();
        engine.register_outbox(ADAPTER, Arc::new(QueueOutbox(tx)));
        let (stop, stop_rx) = watch::channel(false);
        let sender = tokio::spawn(deliver_loop(
            engine.clone(),
            self.api.clone(),
            rx,
            status.clone(),
            stop_rx,
        ));
        self.run = Some(Running {
            engine: engine.clone(),
            status,
            stop,
            sender,
            poller: None,
        });
    }

    fn open(&mut self) {
        if let Some(run) = &mut self.run {
            run.poller = Some(tokio::spawn(poll_loop(
                run.engine.clone(),
                self.api.clone(),
                self.options.clone(),
                run.status.clone(),
                run.stop.subscribe(),
            )));
        }
    }

    fn reconfigure(&self, config: &Config, _variables: &Variables) -> Vec<&'static str> {
        // Who may talk is read per message: applied at once. The token and the API base are held by
        // the running poll and delivery tasks: a restart applies those.
        self.options.set_access(&config.telegram);
        vec!["telegram.allowed_users", "telegram.allow_all"]
    }

    fn close(self: Box<Self>, grace: Duration) -> BoxFuture<()> {
        Box::pin(async move {
            let Some(run) = self.run else { return };
            run.stop.send_replace(true);
            for mut task in [Some(run.sender), run.poller].into_iter().flatten() {
                if tokio::time::timeout(grace, &mut task).await.is_err() {
                    task.abort();
                }
            }
            run.status.set(AdapterState::Stopped, None);
        })
    }
}

/// Sleeps for `duration` unless `stop` turns true first. Returns `false` when stopped.
async fn pause(duration: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        () = tokio::time::sleep(duration) => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}

/// How long to wait after the Bot API failed: 1 s, 2 s, 4 s ... 30 s, each within a tenth either side.
const RETRY: Backoff = Backoff {
    base: Duration::from_secs(1),
    max: Duration::from_secs(30),
    jitter: Jitter::Tenth,
};

/// What became of a batch of updates.
enum Batch {
    /// All handled; the offset to store.
    Handled(Option<i64>),
    /// A drain began; the offset of the handled prefix.
    Draining(Option<i64>),
    /// The journal failed; the offset of the handled prefix.
    Failed(Option<i64>, JournalError),
}

/// Why one update could not be handled.
enum UpdateError {
    Draining,
    Journal(JournalError),
}

async fn poll_loop(
    engine: Arc<Engine>,
    api: BotApi,
    options: Arc<TelegramOptions>,
    status: AdapterStatus,
    mut stop: watch::Receiver<bool>,
) {
    // Drain start and close both stop the polling: fold them into one signal.
    let (halt_tx, mut halt) = watch::channel(false);
    let mut drain = engine.turns().drain_signal();
    let watcher = tokio::spawn(async move {
        tokio::select! {
            _ = drain.wait_for(|d| *d) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
        halt_tx.send_replace(true);
    });
    let mut backoff = RETRY.retries();
    let mut offset = loop {
        match engine.adapter_offset(ADAPTER).await {
            Ok(offset) => break offset,
            Err(e) => {
                status.set(
                    AdapterState::Error,
                    Some(format!("cannot read the stored offset: {e}")),
                );
                if !pause(backoff.next_delay(), &mut halt).await {
                    return;
                }
            }
        }
    };
    backoff.reset();
    loop {
        let started = Instant::now();
        let polled = tokio::select! {
            polled = api.get_updates(offset, options.poll_timeout) => polled,
            _ = halt.wait_for(|h| *h) => break,
        };
        let wait = match polled {
            Ok(updates) => {
                status.set(AdapterState::Connected, None);
                let empty = updates.is_empty();
                let batch = handle_batch(&engine, &api, &options, &updates, offset).await;
                let (next, outcome) = match batch {
                    Batch::Handled(next) => (next, None),
                    Batch::Draining(next) => (next, Some(None)),
                    Batch::Failed(next, e) => (next, Some(Some(e))),
                };
                if next > offset {
                    let next_id = next.unwrap_or_default();
                    match engine.set_adapter_offset(ADAPTER, next_id).await {
                        Ok(()) => offset = next,
                        Err(e) => {
                            // Not confirmed to Telegram either: the updates come again and find their
                            // turns (idempotent message ids).
                            tracing::warn!("telegram: cannot store the update offset: {e}");
                        }
                    }
                }
                match outcome {
                    None => {
                        backoff.reset();
                        if empty {
                            // A server that answers an empty poll at once must not make us spin.
                            options.min_poll_interval.saturating_sub(started.elapsed())
                        } else {
                            Duration::ZERO
                        }
                    }
                    Some(None) => break,
                    Some(Some(e)) => {
                        tracing::warn!("telegram: cannot store a message, will fetch it again: {e}");
                        status.set(
                            AdapterState::Retrying,
                            Some(format!("cannot store messages: {e}")),
                        );
                        backoff.next_delay()
                    }
                }
            }
            Err(ApiError::Unauthorized) => {
                let e = ApiError::Unauthorized;
                if status.state() != Some(AdapterState::Unauthorized) {
                    tracing::error!("telegram: {e}; the rest of the gateway keeps serving");
                }
                status.set(AdapterState::Unauthorized, Some(e.to_string()));
                UNAUTHORIZED_RETRY
            }
            Err(e @ ApiError::Conflict(_)) => {
                if status.state() != Some(AdapterState::Error) {
                    tracing::error!("telegram: {e}");
                }
                status.set(AdapterState::Error, Some(e.to_string()));
                CONFLICT_RETRY
            }
            Err(ApiError::RetryAfter(secs)) => {
                let e = ApiError::RetryAfter(secs);
                tracing::warn!("telegram: {e}");
                status.set(AdapterState::Retrying, Some(e.to_string()));
                Duration::from_secs(secs.max(1)).min(MAX_RETRY_AFTER)
            }
            Err(e) => {
                let wait = backoff.next_delay();
                tracing::warn!("telegram: {e}; retrying in {:.1} s", wait.as_secs_f64());
                let state = if e.is_transient() {
                    AdapterState::Retrying
                } else {
                    AdapterState::Error
                };
                status.set(state, Some(e.to_string()));
                wait
            }
        };
        if !wait.is_zero() && !pause(wait, &mut halt).await {
            break;
        }
    }
    watcher.abort();
}

async fn handle_batch(
    engine: &Arc<Engine>,
    api: &BotApi,
    options: &TelegramOptions,
    updates: &[Value],
    offset: Option<i64>,
) -> Batch {
    let mut next = offset;
    for update in updates {
        let Some(id) = update.get("update_id").and_then(Value::as_i64) else {
            tracing::warn!("telegram: an update without update_id; ignored");
            continue;
        };
        if offset.is_some_and(|o| id < o) {
            // Handled before (a server repeating a confirmed update).
            continue;
        }
        match handle_update(engine, api, options, id, update).await {
            Ok(()) => next = Some(next.map_or(id + 1, |n| n.max(id + 1))),
            Err(UpdateError::Draining) => return Batch::Draining(next),
            Err(UpdateError::Journal(e)) => return Batch::Failed(next, e),
        }
    }
    Batch::Handled(next)
}

/// Stores a text message as a turn, or acknowledges anything else.
async fn handle_update(
    engine: &Arc<Engine>,
    api: &BotApi,
    options: &TelegramOptions,
    update_id: i64,
    update: &Value,
) -> Result<(), UpdateError> {
    let message = update.get("message");
    let text = message.and_then(|m| m.get("text")).and_then(Value::as_str);
    let chat = message
        .and_then(|m| m.get("chat"))
        .and_then(|c| c.get("id"))
        .and_then(Value::as_i64);
    let (Some(message), Some(text), Some(chat)) = (message, text, chat) else {
        let kind = update
            .as_object()
            .and_then(|o| o.keys().find(|k| *k != "update_id").cloned())
            .unwrap_or_default();
        tracing::debug!(
            update = update_id,
            "telegram: ignoring an update of kind {kind:?}"
        );
        return Ok(());
    };
    let user = message
        .get("from")
        .and_then(|f| f.get("id"))
        .and_then(Value::as_i64);
    if !user.is_some_and(|u| options.allows(u)) {
        deny(api, chat, user).await;
        return Ok(());
    }
    let message_id = message.get("message_id").and_then(Value::as_i64).unwrap_or(0);
    let session = SessionKey::new(ADAPTER, chat.to_string());
    match engine
        .submit(
            session,
            Some(format!("u{update_id}-m{message_id}")),
            text.to_owned(),
        )
        .await
    {
        Ok(ticket) => {
            if ticket.new {
                tokio::spawn(typing(api.clone(), chat, ticket));
            }
            Ok(())
        }
        Err(SubmitError::Draining) => Err(UpdateError::Draining),
        Err(SubmitError::Conflict(id)) => {
            tracing::warn!("telegram: message id {id} was stored with another text; ignored");
            Ok(())
        }
        Err(SubmitError::Journal(e)) => Err(UpdateError::Journal(e)),
    }
}

/// Default deny: one log line with the id, one short reply telling the user how to get in.
async fn deny(api: &BotApi, chat: i64, user: Option<i64>) {
    let Some(user) = user else {
        tracing::info!(
            chat,
            "telegram: a message without a sender (a channel or anonymous admin); ignored"
        );
        return;
    };
    tracing::warn!(
        user,
        chat,
        "telegram: denied a message from user {user}, who is not in [telegram] allowed_users"
    );
    let text = format!(
        "Sorry, this bot only talks to people its owner has allowed. Your Telegram user id is {user}; the \
         owner can let you in by adding it to allowed_users in the [telegram] section of herald.toml."
    );
    if let Err(e) = api.send_message(chat, &text, None, None).await {
        tracing::warn!(user, "telegram: cannot tell user {user} they were denied: {e}");
    }
}

/// "typing..." while the turn runs (skipped for turns that answer at once). Best effort: a failure
/// ends it quietly.
async fn typing(api: BotApi, chat: i64, ticket: Ticket) {
    let outcome = ticket.outcome();
    tokio::pin!(outcome);
    let mut wait = TYPING_DELAY;
    loop {
        tokio::select! {
            _ = &mut outcome => return,
            () = tokio::time::sleep(wait) => {}
        }
        if let Err(e) = api.send_typing(chat).await {
            tracing::debug!("telegram: no typing indicator: {e}");
            return;
        }
        wait = TYPING_EVERY;
    }
}

/// Sends every reply handed to the outbox, and first those an earlier process left undelivered.
async fn deliver_loop(
    engine: Arc<Engine>,
    api: BotApi,
    mut queue: mpsc::UnboundedReceiver<Delivery>,
    status: AdapterStatus,
    mut stop: watch::Receiver<bool>,
) {
    let mut sent = HashSet::new();
    match engine.undelivered(ADAPTER, UNDELIVERED_BATCH).await {
        Ok(backlog) => {
            if !backlog.is_empty() {
                tracing::info!("telegram: sending {} reply(s) left undelivered", backlog.len());
            }
            for delivery in backlog {
                // A planned stop ends the catch-up between two replies, never inside one: what is not
                // sent stays in the journal for the next start.
                if *stop.borrow() {
                    return;
                }
                if !deliver(&engine, &api, &status, &mut stop, &mut sent, delivery).await {
                    return;
                }
            }
        }
        Err(e) => tracing::warn!("telegram: cannot read undelivered replies: {e}"),
    }
    loop {
        let delivery = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            delivery = queue.recv() => match delivery {
                Some(delivery) => delivery,
                None => return,
            },
        };
        if !deliver(&engine, &api, &status, &mut stop, &mut sent, delivery).await {
            return;
        }
    }
}

/// Sends one reply (in parts if long), retrying transient failures until it goes through or the adapter
/// stops. Returns `false` when delivery must stop (closing, or the token was refused); the reply then
/// stays undelivered in the journal for the next start.
async fn deliver(
    engine: &Engine,
    api: &BotApi,
    status: &AdapterStatus,
    stop: &mut watch::Receiver<bool>,
    sent: &mut HashSet<i64>,
    delivery: Delivery,
) -> bool {
    if !sent.insert(delivery.turn_id) {
        return true;
    }
    let Ok(chat) = delivery.session.chat_id.parse::<i64>() else {
        tracing::warn!(session = %delivery.session, "telegram: not a chat id; the reply cannot be sent");
        return mark(engine, delivery.turn_id).await;
    };
    let reply_to = delivery
        .message_id
        .rsplit_once("-m")
        .and_then(|(_, id)| id.parse::<i64>().ok())
        .filter(|id| *id > 0);
    let parts = split::split_message(&delivery.reply.text, split::MAX_MESSAGE_CHARS);
    let mut backoff = RETRY.retries();
    for (index, part) in parts.iter().enumerate() {
        let reply_to = if index == 0 { reply_to } else { None };
        // Agents write Markdown; failure explanations are plain.
        let mut markup = (!delivery.reply.failed).then_some("Markdown");
        loop {
            match api.send_message(chat, part, markup, reply_to).await {
                Ok(()) => {
                    status.set(AdapterState::Connected, None);
                    backoff.reset();
                    break;
                }
                Err(e) if markup.is_some() && e.is_markup_error() => {
                    tracing::debug!("telegram: markup refused ({e}); sending as plain text");
                    markup = None;
                }
                Err(ApiError::Unauthorized) => {
                    status.set(
                        AdapterState::Unauthorized,
                        Some(ApiError::Unauthorized.to_string()),
                    );
                    return false;
                }
                Err(e) if e.is_transient() => {
                    let wait = match e {
                        ApiError::RetryAfter(secs) => Duration::from_secs(secs.max(1)).min(MAX_RETRY_AFTER),
                        _ => backoff.next_delay(),
                    };
                    tracing::warn!(
                        "telegram: cannot send a reply ({e}); retrying in {:.1} s",
                        wait.as_secs_f64()
                    );
                    status.set(AdapterState::Retrying, Some(format!("sending a reply: {e}")));
                    if !pause(wait, stop).await {
                        return false;
                    }
                }
                Err(e) => {
                    // The chat is gone, the bot was blocked...: this reply can never be sent.
                    tracing::warn!(
                        chat,
                        turn = delivery.turn_id,
                        "telegram: giving up on a reply the API refuses: {e}"
                    );
                    return mark(engine, delivery.turn_id).await;
                }
            }
        }
    }
    mark(engine, delivery.turn_id).await
}

async fn mark(engine: &Engine, turn_id: i64) -> bool {
    if let Err(e) = engine.mark_delivered(turn_id).await {
        tracing::warn!(
            turn = turn_id,
            "telegram: cannot record a delivered reply (it may be sent again): {e}"
        );
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_cap_and_resets() {
        let mut backoff = RETRY.retries();
        let first = backoff.next_delay();
        assert!(
            first >= Duration::from_millis(900) && first <= Duration::from_millis(1200),
            "{first:?}"
        );
        for _ in 0..10 {
            backoff.next_delay();
        }
        let capped = backoff.next_delay();
        assert!(capped <= Duration::from_secs(33), "{capped:?}");
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(1200));
    }

    #[test]
    fn options_read_the_token_from_the_environment_and_never_show_it() {
        let config = TelegramConfig {
            enabled: true,
            token_env: Some("HERALD_TELEGRAM_TEST_SURELY_UNSET".into()),
            ..TelegramConfig::default()
        };
        assert_eq!(
            TelegramOptions::from_config(&config, &Variables::environment_only()).unwrap_err(),
            TelegramSetupError::TokenEnvMissing("HERALD_TELEGRAM_TEST_SURELY_UNSET".into())
        );
        let config = TelegramConfig {
            enabled: true,
            token: Some("42:SECRET".into()),
            allowed_users: vec![7],
            ..TelegramConfig::default()
        };
        let options = TelegramOptions::from_config(&config, &Variables::environment_only()).unwrap();
        assert!(options.allows(7) && !options.allows(8));
        assert!(!format!("{options:?}").contains("SECRET"));
    }
}
