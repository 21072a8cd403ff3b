//! The stop budget: how long a planned stop may take, derived from the config in one place.
//!
//! Every party that waits for a stop — `herald stop`, `herald run --replace`, a new worker waiting for an
//! orphaned one, `restart`, and the service managers through the generated units (systemd's
//! `TimeoutStopSec`, launchd's `ExitTimeOut`, the SCM's preshutdown timeout) — must agree on it, or one of
//! them kills a gateway in the middle of a drain that another allowed (the field notes' "TimeoutStopSec
//! shorter than the drain budget"). So there is one type and one margin.
//!
//! **Invariant:** a config that cannot be read or parsed gives the *default* budget
//! (`drain_timeout_secs = 30`, so 45 s), never zero: a broken config must not turn a planned stop into a
//! kill.

use std::time::Duration;

use crate::config::{Config, ConfigError};

/// The drain budget and the stop timeouts derived from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopBudget {
    drain: Duration,
}

impl StopBudget {
    /// Time beyond the drain for the gateway to write its final records, release its lock and exit.
    pub const MARGIN: Duration = Duration::from_secs(15);

    /// The budget for a drain of `drain_timeout_secs`.
    pub fn new(drain_timeout_secs: u64) -> StopBudget {
        StopBudget {
            drain: Duration::from_secs(drain_timeout_secs),
        }
    }

    /// The budget of a loaded config; the default budget when the config is broken (see the module
    /// invariant).
    pub fn of(config: Result<&Config, &ConfigError>) -> StopBudget {
        let drain = match config {
            Ok(config) => config.gateway.drain_timeout_secs,
            Err(_) => Config::default().gateway.drain_timeout_secs,
        };
        StopBudget::new(drain)
    }

    /// How long the gateway drains in-flight turns before cutting them (they resume after the restart).
    pub fn drain(&self) -> Duration {
        self.drain
    }

    /// How long a stopper waits for the gateway to exit before it may force it: drain + [`Self::MARGIN`].
    /// `herald stop`'s default timeout, `run --replace`, a worker waiting for an orphaned one, systemd's
    /// `TimeoutStopSec`, launchd's `ExitTimeOut`, the SCM's preshutdown timeout.
    pub fn stop_timeout(&self) -> Duration {
        self.drain.saturating_add(Self::MARGIN)
    }

    /// [`Self::stop_timeout`] in whole seconds, for unit files.
    pub fn stop_timeout_secs(&self) -> u64 {
        self.stop_timeout().as_secs()
    }

    /// How long to wait for a service manager's own stop command (`systemctl stop`, the SCM's Stop), which
    /// itself allows [`Self::stop_timeout`] before killing: one more margin for the manager to notice.
    pub fn manager_wait(&self) -> Duration {
        self.stop_timeout().saturating_add(Self::MARGIN)
    }
}

impl Default for StopBudget {
    fn default() -> Self {
        StopBudget::new(Config::default().gateway.drain_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_config_gets_the_default_budget_not_zero() {
        let broken = ConfigError::Read {
            path: "herald.toml".into(),
            source: std::io::Error::other("unreadable"),
        };
        let budget = StopBudget::of(Err(&broken));
        assert_eq!(budget, StopBudget::default());
        assert_eq!(budget.drain(), Duration::from_secs(30));
        assert_eq!(budget.stop_timeout(), Duration::from_secs(45));
    }

    #[test]
    fn the_stop_timeout_is_the_drain_plus_one_margin() {
        let mut config = Config::default();
        config.gateway.drain_timeout_secs = 5;
        let budget = StopBudget::of(Ok(&config));
        assert_eq!(budget.stop_timeout_secs(), 20);
        assert_eq!(budget.manager_wait(), Duration::from_secs(35));
        assert_eq!(StopBudget::new(0).stop_timeout(), StopBudget::MARGIN);
    }
}
