//! `stop`: through the service manager that owns the home, else the stop ladder of `herald-process`
//! (control channel → marker → SIGTERM → verified force kill), with the stop budget of the config read
//! once.
//!
//! **Invariant:** a manager that restarts the gateway is the one that stops it; and whatever the path,
//! the default timeout is the home's [`herald_home::StopBudget`] — the same one the units were written
//! with, and the same for a broken config.

use std::time::Duration;

use herald_install::manage::Action;
use herald_process::{StopOptions, StopOutcome, StopVia, stop_gateway};

use crate::error::LifecycleError;
use crate::route::{Routed, route};
use crate::target::Target;

/// What the caller asks of a stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopRequest {
    /// How long to wait before forcing; `None`: the home's stop budget.
    pub timeout: Option<Duration>,
    pub via: StopVia,
    /// Force-kill a verified gateway that has not stopped when the timeout ends.
    pub force: bool,
    /// Who asks, for the marker and the lifecycle log.
    pub requested_by: String,
}

impl StopRequest {
    /// The whole ladder, the home's budget, force at the end.
    pub fn planned(requested_by: &str) -> StopRequest {
        StopRequest {
            timeout: None,
            via: StopVia::Auto,
            force: true,
            requested_by: requested_by.to_owned(),
        }
    }
}

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
    stop_unrouted(target, request).map(StopResult::Direct)
}

/// The ladder, never through a manager (a gateway running outside it, `restart`'s own stop).
pub(crate) fn stop_unrouted(target: &Target, request: &StopRequest) -> Result<StopOutcome, LifecycleError> {
    let options = StopOptions {
        timeout: request
            .timeout
            .unwrap_or_else(|| target.stop_budget().stop_timeout()),
        via: request.via,
        restart: false,
        force: request.force,
        requested_by: request.requested_by.clone(),
    };
    Ok(stop_gateway(target.home(), &options)?)
}
