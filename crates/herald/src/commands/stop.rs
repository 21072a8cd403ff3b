//! `herald stop`.

use std::time::Duration;

use herald_home::ExitCode;
use herald_lifecycle::Target;
use herald_lifecycle::stop::{StopRequest, StopResult};
use herald_process::{StopOutcome, StopVia};

use crate::cli::{StopArgs, Via};

pub fn stop(target: &Target, args: &StopArgs) -> ExitCode {
    if let Some(missing) = super::missing_home(target.home()) {
        // Nothing can run on a home that does not exist: not running, exit 0 as the contract says.
        println!("herald is not running: {missing}");
        return ExitCode::Ok;
    }
    let request = StopRequest {
        timeout: args.timeout.map(Duration::from_secs),
        via: match args.via {
            Via::Auto => StopVia::Auto,
            Via::Channel => StopVia::Channel,
            Via::Marker => StopVia::Marker,
            Via::Signal => StopVia::Signal,
        },
        force: !args.no_force,
        requested_by: "herald stop".into(),
    };
    match herald_lifecycle::stop::stop(target, &request) {
        Ok(StopResult::Routed(routed)) => {
            super::print_routed(&routed);
            ExitCode::Ok
        }
        Ok(StopResult::Direct(outcome)) => {
            print_stopped(target, &outcome);
            ExitCode::Ok
        }
        Err(e) => super::fail(&e),
    }
}

/// `stopped pid 42 via channel in 12 ms`, or that nothing was running.
pub(crate) fn print_stopped(target: &Target, outcome: &StopOutcome) {
    for line in stopped_lines(target, outcome) {
        println!("{line}");
    }
}

/// The lines [`print_stopped`] prints.
pub(crate) fn stopped_lines(target: &Target, outcome: &StopOutcome) -> Vec<String> {
    match outcome {
        StopOutcome::NotRunning { stale } => {
            let mut lines = vec![format!(
                "herald is not running (home {})",
                target.home().root().display()
            )];
            if let Some(stale) = stale {
                lines.push(format!("note: {stale}"));
            }
            lines
        }
        StopOutcome::Stopped { pid, path, elapsed } => {
            let who = pid.map_or_else(|| "the gateway".to_owned(), |p| format!("pid {p}"));
            vec![format!(
                "stopped {who} via {} in {:.0} ms",
                path.as_str(),
                elapsed.as_secs_f64() * 1000.0
            )]
        }
    }
}
