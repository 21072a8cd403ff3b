//! `start`: through the service manager that owns the home, else a detached, supervised gateway
//! ([`crate::direct`]), reported only once it is ready; a gateway already running is the caller's wish
//! met.

use std::time::{Duration, Instant};

use herald_install::manage::Action;

use crate::direct;
use crate::error::LifecycleError;
use crate::route::{Routed, route};
use crate::target::Target;

pub use crate::direct::{DEFAULT_TIMEOUT, Started};

/// What `start` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOutcome {
    /// A gateway already held the home: the caller's wish is met.
    AlreadyRunning { pid: Option<u32> },
    /// The service manager this home is registered with started it.
    Routed(Routed),
    /// A detached gateway we spawned is ready.
    Started(Started),
}

/// Starts the gateway of `target` — through its service manager when it has one — unless one runs.
pub fn start(target: &Target, timeout: Duration) -> Result<StartOutcome, LifecycleError> {
    if let Some(pid) = direct::running(target) {
        // A gateway still starting (its PID record not written yet): name it once it serves.
        let pid = pid.or_else(|| direct::ready_elsewhere(target, Instant::now() + timeout).map(|s| s.pid));
        return Ok(StartOutcome::AlreadyRunning { pid });
    }
    if let Some(routed) = route(target, Action::Start)? {
        return Ok(StartOutcome::Routed(routed));
    }
    direct::start_detached(target, timeout).map(StartOutcome::Started)
}
