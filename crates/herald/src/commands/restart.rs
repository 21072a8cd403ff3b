//! `herald restart [--after-exit PID | --adapter NAME]`.

use std::time::Duration;

use herald_home::ExitCode;
use herald_lifecycle::Target;
use herald_lifecycle::restart::{AfterExit, RestartOutcome};

use crate::cli::RestartArgs;

pub fn restart(target: &Target, args: &RestartArgs) -> ExitCode {
    let timeout = Duration::from_secs(args.timeout);
    if let Some(adapter) = &args.adapter {
        return match herald_lifecycle::restart::restart_adapter(target, adapter) {
            Ok(pid) => {
                println!(
                    "restarted the {adapter} adapter inside gateway pid {pid} (the process kept serving)"
                );
                ExitCode::Ok
            }
            Err(e) => super::fail(&e),
        };
    }
    if let Some(key) = &args.wait_for {
        // The detached watcher: nobody reads its output; the outcome goes to the lifecycle log.
        let Some(key) = herald_home::records::ProcessKey::parse(key) else {
            eprintln!("herald: --wait-for takes PID:START_TIME");
            return ExitCode::Usage;
        };
        return match herald_lifecycle::restart::watch_then_restart(target, key, timeout) {
            Ok(outcome) => {
                print_restarted(target, &outcome);
                ExitCode::Ok
            }
            Err(e) => super::fail(&e),
        };
    }
    let result = match args.after_exit {
        Some(pid) => herald_lifecycle::restart::restart_after_exit(target, pid, timeout),
        None => herald_lifecycle::restart::restart(target, timeout).map(AfterExit::RestartedNow),
    };
    match result {
        Ok(AfterExit::Watching { pid, watcher_pid }) => {
            println!("herald will restart after pid {pid} exits (watcher pid {watcher_pid})");
            ExitCode::Ok
        }
        Ok(AfterExit::RestartedNow(outcome)) => {
            if let Some(pid) = args.after_exit {
                println!("pid {pid} is not running; restarting now");
            }
            print_restarted(target, &outcome);
            ExitCode::Ok
        }
        Err(e) => super::fail(&e),
    }
}

fn print_restarted(target: &Target, outcome: &RestartOutcome) {
    match outcome {
        RestartOutcome::Routed(routed) => super::print_routed(routed),
        RestartOutcome::Direct { stopped, started } => {
            super::stop::print_stopped(target, stopped);
            super::start::print_started(started);
        }
    }
}
