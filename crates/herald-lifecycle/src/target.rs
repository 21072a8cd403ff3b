//! The home a command acts on, resolved once per invocation, with its config read at most once.
//!
//! **Invariant:** one invocation parses `herald.toml` at most once, lazily — `status` never pays for it —
//! and every decision derived from it (the stop budget, the service spec) comes from that one reading,
//! so two parts of one command can never disagree about a config that changed between two reads.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use herald_home::config::{Config, ConfigError};
use herald_home::{Home, StopBudget};

use crate::error::LifecycleError;

/// A resolved home and its config (read on first use).
#[derive(Debug)]
pub struct Target {
    home: Home,
    config: OnceLock<Result<Config, Arc<ConfigError>>>,
    /// The executable a start runs, when not this process's own (see [`Self::with_executable`]).
    executable: Option<PathBuf>,
}

impl Target {
    pub fn new(home: Home) -> Target {
        Target {
            home,
            config: OnceLock::new(),
            executable: None,
        }
    }

    /// Starts (and service specs) use `exe` instead of this process's own executable: `herald upgrade`,
    /// whose own file was just replaced (on Linux the running image then reads as "(deleted)", on
    /// Windows it was renamed aside), starts the gateway from the stable path it installed.
    pub fn with_executable(mut self, exe: PathBuf) -> Target {
        self.executable = Some(exe);
        self
    }

    /// The herald executable a start runs.
    pub fn executable(&self) -> Result<PathBuf, LifecycleError> {
        match &self.executable {
            Some(exe) => Ok(exe.clone()),
            None => std::env::current_exe().map_err(LifecycleError::NoExecutable),
        }
    }

    pub fn home(&self) -> &Home {
        &self.home
    }

    /// The home's config (the defaults when there is no file), read and validated on first use.
    pub fn config(&self) -> Result<&Config, &ConfigError> {
        self.read().as_ref().map_err(|e| &**e)
    }

    /// As [`Self::config`], the error as [`LifecycleError::Config`] (for commands that need a valid one).
    pub fn config_or_error(&self) -> Result<&Config, LifecycleError> {
        self.read()
            .as_ref()
            .map_err(|e| LifecycleError::Config(e.clone()))
    }

    fn read(&self) -> &Result<Config, Arc<ConfigError>> {
        self.config.get_or_init(|| load(&self.home))
    }

    /// The stop budget every stop of this home uses: from the config, or the documented default when the
    /// config is broken (see [`StopBudget::of`]).
    pub fn stop_budget(&self) -> StopBudget {
        StopBudget::of(self.config())
    }

    /// The home and its config (read now, if not yet): what `herald run` hands the daemon.
    pub fn into_parts(self) -> (Home, Result<Config, Arc<ConfigError>>) {
        let config = match self.config.into_inner() {
            Some(read) => read,
            None => load(&self.home),
        };
        (self.home, config)
    }
}

fn load(home: &Home) -> Result<Config, Arc<ConfigError>> {
    Config::load(&home.config_file())
        .map(|(config, _)| config)
        .map_err(Arc::new)
}
