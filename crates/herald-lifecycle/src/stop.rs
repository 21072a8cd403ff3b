//! `stop`: through the service manager that owns the home, else the stop ladder of `herald-process`
//! (control channel → marker → SIGTERM → verified force kill), with the stop budget of the config read
//! once.
//!
//! **Invariant:** a manager that restarts the gateway is the one that stops it; and whatever the path,
//! the default timeout is the home's [`herald_home::StopBudget`] — the same one the units were written
//! with, and the same for a broken config.

use herald_install::manage::Action;
use herald_process::StopOutcome;

use crate::direct;
pub use crate::direct::StopRequest;
use crate::error::LifecycleError;
use crate::route::{Routed, route};
use crate::target::Target;

/// What `stop` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopResult {
    /// The service manager stopped it.
    Routed(Routed),
    /// Stopped directly (or found not running).
    Direct(StopOutcome),
}

/// Stops the gateway of `target` and returns once it has exited.
pub fn stop(target: &Target, request: &StopRequest) -> Result<StopResult, LifecycleError> {
    if let Some(routed) = route(target, Action::Stop)? {
        return Ok(StopResult::Routed(routed));
    }
    direct::stop_direct(target, request).map(StopResult::Direct)
}
