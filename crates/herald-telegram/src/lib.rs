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
//! **Access** is default deny (`gate`): a message from a user outside `admin_users`/`allowed_users`, not
//! paired (`herald pair telegram`, then `/pair CODE` in the chat) and without `allow_all` never reaches the
//! agent or the journal; the user gets one short reply naming their id and how to get in, and the log
//! gets one line with it. In-chat commands (`herald_gateway::commands`) are answered before the agent.
//!
//! The HTTP client (reqwest, TLS) builds C, so this crate is a leaf only the binary links, like
//! `herald-journal`; the gateway and the daemon know it only as a [`PushAdapter`].
//!
//! **Health** (see `herald_gateway::health`): `connected` after every completed poll; `degraded` when a
//! poll fails or — the "alive but deaf" case — has not completed within its long-poll timeout plus a
//! margin ([`poll_deadline`]), after which the HTTP client is rebuilt (a new connection pool: a
//! connection left stuck by a network change is never reused), as it is after [`REBUILD_AFTER`] network
//! errors in a row; `bad_credentials` on a 401, retried on a slow growing schedule ([`CREDENTIALS_RETRY`])
//! and never a restart of anything; `conflict` on a 409 (another program polls this token), said once.
//! A reply that cannot be sent makes the adapter `degraded` too, while it retries.
//!
//! **Supervision:** the poller and the sender are tasks of their own, each restarted alone with a backoff
//! if it ever fails (a panic), and [`PushAdapter::restart`] — `herald restart --adapter telegram` —
//! stops both, rebuilds the client and starts them again, while the rest of the gateway serves on.

mod api;
mod deliver;
mod draft;
pub mod gate;
pub mod group;
mod media;
pub mod pace;
pub mod split;

use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use herald_gateway::adapter::{BoxFuture, PushAdapter};
use herald_gateway::backoff::{Backoff, Jitter, pause};
use herald_gateway::commands::{self, Caller, Command, CommandDesk};
use herald_gateway::engine::{Engine, Outbox, SubmitError, Ticket};
use herald_gateway::health::HealthHandle;
use herald_gateway::journal::{Delivery, JournalError, SessionKey};
use herald_home::Home;

use crate::draft::Drafts;
use herald_home::access::AccessLevel;
use herald_home::config::{ChatId, ChatRule, Config, GroupRespond, GroupSessions, TelegramConfig};
use herald_home::records::HealthState;
use herald_home::secrets::Variables;
use herald_home::sync::MutexExt;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use api::{ApiError, BotApi, BotIdentity};

/// The adapter name Telegram sessions are stored under (`telegram:<chat id>`).
pub const ADAPTER: &str = "telegram";

/// How long a 409 (another poller) waits before the next try.
const CONFLICT_RETRY: Duration = Duration::from_secs(30);
/// How long a 401 (bad token) waits before the next try — 5 s, 10 s, 20 s … up to 10 min — in case the
/// token is restored; one try per step, never a storm.
pub const CREDENTIALS_RETRY: Backoff = Backoff {
    base: Duration::from_secs(5),
    max: Duration::from_secs(600),
    jitter: Jitter::Tenth,
};
/// Network errors in a row after which the HTTP client is rebuilt.
pub const REBUILD_AFTER: u32 = 3;
/// The longest `retry_after` honoured as such (a longer one is capped).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// The typing indicator lasts about 5 s on Telegram's side; it is renewed this often while a turn runs.
const TYPING_EVERY: Duration = Duration::from_secs(4);
/// A turn that answers within this time gets no typing indicator at all.
const TYPING_DELAY: Duration = Duration::from_millis(300);
/// How long a restart waits for the old tasks to finish what they are doing before ending them.
const RESTART_GRACE: Duration = Duration::from_secs(2);
/// How long `getMe` may take before the poll goes on without it.
const IDENTITY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one `getUpdates` may take before the poll counts as stuck: the server holds it up to
/// `poll_timeout`; the margin — 5 s plus a fifth of the timeout — covers a slow network without waiting
/// long on a dead connection (a false alarm costs one new connection and one repeated poll, no message).
pub fn poll_deadline(poll_timeout: Duration) -> Duration {
    poll_timeout + Duration::from_secs(5) + poll_timeout / 5
}

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
    /// Who may talk to the agent, and who is told of outages: shared with the running adapter, so a
    /// reload changes it live.
    access: Arc<RwLock<Access>>,
    pub poll_timeout: Duration,
    pub min_poll_interval: Duration,
    /// How fast replies may go out (`[telegram] send_per_*`).
    pub pace: pace::Limits,
    /// Where pairing codes and grants live (`herald_home::access`); without one, pairing is off.
    home: Option<Home>,
    /// Wrong pairing codes seen lately.
    guesses: Arc<Mutex<gate::GuessLimiter>>,
    /// Who the bot is (`getMe`), once known: for mentions of it and replies to it in groups.
    identity: Arc<RwLock<Option<BotIdentity>>>,
    /// The largest file taken from a chat (`[gateway] media_max_mb`).
    media_max_bytes: u64,
    /// How long stored files are kept (`[gateway] media_retention_days`; `None`: forever).
    media_retention: Option<Duration>,
}

/// `[telegram] allowed_users`, `admin_users`, `allow_all` and `outage_notices`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Access {
    lists: gate::Lists,
    outage_notices: bool,
    group_respond: GroupRespond,
    group_sessions: GroupSessions,
    chats: std::collections::BTreeMap<ChatId, ChatRule>,
}

impl Access {
    fn of(config: &TelegramConfig) -> Access {
        Access {
            lists: gate::Lists {
                allowed_users: config.allowed_users.clone(),
                admin_users: config.admin_users.clone(),
                allow_all: config.allow_all,
            },
            outage_notices: config.outage_notices,
            group_respond: config.group_respond,
            group_sessions: config.group_sessions,
            chats: config.chats.clone(),
        }
    }

    /// The rule for group `chat` (as `TelegramConfig::group_rule`).
    fn group_rule(&self, chat: i64) -> (GroupRespond, GroupSessions) {
        let own = self.chats.get(&ChatId(chat)).copied().unwrap_or_default();
        (
            own.respond.unwrap_or(self.group_respond),
            own.sessions.unwrap_or(self.group_sessions),
        )
    }
}

impl std::fmt::Debug for TelegramOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramOptions")
            .field("token", &"<redacted>")
            .field("api_base", &self.api_base)
            .field("access", &*self.access.read().unwrap_or_else(|e| e.into_inner()))
            .field("poll_timeout", &self.poll_timeout)
            .field("min_poll_interval", &self.min_poll_interval)
            .field("pace", &self.pace)
            .field("home", &self.home)
            .finish_non_exhaustive()
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
            access: Arc::new(RwLock::new(Access::of(config))),
            poll_timeout: Duration::from_secs(config.poll_timeout_secs),
            min_poll_interval: Duration::from_millis(config.min_poll_interval_ms),
            pace: pace::Limits {
                per_second: config.send_per_second,
                per_chat_per_second: config.send_per_chat_per_second,
                per_group_per_minute: config.send_per_group_per_minute,
            },
            home: None,
            guesses: Arc::default(),
            identity: Arc::default(),
            media_max_bytes: 20 << 20,
            media_retention: None,
        })
    }

    /// The largest file taken from a chat, in MB, and how many days stored files are kept (0: forever)
    /// (`[gateway] media_max_mb`, `media_retention_days`).
    #[must_use]
    pub fn with_media_limits(mut self, max_mb: u64, retention_days: u64) -> TelegramOptions {
        self.media_max_bytes = max_mb.saturating_mul(1 << 20);
        self.media_retention = (retention_days > 0).then(|| Duration::from_secs(retention_days * 86_400));
        self
    }

    /// Turns pairing on, and files: codes, grants and media are kept in `home` (see `herald_home::access`,
    /// `herald_home::media`).
    #[must_use]
    pub fn with_home(mut self, home: Home) -> TelegramOptions {
        self.home = Some(home);
        self
    }

    /// Asks the Bot API who this bot is (`getMe`, within `timeout`): proves the API is reachable and the
    /// token valid, without taking any update.
    pub async fn who_am_i(&self, timeout: Duration) -> Result<String, ApiError> {
        BotApi::new(&self.api_base, &self.token)?.get_me(timeout).await
    }

    fn access(&self) -> Access {
        self.access.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether `user` is in, at which level and why: the config's lists, then a pairing grant (read
    /// on every message from someone the lists do not name, so a revocation holds at once), then
    /// `allow_all`. A grant that cannot be read lets no one in.
    fn caller(&self, user: i64) -> Option<(AccessLevel, String)> {
        let lists = self
            .access
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .lists
            .clone();
        let listed = lists.admin_users.as_ref().is_some_and(|a| a.contains(&user))
            || lists.allowed_users.contains(&user);
        let grant = match (&self.home, listed) {
            (Some(home), false) => match herald_home::access::grant_of(home, ADAPTER, &user.to_string()) {
                Ok(grant) => grant,
                Err(e) => {
                    tracing::warn!(user, "telegram: {e}");
                    None
                }
            },
            _ => None,
        };
        gate::decide(&lists, grant.as_ref(), user)
    }

    fn identity(&self) -> Option<BotIdentity> {
        self.identity.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn outage_recipients(&self) -> Vec<i64> {
        let access = self.access();
        let mut people = access.lists.allowed_users.clone();
        people.extend(access.lists.admin_users.iter().flatten());
        people.sort_unstable();
        people.dedup();
        people
    }

    /// Replaces who may talk to the agent and who is told of outages (a reload); true when it changed.
    fn set_access(&self, config: &TelegramConfig) -> bool {
        let new = Access::of(config);
        let mut access = self.access.write().unwrap_or_else(|e| e.into_inner());
        let changed = *access != new;
        *access = new;
        changed
    }
}

/// The Bot API client the poller and the sender share, rebuilt (a new connection pool) when its
/// connections look stuck.
///
/// It also holds the one [`pace::Pacer`] every message to a chat books its slot from — replies, drafts'
/// edits, command answers, refusals and notices alike — so together they keep Telegram's limits. It
/// lives as long as the adapter, so a 429's hold outlasts a restart of the adapter's tasks. (`typing…`,
/// a chat action rather than a message, is not paced: one every few seconds per waiting chat.)
#[derive(Debug)]
struct Client {
    api_base: String,
    token: String,
    api: RwLock<BotApi>,
    pacer: Mutex<pace::Pacer>,
}

/// How long a courtesy message (a command's answer, a refusal, a notice: not journaled, sent once) may
/// wait for its slot before it is skipped rather than queued behind the replies, holding up the poller.
const COURTESY_WAIT: Duration = Duration::from_millis(3500);

impl Client {
    fn new(options: &TelegramOptions) -> Result<Client, ApiError> {
        Ok(Client {
            api: RwLock::new(BotApi::new(&options.api_base, &options.token)?),
            api_base: options.api_base.clone(),
            token: options.token.clone(),
            pacer: Mutex::new(pace::Pacer::new(options.pace)),
        })
    }

    /// Books the next slot for a message to `chat` (see [`pace::Pacer::reserve`]).
    fn reserve(&self, chat: i64) -> tokio::time::Instant {
        let slot = self
            .pacer
            .lock_unpoisoned()
            .reserve(chat, std::time::Instant::now());
        tokio::time::Instant::from_std(slot)
    }

    /// Books a slot for `chat` only if it comes within `within` (see [`pace::Pacer::reserve_within`]).
    fn reserve_within(&self, chat: i64, within: Duration) -> Option<tokio::time::Instant> {
        let slot = self
            .pacer
            .lock_unpoisoned()
            .reserve_within(chat, std::time::Instant::now(), within)?;
        Some(tokio::time::Instant::from_std(slot))
    }

    /// A 429 for `chat` asking to wait `wait`; returns whether every chat is now held.
    fn refused(&self, chat: i64, wait: Duration) -> bool {
        self.pacer
            .lock_unpoisoned()
            .refused(chat, wait, std::time::Instant::now())
    }

    /// Sends a courtesy message at its slot, or not at all ([`ApiError::Paced`]) when none comes within
    /// [`COURTESY_WAIT`]. One try.
    async fn courtesy(&self, chat: i64, text: &str, reply_to: Option<i64>) -> Result<(), ApiError> {
        let slot = self.reserve_within(chat, COURTESY_WAIT).ok_or(ApiError::Paced)?;
        tokio::time::sleep_until(slot).await;
        let sent = self.api().send_message(chat, text, None, reply_to).await;
        if let Err(ApiError::RetryAfter(secs)) = &sent {
            self.refused(chat, Duration::from_secs((*secs).max(1)).min(MAX_RETRY_AFTER));
        }
        sent
    }

    fn api(&self) -> BotApi {
        self.api.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Drops every pooled connection: the next call connects afresh.
    fn rebuild(&self) {
        match BotApi::new(&self.api_base, &self.token) {
            Ok(api) => *self.api.write().unwrap_or_else(|e| e.into_inner()) = api,
            Err(e) => tracing::warn!("telegram: cannot rebuild the HTTP client: {e}"),
        }
    }
}

/// What the poller and the sender each know, combined into the one state the board shows: the
/// poller's, unless replies are failing to go out while polling works.
#[derive(Debug, Clone)]
struct Reporter {
    health: HealthHandle,
    parts: Arc<Mutex<Parts>>,
}

#[derive(Debug, Default)]
struct Parts {
    poll: Option<(HealthState, Option<String>)>,
    send_failure: Option<String>,
}

impl Reporter {
    fn new(health: HealthHandle) -> Reporter {
        Reporter {
            health,
            parts: Arc::default(),
        }
    }

    fn poll(&self, state: HealthState, message: Option<String>) {
        self.parts.lock_unpoisoned().poll = Some((state, message));
        self.publish();
    }

    fn send_failing(&self, why: Option<String>) {
        {
            let mut parts = self.parts.lock_unpoisoned();
            if parts.send_failure == why {
                return;
            }
            parts.send_failure = why;
        }
        self.publish();
    }

    fn publish(&self) {
        let (state, message) = {
            let parts = self.parts.lock_unpoisoned();
            match (&parts.send_failure, &parts.poll) {
                (Some(why), Some((state, _))) if state.is_healthy() => {
                    (HealthState::Degraded, Some(why.clone()))
                }
                (Some(why), None) => (HealthState::Degraded, Some(why.clone())),
                (_, Some((state, message))) => (*state, message.clone()),
                (None, None) => (HealthState::Starting, None),
            }
        };
        self.health.set(state, message);
    }

    fn state(&self) -> Option<HealthState> {
        self.health.state()
    }
}

/// The Telegram adapter (see the module docs for its guarantees).
#[derive(Debug)]
pub struct TelegramAdapter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: Arc<TelegramOptions>,
    client: Arc<Client>,
    /// Answers being written, shown as drafts (shared by every run).
    drafts: Arc<Drafts>,
    run: Mutex<Option<Running>>,
    /// Serialises restarts and the close, which both stop the running tasks.
    turn: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct Running {
    engine: Arc<Engine>,
    reporter: Reporter,
    outlet: Arc<Outlet>,
    opened: bool,
    closing: bool,
    tasks: Option<Tasks>,
}

/// One generation of the adapter's tasks, and the switch that stops them.
#[derive(Debug)]
struct Tasks {
    stop: watch::Sender<bool>,
    sender: JoinHandle<()>,
    poller: Option<JoinHandle<()>>,
}

impl Tasks {
    /// Stops both tasks, giving them `grace` to finish the call they are in.
    async fn stop(self, grace: Duration) {
        self.stop.send_replace(true);
        for mut task in [Some(self.sender), self.poller].into_iter().flatten() {
            if tokio::time::timeout(grace, &mut task).await.is_err() {
                task.abort();
            }
        }
    }
}

impl TelegramAdapter {
    pub fn new(options: TelegramOptions) -> Result<TelegramAdapter, TelegramSetupError> {
        let client = Client::new(&options).map_err(TelegramSetupError::Client)?;
        Ok(TelegramAdapter {
            inner: Arc::new(Inner {
                options: Arc::new(options),
                client: Arc::new(client),
                drafts: Arc::default(),
                run: Mutex::new(None),
                turn: tokio::sync::Mutex::new(()),
            }),
        })
    }
}

impl Inner {
    fn spawn_sender(&self, run: &Running, stop: &watch::Receiver<bool>) -> JoinHandle<()> {
        // The media store's pruning lives as long as this generation (it ends with the stop signal).
        if let (Some(home), Some(keep)) = (self.options.home.clone(), self.options.media_retention) {
            drop(tokio::spawn(prune_media(home, keep, stop.clone())));
        }
        let (engine, client, outlet, reporter, halt) = (
            run.engine.clone(),
            self.client.clone(),
            run.outlet.clone(),
            run.reporter.clone(),
            stop.clone(),
        );
        tokio::spawn(supervised(
            "sender",
            run.reporter.clone(),
            self.client.clone(),
            stop.clone(),
            move || {
                deliver::deliver_loop(
                    engine.clone(),
                    client.clone(),
                    outlet.take(),
                    outlet.drafts.clone(),
                    reporter.clone(),
                    halt.clone(),
                )
            },
        ))
    }

    fn spawn_poller(&self, run: &Running, stop: &watch::Receiver<bool>) -> JoinHandle<()> {
        let (engine, client, options, reporter, halt, drafts) = (
            run.engine.clone(),
            self.client.clone(),
            self.options.clone(),
            run.reporter.clone(),
            stop.clone(),
            self.drafts.clone(),
        );
        tokio::spawn(supervised(
            "poller",
            run.reporter.clone(),
            self.client.clone(),
            stop.clone(),
            move || {
                poll_loop(
                    engine.clone(),
                    client.clone(),
                    options.clone(),
                    drafts.clone(),
                    reporter.clone(),
                    halt.clone(),
                )
            },
        ))
    }

    /// Stops this generation of tasks, rebuilds the client and starts a new one (a poller only once
    /// the adapter was opened).
    async fn restart_now(&self) -> Result<(), String> {
        let _turn = self.turn.lock().await;
        let old = {
            let mut guard = self.run.lock_unpoisoned();
            let Some(run) = guard.as_mut() else {
                return Err("the Telegram adapter has not started yet".into());
            };
            if run.closing {
                return Err("the Telegram adapter is closing (the gateway is stopping)".into());
            }
            run.tasks.take()
        };
        if let Some(tasks) = old {
            tasks.stop(RESTART_GRACE).await;
        }
        self.client.rebuild();
        let mut guard = self.run.lock_unpoisoned();
        let Some(run) = guard.as_mut() else {
            return Err("the Telegram adapter is gone".into());
        };
        let (stop, stop_rx) = watch::channel(false);
        let sender = self.spawn_sender(run, &stop_rx);
        let poller = run.opened.then(|| self.spawn_poller(run, &stop_rx));
        run.tasks = Some(Tasks { stop, sender, poller });
        run.reporter.health.restarted();
        tracing::info!(
            "telegram: restarted the adapter (new connections; the rest of the gateway kept serving)"
        );
        Ok(())
    }

    async fn close_now(&self, grace: Duration) {
        let _turn = self.turn.lock().await;
        let (tasks, reporter) = {
            let mut guard = self.run.lock_unpoisoned();
            let Some(run) = guard.as_mut() else { return };
            run.closing = true;
            (run.tasks.take(), run.reporter.clone())
        };
        if let Some(tasks) = tasks {
            tasks.stop(grace).await;
        }
        self.drafts.stop_all();
        reporter.health.set(HealthState::Stopped, None);
    }
}

/// The engine's outbox for Telegram sessions: a queue the delivery task drains, and the drafts of
/// answers being written.
#[derive(Debug)]
struct QueueOutbox {
    queue: mpsc::UnboundedSender<Delivery>,
    drafts: Arc<Drafts>,
    client: Arc<Client>,
    /// Weak: the engine holds this outbox.
    engine: std::sync::Weak<Engine>,
}

impl Outbox for QueueOutbox {
    fn deliver(&self, delivery: Delivery) {
        // The delivery task is gone only after close; the reply stays undelivered in the journal.
        let _ = self.queue.send(delivery);
    }

    fn drafting(&self, drafting: herald_gateway::engine::Drafting) {
        self.drafts
            .start(self.client.clone(), self.engine.clone(), drafting);
    }
}

/// Where replies for Telegram sessions come out. Each sender run takes a queue of its own: the first
/// was registered at attach (before any resumed turn could reply), a later one replaces it — replies
/// the old queue held are still undelivered in the journal, which every run reads first.
#[derive(Debug)]
struct Outlet {
    engine: Arc<Engine>,
    client: Arc<Client>,
    drafts: Arc<Drafts>,
    first: Mutex<Option<mpsc::UnboundedReceiver<Delivery>>>,
}

impl Outlet {
    fn register(engine: &Arc<Engine>, client: &Arc<Client>, drafts: &Arc<Drafts>) -> Arc<Outlet> {
        let outlet = Outlet {
            engine: engine.clone(),
            client: client.clone(),
            drafts: drafts.clone(),
            first: Mutex::new(None),
        };
        let rx = outlet.register_queue();
        *outlet.first.lock_unpoisoned() = Some(rx);
        Arc::new(outlet)
    }

    fn register_queue(&self) -> mpsc::UnboundedReceiver<Delivery> {
        let (tx, rx) = mpsc::unbounded_channel();
        let outbox = QueueOutbox {
            queue: tx,
            drafts: self.drafts.clone(),
            client: self.client.clone(),
            engine: Arc::downgrade(&self.engine),
        };
        self.engine.register_outbox(ADAPTER, Arc::new(outbox));
        rx
    }

    fn take(&self) -> mpsc::UnboundedReceiver<Delivery> {
        if let Some(rx) = self.first.lock_unpoisoned().take() {
            return rx;
        }
        self.register_queue()
    }
}

impl PushAdapter for TelegramAdapter {
    fn name(&self) -> &'static str {
        ADAPTER
    }

    fn attach(&self, engine: &Arc<Engine>, health: HealthHandle) {
        let inner = &self.inner;
        let (stop, stop_rx) = watch::channel(false);
        let mut run = Running {
            engine: engine.clone(),
            reporter: Reporter::new(health),
            outlet: Outlet::register(engine, &inner.client, &inner.drafts),
            opened: false,
            closing: false,
            tasks: None,
        };
        let sender = inner.spawn_sender(&run, &stop_rx);
        run.tasks = Some(Tasks {
            stop,
            sender,
            poller: None,
        });
        *inner.run.lock_unpoisoned() = Some(run);
    }

    fn open(&self) {
        let inner = &self.inner;
        let mut guard = inner.run.lock_unpoisoned();
        let Some(run) = guard.as_mut() else { return };
        run.opened = true;
        let Some(stop) = run.tasks.as_ref().map(|t| t.stop.subscribe()) else {
            return;
        };
        let poller = inner.spawn_poller(run, &stop);
        if let Some(tasks) = &mut run.tasks {
            tasks.poller = Some(poller);
        }
    }

    fn restart(&self) -> BoxFuture<Result<(), String>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.restart_now().await })
    }

    fn announces(&self) -> bool {
        let options = &self.inner.options;
        options.access().outage_notices && !options.outage_recipients().is_empty()
    }

    fn announce(&self, text: String) -> BoxFuture<()> {
        let on = self.inner.options.access().outage_notices;
        let people = self.inner.options.outage_recipients();
        let client = self.inner.client.clone();
        Box::pin(async move {
            if !on {
                return;
            }
            for user in people {
                // A private chat's id is its user's id. One try: a notice is not worth a queue.
                if let Err(e) = client.courtesy(user, &text, None).await {
                    tracing::warn!(user, "telegram: cannot send an outage notice to user {user}: {e}");
                }
            }
        })
    }

    fn reconfigure(&self, config: &Config, _variables: &Variables) -> Vec<&'static str> {
        // Who may talk and who is told of outages are read per use: applied at once. The token and the
        // API base are held by the running tasks: a restart applies those.
        self.inner.options.set_access(&config.telegram);
        vec![
            "telegram.allowed_users",
            "telegram.admin_users",
            "telegram.allow_all",
            "telegram.group_respond",
            "telegram.group_sessions",
            "telegram.chats.*",
            "telegram.outage_notices",
        ]
    }

    fn close(&self, grace: Duration) -> BoxFuture<()> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.close_now(grace).await })
    }
}

/// How long to wait after the Bot API failed: 1 s, 2 s, 4 s ... 30 s, each within a tenth either side.
const RETRY: Backoff = Backoff {
    base: Duration::from_secs(1),
    max: Duration::from_secs(30),
    jitter: Jitter::Tenth,
};

/// How long a task that failed waits before it runs again: 1 s, 2 s … 60 s.
const TASK_RESTART: Backoff = Backoff {
    base: Duration::from_secs(1),
    max: Duration::from_secs(60),
    jitter: Jitter::Tenth,
};

/// Ends a task when its supervisor is dropped (a restart that ran out of grace).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs one of the adapter's loops, and runs it again — after a pause, with a new client — if it ever
/// fails (a panic), until `stop`. A loop that returns by itself (the poller when a drain begins) is not
/// restarted.
async fn supervised<F, Fut>(
    what: &'static str,
    reporter: Reporter,
    client: Arc<Client>,
    mut stop: watch::Receiver<bool>,
    make: F,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut pauses = TASK_RESTART.retries();
    loop {
        let task = tokio::spawn(make());
        let _guard = AbortOnDrop(task.abort_handle());
        let why = match task.await {
            Ok(()) => return,
            Err(e) if e.is_panic() => panic_text(e.into_panic()),
            Err(_) => return,
        };
        if *stop.borrow() {
            return;
        }
        let wait = pauses.next_delay();
        tracing::error!(
            "telegram: the {what} task failed ({why}); restarting it alone in {:.1} s",
            wait.as_secs_f64()
        );
        reporter.poll(
            HealthState::Degraded,
            Some(format!("the {what} task failed ({why}); restarting it")),
        );
        reporter.health.restarted();
        if !pause(wait, &mut stop).await {
            return;
        }
        client.rebuild();
    }
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(text) => (*text).to_owned(),
            Err(_) => "a panic".to_owned(),
        },
    }
}

/// What became of a batch of updates.
enum Batch {
    /// All handled; the offset to store.
    Handled(Option<i64>),
    /// A drain began; the offset of the handled prefix.
    Draining(Option<i64>),
    /// The journal (or the media store, or a file's download) failed; the offset of the handled prefix.
    Failed(Option<i64>, String),
}

/// Why one update could not be handled.
enum UpdateError {
    Draining,
    Journal(JournalError),
    /// A file the message carries could not be fetched or stored (yet): the update comes again.
    Media(String),
}

/// Why a poll brought nothing.
#[derive(Debug)]
enum PollFailure {
    Api(ApiError),
    /// No answer within [`poll_deadline`]: the connection is probably stuck.
    Stuck(Duration),
}

/// The poller's memory of failures, and what each outcome means: the state to show, whether to
/// rebuild the client, and how long to wait. Pure apart from the backoff's jitter.
#[derive(Debug)]
struct PollJudge {
    retry: herald_gateway::backoff::Retries,
    credentials: herald_gateway::backoff::Retries,
    network_errors: u32,
}

/// What to do after a failed poll.
#[derive(Debug, PartialEq)]
struct AfterFailure {
    state: HealthState,
    message: String,
    rebuild: bool,
    wait: Duration,
}

impl PollJudge {
    fn new() -> PollJudge {
        PollJudge {
            retry: RETRY.retries(),
            credentials: CREDENTIALS_RETRY.retries(),
            network_errors: 0,
        }
    }

    fn succeeded(&mut self) {
        self.retry.reset();
        self.credentials.reset();
        self.network_errors = 0;
    }

    fn failed(&mut self, failure: &PollFailure) -> AfterFailure {
        match failure {
            PollFailure::Stuck(after) => {
                self.network_errors = 0;
                AfterFailure {
                    state: HealthState::Degraded,
                    message: format!(
                        "getUpdates did not complete within {} s (a stuck connection?); reconnected",
                        after.as_secs()
                    ),
                    rebuild: true,
                    wait: Duration::ZERO,
                }
            }
            PollFailure::Api(ApiError::Unauthorized) => AfterFailure {
                state: HealthState::BadCredentials,
                message: ApiError::Unauthorized.to_string(),
                rebuild: false,
                wait: self.credentials.next_delay(),
            },
            PollFailure::Api(e @ ApiError::Conflict(_)) => AfterFailure {
                state: HealthState::Conflict,
                message: e.to_string(),
                rebuild: false,
                wait: CONFLICT_RETRY,
            },
            PollFailure::Api(e @ ApiError::RetryAfter(secs)) => AfterFailure {
                state: HealthState::Degraded,
                message: e.to_string(),
                rebuild: false,
                wait: Duration::from_secs((*secs).max(1)).min(MAX_RETRY_AFTER),
            },
            PollFailure::Api(e) => {
                let network = matches!(e, ApiError::Network(_));
                self.network_errors = if network { self.network_errors + 1 } else { 0 };
                let rebuild = self.network_errors >= REBUILD_AFTER;
                if rebuild {
                    self.network_errors = 0;
                }
                AfterFailure {
                    state: HealthState::Degraded,
                    message: if rebuild {
                        format!("{e}; reconnecting after {REBUILD_AFTER} network errors in a row")
                    } else {
                        e.to_string()
                    },
                    rebuild,
                    wait: self.retry.next_delay(),
                }
            }
        }
    }
}

async fn poll_loop(
    engine: Arc<Engine>,
    client: Arc<Client>,
    options: Arc<TelegramOptions>,
    drafts: Arc<Drafts>,
    reporter: Reporter,
    mut stop: watch::Receiver<bool>,
) {
    // Drain start and stop both end the polling: fold them into one signal.
    let (halt_tx, mut halt) = watch::channel(false);
    let mut drain = engine.turns().drain_signal();
    let watcher = tokio::spawn(async move {
        tokio::select! {
            _ = drain.wait_for(|d| *d) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
        halt_tx.send_replace(true);
    });
    let _watcher = AbortOnDrop(watcher.abort_handle());
    let mut backoff = RETRY.retries();
    let mut offset = loop {
        match engine.adapter_offset(ADAPTER).await {
            Ok(offset) => break offset,
            Err(e) => {
                reporter.poll(
                    HealthState::Degraded,
                    Some(format!("cannot read the stored offset: {e}")),
                );
                if !pause(backoff.next_delay(), &mut halt).await {
                    return;
                }
            }
        }
    };
    // Among replicas sharing a journal, a poll never outlasts this replica's lease on the bot (see
    // `herald_gateway::cluster`): so a replica paused mid-poll cannot still be polling once another
    // has taken over.
    let cluster = engine.cluster().cloned();
    let poll_timeout = match &cluster {
        Some(cluster) => options.poll_timeout.min(cluster.lease_ttl() / 4),
        None => options.poll_timeout,
    };
    let deadline = poll_deadline(poll_timeout);
    // A poll completes within its deadline, and the next starts at most `min_poll_interval` later:
    // twice that without one, while connected, is deaf (`status --deep` says so).
    reporter
        .health
        .expect_inbound_every((deadline + options.min_poll_interval) * 2);
    let mut judge = PollJudge::new();
    let desk = CommandDesk::new(engine.clone(), reporter.health.board().clone());
    // The command menu, once per run; best effort (a bot without it still understands the commands).
    let menu = client.api();
    tokio::spawn(async move {
        if let Err(e) = menu.set_my_commands(commands::COMMANDS).await {
            tracing::debug!("telegram: cannot set the command menu: {e}");
        }
    });
    loop {
        let started = Instant::now();
        let api = client.api();
        if options.identity().is_none() {
            // Groups need it (mentions, replies to the bot); a failure is tried again next poll.
            match api.me(IDENTITY_TIMEOUT).await {
                Ok(me) => {
                    tracing::info!(username = ?me.username, "telegram: the bot is {}", me.id);
                    *options.identity.write().unwrap_or_else(|e| e.into_inner()) = Some(me);
                }
                Err(e) => tracing::debug!("telegram: getMe: {e}"),
            }
        }
        if let Some(cluster) = &cluster {
            let needed = poll_timeout + cluster.lease_ttl() / 10;
            while cluster.lease_left() < needed {
                if cluster.lost().borrow().is_some() {
                    return;
                }
                if !pause(Duration::from_millis(50), &mut halt).await {
                    return;
                }
            }
        }
        let polled = tokio::select! {
            polled = tokio::time::timeout(deadline, api.get_updates(offset, poll_timeout)) => match polled {
                Ok(Ok(updates)) => Ok(updates),
                Ok(Err(e)) => Err(PollFailure::Api(e)),
                Err(_elapsed) => Err(PollFailure::Stuck(deadline)),
            },
            _ = halt.wait_for(|h| *h) => break,
        };
        let wait = match polled {
            Ok(updates) => {
                judge.succeeded();
                reporter.health.inbound();
                reporter.poll(HealthState::Connected, None);
                let empty = updates.is_empty();
                let batch =
                    handle_batch(&engine, &desk, &drafts, &client, &api, &options, &updates, offset).await;
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
                        reporter.poll(HealthState::Degraded, Some(format!("cannot store messages: {e}")));
                        backoff.next_delay()
                    }
                }
            }
            Err(failure) => {
                let after = judge.failed(&failure);
                let was = reporter.state();
                if was != Some(after.state) {
                    match after.state {
                        HealthState::BadCredentials | HealthState::Conflict => {
                            tracing::error!(
                                "telegram: {}; the rest of the gateway keeps serving",
                                after.message
                            );
                        }
                        _ => tracing::warn!(
                            "telegram: {}; retrying in {:.1} s",
                            after.message,
                            after.wait.as_secs_f64()
                        ),
                    }
                } else {
                    tracing::debug!("telegram: {}", after.message);
                }
                reporter.poll(after.state, Some(after.message));
                if after.rebuild {
                    client.rebuild();
                }
                after.wait
            }
        };
        if !wait.is_zero() && !pause(wait, &mut halt).await {
            break;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn handle_batch(
    engine: &Arc<Engine>,
    desk: &CommandDesk,
    drafts: &Arc<Drafts>,
    client: &Client,
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
        match handle_update(engine, desk, drafts, client, api, options, id, update).await {
            Ok(()) => next = Some(next.map_or(id + 1, |n| n.max(id + 1))),
            Err(UpdateError::Draining) => return Batch::Draining(next),
            Err(UpdateError::Journal(e)) => return Batch::Failed(next, e.to_string()),
            Err(UpdateError::Media(e)) => return Batch::Failed(next, e),
        }
    }
    Batch::Handled(next)
}

/// Answers a command, stores a text message as a turn, lets a stranger pair, or acknowledges anything
/// else.
#[allow(clippy::too_many_arguments)]
async fn handle_update(
    engine: &Arc<Engine>,
    desk: &CommandDesk,
    drafts: &Arc<Drafts>,
    client: &Client,
    api: &BotApi,
    options: &TelegramOptions,
    update_id: i64,
    update: &Value,
) -> Result<(), UpdateError> {
    let message = update.get("message");
    let file = message.and_then(|m| media::incoming(m, options.media_max_bytes));
    // A file's caption is its text; commands come only as text.
    let typed = message.and_then(|m| m.get("text")).and_then(Value::as_str);
    let text = typed
        .or_else(|| message.and_then(|m| m.get("caption")).and_then(Value::as_str))
        .or(file.as_ref().map(|_| ""));
    let chat = message.and_then(|m| m.get("chat"));
    let chat_id = chat.and_then(|c| c.get("id")).and_then(Value::as_i64);
    let (Some(message), Some(text), Some(chat_id)) = (message, text, chat_id) else {
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
    let from = message.get("from");
    let user = from.and_then(|f| f.get("id")).and_then(Value::as_i64);
    let message_id = message.get("message_id").and_then(Value::as_i64).unwrap_or(0);
    let me = options.identity();
    let command = typed.and_then(|t| commands::parse(t, me.as_ref().and_then(|m| m.username.as_deref())));
    let rule = options.access().group_rule(chat_id);
    let addressed = group::addressed(message, text, me.as_ref());
    let (conversation, text) = match group::route(message, text, command.is_some(), me.as_ref(), rule) {
        group::Route::Answer { conversation, text } => (conversation, text),
        group::Route::Ignore(why) => {
            tracing::debug!(update = update_id, "telegram: not for the bot: {why}");
            return Ok(());
        }
    };
    let Some(user) = user else {
        deny(client, chat_id, None).await;
        return Ok(());
    };
    let private = chat.and_then(|c| c.get("type")).and_then(Value::as_str) == Some("private");
    let Some((level, why)) = options.caller(user) else {
        match command {
            Some(Command::Pair(code)) => pair(client, options, chat_id, user, from, &code).await,
            // A stranger in a group who did not address the bot is not told anything.
            _ if private || addressed || command.is_some() => {
                deny(client, chat_id, Some(user)).await;
            }
            _ => tracing::debug!(
                user,
                chat = chat_id,
                "telegram: a group message from someone not let in"
            ),
        }
        return Ok(());
    };
    let session = SessionKey::new(ADAPTER, conversation);
    let id = format!("u{update_id}-m{message_id}");
    if let Some(command) = command {
        let caller = Caller {
            kind: "Telegram user",
            user: Some(user.to_string()),
            name: display_name(from),
            level,
            why,
            // One person's conversation in a group is theirs alone.
            shared_chat: !private && !session.chat_id.contains(':'),
        };
        let answer = desk
            .run(&session, &id, &caller, &command)
            .await
            .map_err(UpdateError::Journal)?;
        // One try: the command is done (and recorded); its answer is a courtesy, like "typing...".
        if let Err(e) = client
            .courtesy(chat_id, &answer, Some(message_id).filter(|m| *m > 0))
            .await
        {
            tracing::warn!(chat = chat_id, "telegram: cannot answer /{}: {e}", command.name());
        }
        return Ok(());
    }
    let mut attachments = Vec::new();
    if let Some(file) = &file {
        match fetch_file(client, api, options, chat_id, &session.chat_id, message_id, file).await? {
            Some(attachment) => attachments.push(attachment),
            // Refused (too big, unavailable) and the sender told: no turn.
            None => return Ok(()),
        }
    }
    match engine.submit_with(session, Some(id), text, attachments).await {
        Ok(ticket) => {
            if ticket.new {
                tokio::spawn(typing(api.clone(), chat_id, ticket, drafts.clone()));
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

/// How often the media store is pruned while the adapter runs.
const PRUNE_EVERY: Duration = Duration::from_secs(6 * 3600);

/// Removes stored files older than `keep`, now and every [`PRUNE_EVERY`], until `stop`.
async fn prune_media(home: Home, keep: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        let at = home.clone();
        let removed = tokio::task::spawn_blocking(move || {
            herald_home::media::prune(&at, keep, std::time::SystemTime::now())
        })
        .await
        .unwrap_or_default();
        if removed > 0 {
            tracing::info!(removed, "media: removed files past their retention");
        }
        if !pause(PRUNE_EVERY, &mut stop).await {
            return;
        }
    }
}

/// Gets a message's file into the media store. `Ok(None)`: refused for good (the sender is told why);
/// `Err`: not now (the update is fetched again later).
async fn fetch_file(
    client: &Client,
    api: &BotApi,
    options: &TelegramOptions,
    chat: i64,
    conversation: &str,
    message_id: i64,
    file: &media::Incoming,
) -> Result<Option<herald_gateway::agent::Attachment>, UpdateError> {
    let Some(home) = &options.home else {
        return Ok(None);
    };
    let max = options.media_max_bytes;
    let refusal = match media::fetch(api, home, conversation, file, max).await {
        media::Fetched::Stored(attachment) => return Ok(Some(attachment)),
        media::Fetched::TooBig { size, max } => format!(
            "Sorry, that file is too big for me ({:.1} MB; the limit is {} MB).",
            size as f64 / 1_048_576.0,
            max >> 20
        ),
        media::Fetched::Failed(e) if e.is_transient() => {
            return Err(UpdateError::Media(format!("cannot download a file: {e}")));
        }
        media::Fetched::Failed(e) => {
            tracing::warn!(chat, "telegram: a file cannot be downloaded: {e}");
            "Sorry, I could not get that file from Telegram (it may be too big for a bot).".to_owned()
        }
        media::Fetched::NotStored(e) => return Err(UpdateError::Media(format!("cannot store a file: {e}"))),
    };
    if let Err(e) = client
        .courtesy(chat, &refusal, Some(message_id).filter(|m| *m > 0))
        .await
    {
        tracing::warn!(chat, "telegram: cannot refuse a file: {e}");
    }
    Ok(None)
}

/// `@username`, else the first name, as the user gave it (for `/whoami` and `herald access list`).
fn display_name(from: Option<&Value>) -> Option<String> {
    let from = from?;
    if let Some(username) = from.get("username").and_then(Value::as_str) {
        return Some(format!("@{username}"));
    }
    from.get("first_name").and_then(Value::as_str).map(str::to_owned)
}

/// `/pair CODE` from someone not let in yet: redeems the code (single use, see `herald_home::access`),
/// with wrong guesses limited per user and overall (`gate::GuessLimiter`) and logged without the code.
async fn pair(
    client: &Client,
    options: &TelegramOptions,
    chat: i64,
    user: i64,
    from: Option<&Value>,
    code: &str,
) {
    let answer = match &options.home {
        None => "Pairing is not available on this gateway.".to_owned(),
        Some(home) => {
            let now = Instant::now();
            let verdict = options.guesses.lock_unpoisoned().check(user, now);
            match verdict {
                gate::Guess::UserLimited(wait) => {
                    tracing::warn!(
                        user,
                        "telegram: pairing attempt from user {user} refused: too many wrong codes"
                    );
                    format!(
                        "Too many wrong codes. Try again in {} minutes.",
                        wait.as_secs().div_ceil(60)
                    )
                }
                gate::Guess::Paused(wait) => {
                    tracing::warn!(
                        user,
                        "telegram: pairing paused: too many wrong codes from everyone"
                    );
                    format!(
                        "Pairing is paused after too many wrong codes. Try again in {} minutes.",
                        wait.as_secs().div_ceil(60)
                    )
                }
                gate::Guess::Allowed => {
                    let name = display_name(from);
                    match herald_home::access::redeem(
                        home,
                        ADAPTER,
                        code,
                        &user.to_string(),
                        name.as_deref(),
                        herald_home::time::now_ms(),
                    ) {
                        Ok(grant) => {
                            tracing::info!(
                                user,
                                level = grant.level.as_str(),
                                "telegram: user {user} paired"
                            );
                            format!(
                                "Paired: you can talk to the agent now (access: {}). Send /help to see the commands.",
                                grant.level.as_str()
                            )
                        }
                        Err(herald_home::access::RedeemError::Access(e)) => {
                            tracing::error!(user, "telegram: pairing failed: {e}");
                            "Pairing failed on the gateway's side; its owner can see why in the log."
                                .to_owned()
                        }
                        Err(e) => {
                            options.guesses.lock_unpoisoned().wrong(user, now);
                            tracing::warn!(
                                user,
                                "telegram: user {user} sent a pairing code that was refused: {e}"
                            );
                            format!("Sorry: {e}.")
                        }
                    }
                }
            }
        }
    };
    if let Err(e) = client.courtesy(chat, &answer, None).await {
        tracing::warn!(user, "telegram: cannot answer a pairing attempt: {e}");
    }
}

/// Default deny: one log line with the id, one short reply telling the user how to get in.
async fn deny(client: &Client, chat: i64, user: Option<i64>) {
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
        "telegram: denied a message from user {user}, who is not in [telegram] allowed_users nor paired"
    );
    let text = format!(
        "Sorry, this bot only talks to people its owner has allowed. Your Telegram user id is {user}; the \
         owner can let you in by adding it to allowed_users in the [telegram] section of herald.toml, or \
         give you a pairing code (`herald pair telegram`) that you send here as /pair CODE."
    );
    if let Err(e) = client.courtesy(chat, &text, None).await {
        tracing::warn!(user, "telegram: cannot tell user {user} they were denied: {e}");
    }
}

/// "typing..." while the turn runs (skipped for turns that answer at once, and while a draft shows the
/// answer growing). Best effort: a failure
/// ends it quietly.
async fn typing(api: BotApi, chat: i64, ticket: Ticket, drafts: Arc<Drafts>) {
    let outcome = ticket.outcome();
    tokio::pin!(outcome);
    let mut wait = TYPING_DELAY;
    loop {
        tokio::select! {
            _ = &mut outcome => return,
            () = tokio::time::sleep(wait) => {}
        }
        if drafts.visible_in(chat) {
            // The answer shows itself growing: no "typing…" over it.
            wait = TYPING_EVERY;
            continue;
        }
        if let Err(e) = api.send_typing(chat).await {
            tracing::debug!("telegram: no typing indicator: {e}");
            return;
        }
        wait = TYPING_EVERY;
    }
}

/// The Telegram message a turn answers, from its message id (`u<update>-m<message>`).
pub(crate) fn reply_to_of(message_id: &str) -> Option<i64> {
    message_id
        .rsplit_once("-m")
        .and_then(|(_, id)| id.parse::<i64>().ok())
        .filter(|id| *id > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_task_that_panics_is_restarted_alone_and_a_stop_ends_it() {
        let board = herald_gateway::health::HealthBoard::new();
        let reporter = Reporter::new(board.adapter(ADAPTER));
        let options = TelegramOptions::from_config(
            &TelegramConfig {
                enabled: true,
                token: Some("1:T".into()),
                api_base: "http://127.0.0.1:1".into(),
                ..TelegramConfig::default()
            },
            &Variables::environment_only(),
        )
        .unwrap();
        let client = Arc::new(Client::new(&options).unwrap());
        let (stop, stop_rx) = watch::channel(false);
        let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = runs.clone();
        let halt = stop_rx.clone();
        let task = tokio::spawn(supervised(
            "poller",
            reporter.clone(),
            client,
            stop_rx,
            move || {
                let run = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut halt = halt.clone();
                async move {
                    if run == 0 {
                        panic!("boom");
                    }
                    let _ = halt.wait_for(|s| *s).await;
                }
            },
        ));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let record = board.adapters()[0].clone();
        assert_eq!(record.state, HealthState::Degraded);
        assert!(
            record
                .message
                .as_deref()
                .unwrap_or_default()
                .contains("the poller task failed (boom)"),
            "{record:?}"
        );
        assert_eq!(record.restarts, 1);
        // After its pause (about 1 s) it runs again, alone.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 2);
        stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("a stop ends the supervisor")
            .unwrap();
        assert_eq!(
            runs.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "not restarted after a stop"
        );
    }

    #[test]
    fn the_poll_judge_maps_failures_to_state_rebuild_and_wait() {
        let mut judge = PollJudge::new();
        let stuck = judge.failed(&PollFailure::Stuck(Duration::from_secs(35)));
        assert_eq!(
            (stuck.state, stuck.rebuild, stuck.wait),
            (HealthState::Degraded, true, Duration::ZERO)
        );
        assert!(
            stuck.message.contains("did not complete within 35 s"),
            "{stuck:?}"
        );
        let network = || PollFailure::Api(ApiError::Network("reset".into()));
        assert!(!judge.failed(&network()).rebuild);
        assert!(!judge.failed(&network()).rebuild);
        let third = judge.failed(&network());
        assert!(third.rebuild, "{third:?}");
        assert!(third.message.contains("3 network errors in a row"), "{third:?}");
        let refused = judge.failed(&PollFailure::Api(ApiError::Unauthorized));
        assert_eq!(refused.state, HealthState::BadCredentials);
        assert!(refused.wait >= Duration::from_millis(4_500) && refused.wait <= Duration::from_millis(5_500));
        let again = judge.failed(&PollFailure::Api(ApiError::Unauthorized));
        assert!(again.wait >= Duration::from_secs(9), "growing: {again:?}");
        let conflict = judge.failed(&PollFailure::Api(ApiError::Conflict("other".into())));
        assert_eq!((conflict.state, conflict.rebuild), (HealthState::Conflict, false));
        judge.succeeded();
        let refused = judge.failed(&PollFailure::Api(ApiError::Unauthorized));
        assert!(refused.wait <= Duration::from_millis(5_500), "reset by a success");
        assert_eq!(poll_deadline(Duration::from_secs(25)), Duration::from_secs(35));
        assert_eq!(poll_deadline(Duration::ZERO), Duration::from_secs(5));
    }

    #[test]
    fn a_failing_sender_shows_over_a_working_poller_and_clears() {
        let board = herald_gateway::health::HealthBoard::new();
        let reporter = Reporter::new(board.adapter(ADAPTER));
        reporter.poll(HealthState::Connected, None);
        reporter.send_failing(Some("cannot send replies: 502".into()));
        assert_eq!(board.adapters()[0].state, HealthState::Degraded);
        reporter.poll(HealthState::Connected, None);
        assert_eq!(
            board.adapters()[0].state,
            HealthState::Degraded,
            "still failing to send"
        );
        reporter.send_failing(None);
        assert_eq!(board.adapters()[0].state, HealthState::Connected);
        // A poller's own trouble wins over a sender's.
        reporter.send_failing(Some("cannot send replies: 502".into()));
        reporter.poll(HealthState::Conflict, Some("409".into()));
        assert_eq!(board.adapters()[0].state, HealthState::Conflict);
    }

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
        assert!(options.caller(7).is_some() && options.caller(8).is_none());
        assert!(!format!("{options:?}").contains("SECRET"));
    }
}
