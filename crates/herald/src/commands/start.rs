//! `herald start`: a detached, supervised gateway, reported only once it is ready.

use std::time::Duration;

use herald_home::ExitCode;
use herald_lifecycle::Target;
use herald_lifecycle::start::StartOutcome;

use crate::cli::StartArgs;

pub fn start(target: &Target, args: &StartArgs) -> ExitCode {
    match herald_lifecycle::start::start(target, Duration::from_secs(args.timeout)) {
        Ok(outcome) => {
            print_started(&outcome);
            ExitCode::Ok
        }
        Err(e) => super::fail(&e),
    }
}

pub(crate) fn print_started(outcome: &StartOutcome) {
    match outcome {
        StartOutcome::AlreadyRunning { pid } => {
            let pid = pid.map_or_else(|| "pid unknown".to_owned(), |p| format!("pid {p}"));
            println!("herald is already running ({pid})");
        }
        StartOutcome::Routed(routed) => super::print_routed(routed),
        StartOutcome::Started(started) if started.already_running => println!(
            "herald is already running (pid {}): another start got there first",
            started.pid
        ),
        StartOutcome::Started(started) => println!(
            "herald started (pid {}) in {:.0} ms; logs: {}",
            started.pid,
            started.elapsed.as_secs_f64() * 1000.0,
            started.log.display()
        ),
    }
}
