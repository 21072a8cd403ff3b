//! The Matrix adapter: a bot account on any homeserver, `/sync` in, room messages out, end-to-end
//! encrypted rooms included — on the Matrix ecosystem's own client library (matrix-sdk).
//!
//! **Invariant (no lost event):** the `/sync` token that confirms a batch of events is committed to the
//! journal (`AdapterStore::set_adapter_cursor`) only after every message of the batch is durably a turn
//! (`Engine::submit_with` returns after the commit). A process killed at any moment syncs again from the
//! last committed token, and the homeserver hands the events over again.
//!
//! **Invariant (none answered twice):** a message becomes a turn under its event id (`$…`, unique on
//! the homeserver), and the journal makes at most one turn per message id in a session, so an event
//! handed over again joins or finds its turn.
//!
//! **Delivery** is at least once, and in practice once: replies come through the engine's outbox, are
//! sent with the transaction id `herald-<turn>` (the homeserver drops a repeat of one it has seen from
//! this device), and are marked delivered once the homeserver answered. Unmarked replies are sent again
//! when the adapter starts. A reply the homeserver refuses for good (the bot left the room, it may not
//! speak there) is set aside (`herald deliveries`), never retried forever.
//!
//! **Encryption:** the client library keeps the device's keys in `matrix/store/` in the home, and the
//! device is the same at every start (`device`), so keys survive restarts and encrypted rooms read like
//! any other. A lost key store is reported (`bad_credentials`, with what to do), never silently replaced.
//!
//! **Access** is default deny: invites are accepted only from `allowed_users`/`admin_users` (or anyone
//! with `allow_all`), and messages from anyone else are ignored with one log line. The bot never answers
//! itself or a `m.notice` (other bots). In rooms of more than two, only mentions and commands (`route`).
//!
//! **Health:** `starting` until logged in, `connected` after every completed sync, `degraded` while the
//! homeserver cannot be reached (retried 1 s … 30 s), `bad_credentials` when it refuses the password or
//! token (retried slowly; the rest of the gateway keeps serving).
//!
//! The client library builds C (SQLite, TLS), so this crate is a leaf only the binary links, like
//! `herald-journal`; the gateway and the daemon know it only as a [`PushAdapter`].

pub mod device;
pub mod probe;
pub mod route;
mod send;
mod sync;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_gateway::adapter::{BoxFuture, PushAdapter};
use herald_gateway::engine::Engine;
use herald_gateway::health::HealthHandle;
use herald_home::Home;
use herald_home::access::AccessLevel;
use herald_home::config::{GroupRespond, GroupSessions, MatrixConfig, MatrixReplyKind};
use herald_home::records::HealthState;
use herald_home::secrets::Variables;
use herald_home::sync::MutexExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The adapter name Matrix sessions are stored under.
pub const ADAPTER: &str = "matrix";

/// Why the adapter cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatrixSetupError {
    #[error(
        "the variable {variable} (named by [matrix] {key}) is neither set in the gateway's environment nor \
         in the secrets store: run `herald secret set {variable}` (a service-managed gateway sees no shell \
         variables)"
    )]
    SecretMissing { key: &'static str, variable: String },
    #[error("[matrix] is enabled but has neither password_env nor access_token_env")]
    NoSecret,
}

/// How the bot proves who it is.
#[derive(Clone)]
pub enum Secret {
    Password(String),
    AccessToken(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Secret::Password(_) => "Password(<redacted>)",
            Secret::AccessToken(_) => "AccessToken(<redacted>)",
        })
    }
}

/// Who may talk to the agent.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub allowed_users: Vec<String>,
    pub admin_users: Option<Vec<String>>,
    pub allow_all: bool,
}

impl Access {
    fn of(config: &MatrixConfig) -> Access {
        Access {
            allowed_users: config.allowed_users.clone(),
            admin_users: config.admin_users.clone(),
            allow_all: config.allow_all,
        }
    }

    /// Whether `user` is in, at which level and why. Admins are `admin_users`, or, when that is unset,
    /// everyone listed in `allowed_users`.
    pub fn caller(&self, user: &str) -> Option<(AccessLevel, String)> {
        let admin = match &self.admin_users {
            Some(admins) => admins.iter().any(|a| a == user),
            None => self.allowed_users.iter().any(|a| a == user),
        };
        if admin {
            return Some((AccessLevel::Admin, "an admin in [matrix]".to_owned()));
        }
        if self.allowed_users.iter().any(|a| a == user) {
            return Some((AccessLevel::User, "listed in [matrix] allowed_users".to_owned()));
        }
        self.allow_all
            .then(|| (AccessLevel::User, "[matrix] allow_all".to_owned()))
    }
}

/// What the adapter needs to run.
#[derive(Debug, Clone)]
pub struct MatrixOptions {
    pub homeserver: String,
    pub user_id: String,
    pub secret: Secret,
    pub device_name: String,
    pub respond: GroupRespond,
    pub sessions: GroupSessions,
    pub reply_as: MatrixReplyKind,
    pub sync_timeout: Duration,
    /// Shared with the running adapter, so a reload changes it live.
    access: Arc<std::sync::RwLock<Access>>,
    pub home: Home,
}

impl MatrixOptions {
    /// The options from `[matrix]`, the secret looked up in `variables` (the environment, then the
    /// secrets store).
    pub fn from_config(
        config: &MatrixConfig,
        variables: &Variables,
        home: Home,
    ) -> Result<MatrixOptions, MatrixSetupError> {
        let lookup = |key: &'static str, variable: &String| {
            variables
                .value(variable.trim())
                .ok_or_else(|| MatrixSetupError::SecretMissing {
                    key,
                    variable: variable.trim().to_owned(),
                })
        };
        let secret = match (&config.password_env, &config.access_token_env) {
            (Some(var), _) => Secret::Password(lookup("password_env", var)?),
            (None, Some(var)) => Secret::AccessToken(lookup("access_token_env", var)?),
            (None, None) => return Err(MatrixSetupError::NoSecret),
        };
        Ok(MatrixOptions {
            homeserver: config.homeserver.trim_end_matches('/').to_owned(),
            user_id: config.user_id.clone(),
            secret,
            device_name: config.device_name.clone(),
            respond: config.room_respond,
            sessions: config.room_sessions,
            reply_as: config.reply_as,
            sync_timeout: Duration::from_secs(config.sync_timeout_secs),
            access: Arc::new(std::sync::RwLock::new(Access::of(config))),
            home,
        })
    }

    pub fn access(&self) -> Access {
        self.access.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_access(&self, config: &MatrixConfig) -> bool {
        let new = Access::of(config);
        let mut current = self.access.write().unwrap_or_else(|e| e.into_inner());
        let changed = current.allowed_users != new.allowed_users
            || current.admin_users != new.admin_users
            || current.allow_all != new.allow_all;
        *current = new;
        changed
    }
}

/// The Matrix adapter.
#[derive(Debug)]
pub struct MatrixAdapter {
    options: MatrixOptions,
    run: Arc<Mutex<Option<Running>>>,
}

#[derive(Debug)]
struct Running {
    engine: Arc<Engine>,
    health: HealthHandle,
    /// Taking messages (set by `open`, kept across a restart).
    opened: watch::Sender<bool>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl MatrixAdapter {
    pub fn new(options: MatrixOptions) -> MatrixAdapter {
        MatrixAdapter {
            options,
            run: Arc::new(Mutex::new(None)),
        }
    }
}

/// Starts one generation of the adapter: log in, deliver, and (once opened) sync.
fn spawn(
    options: &MatrixOptions,
    engine: &Arc<Engine>,
    health: &HealthHandle,
    opened: watch::Receiver<bool>,
) -> (watch::Sender<bool>, JoinHandle<()>) {
    let (stop, stop_rx) = watch::channel(false);
    let queue = send::Queue::register(engine);
    let task = tokio::spawn(sync::run(
        options.clone(),
        engine.clone(),
        health.clone(),
        queue,
        opened,
        stop_rx,
    ));
    (stop, task)
}

impl PushAdapter for MatrixAdapter {
    fn name(&self) -> &'static str {
        ADAPTER
    }

    fn attach(&self, engine: &Arc<Engine>, health: HealthHandle) {
        health.set(HealthState::Starting, Some("logging in".into()));
        let (opened, opened_rx) = watch::channel(false);
        let (stop, task) = spawn(&self.options, engine, &health, opened_rx);
        *self.run.lock_unpoisoned() = Some(Running {
            engine: engine.clone(),
            health,
            opened,
            stop,
            task,
        });
    }

    fn open(&self) {
        if let Some(run) = self.run.lock_unpoisoned().as_ref() {
            run.opened.send_replace(true);
        }
    }

    fn restart(&self) -> BoxFuture<Result<(), String>> {
        let options = self.options.clone();
        let run = self.run.clone();
        Box::pin(async move {
            let old = run.lock_unpoisoned().take();
            let Some(mut old) = old else {
                return Err("the Matrix adapter is not running".to_owned());
            };
            old.stop.send_replace(true);
            if tokio::time::timeout(Duration::from_secs(10), &mut old.task)
                .await
                .is_err()
            {
                old.task.abort();
            }
            old.health.restarted();
            let (stop, task) = spawn(&options, &old.engine, &old.health, old.opened.subscribe());
            *run.lock_unpoisoned() = Some(Running { stop, task, ..old });
            Ok(())
        })
    }

    fn reconfigure(&self, config: &herald_home::config::Config, _variables: &Variables) -> Vec<&'static str> {
        let mut live = Vec::new();
        if self.options.set_access(&config.matrix) {
            live.extend(["matrix.allowed_users", "matrix.admin_users", "matrix.allow_all"]);
        }
        live
    }

    fn close(&self, grace: Duration) -> BoxFuture<()> {
        let running = self.run.lock_unpoisoned().take();
        Box::pin(async move {
            let Some(mut running) = running else { return };
            running.stop.send_replace(true);
            if tokio::time::timeout(grace, &mut running.task).await.is_err() {
                tracing::warn!("matrix: replies still in flight at the stop; they are sent again next start");
                running.task.abort();
            }
            running.health.set(HealthState::Stopped, None);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_is_default_deny_and_admins_default_to_the_allowed() {
        let mut access = Access {
            allowed_users: vec!["@ann:x".into()],
            ..Access::default()
        };
        assert_eq!(access.caller("@ann:x").unwrap().0, AccessLevel::Admin);
        assert_eq!(access.caller("@bob:x"), None);
        access.admin_users = Some(vec!["@root:x".into()]);
        assert_eq!(access.caller("@ann:x").unwrap().0, AccessLevel::User);
        assert_eq!(access.caller("@root:x").unwrap().0, AccessLevel::Admin);
        access.allow_all = true;
        assert_eq!(access.caller("@bob:x").unwrap().0, AccessLevel::User);
    }

    #[test]
    fn the_secret_never_shows_in_debug() {
        let shown = format!("{:?}", Secret::Password("hunter2".into()));
        assert!(!shown.contains("hunter2"));
    }
}
