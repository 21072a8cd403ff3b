//! `herald run`: which process this is — a monitor, a standalone gateway or a monitor's worker — and
//! the options it was started with. The life of each is elsewhere: [`crate::startup`] (lock, records,
//! config, in that order), [`crate::serve`] (the serving gateway, and its one shutdown path),
//! [`crate::supervise::monitor`] (the monitor).

use std::sync::Arc;

use herald_home::config::{Config, ConfigError};
use herald_home::records::ProcessKey;
use herald_home::{ExitCode, Home};

use crate::payload::SharedFactory;
use crate::readiness::Notifier;
pub use crate::startup::RunError;
use crate::state::Role;

#[derive(Debug)]
pub struct RunOptions {
    pub home: Home,
    /// The home's config as this invocation read it, once (a broken one is recorded as
    /// `startup_failed`, exit 78, after the lock is taken).
    pub config: Result<Config, Arc<ConfigError>>,
    /// Who is told when the gateway is ready or stopping (systemd, the SCM, nobody).
    pub notifier: Notifier,
    /// Stop a gateway already running on this home, then take over.
    pub replace: bool,
    pub mode: RunMode,
    /// What a start that fails for a reason only a person can fix (exit 78) does.
    pub on_fatal: OnFatalStart,
    /// Builds the journal and agent for the serving process.
    pub payload: SharedFactory,
}

impl RunOptions {
    /// The stop budget this process waits with ([`crate::startup::stop_budget`] of its config).
    pub fn stop_budget(&self) -> herald_home::StopBudget {
        crate::startup::stop_budget(&self.config)
    }
}

/// How `herald run` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// A monitor process that runs the gateway as a worker child and restarts it (the default).
    Supervised,
    /// One process, no monitor (`--no-supervise`, for service managers that supervise themselves).
    Standalone,
    /// The worker half of `Supervised`, started by a monitor (`run --worker`; not for people).
    Worker { monitor: ProcessKey },
}

/// What a gateway does when its start fails with exit 78 (a broken `herald.toml`, a key nobody provides,
/// a taken listen address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFatalStart {
    /// Record `startup_failed` and exit 78 (a manager that honours the contract does not restart it).
    #[default]
    Exit,
    /// Stay up, idle in `startup_failed`, until `herald.toml` (or the secrets) change and the start can be
    /// tried again, or a stop arrives (exit 0): for launchd, which would restart an exit 78 forever
    /// (`run --launchd`; see `crate::config_wait`). Only a standalone gateway waits.
    Wait,
}

/// Runs the gateway in the foreground until a planned stop. Returns the exit code to exit with.
pub fn run(options: RunOptions) -> Result<ExitCode, RunError> {
    let RunOptions {
        home,
        config,
        notifier,
        replace,
        mode,
        on_fatal,
        payload,
    } = options;
    match mode {
        RunMode::Supervised => crate::supervise::monitor::run_monitor(home, config, &notifier, replace),
        RunMode::Standalone => crate::serve::run_gateway(
            home,
            config,
            &notifier,
            Role::Standalone,
            replace,
            &payload,
            on_fatal,
        ),
        RunMode::Worker { monitor } => crate::serve::run_gateway(
            home,
            config,
            &notifier,
            Role::Worker { monitor },
            false,
            &payload,
            OnFatalStart::Exit,
        ),
    }
}
