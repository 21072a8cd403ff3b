//! `herald stop`.

use std::time::Duration;

use herald_daemon::run::STOP_MARGIN;
use herald_daemon::{StopOptions, StopOutcome, StopVia};
use herald_home::config::Config;
use herald_home::{ExitCode, Home};

use crate::cli::{StopArgs, Via};

pub fn stop(home: &Home, args: &StopArgs) -> ExitCode {
    // A service manager that restarts the gateway must be the one that stops it.
    if let Some(code) = super::install::route(home, herald_service::install::manage::Action::Stop) {
        return code;
    }
    let timeout = match args.timeout {
        Some(secs) => Duration::from_secs(secs),
        None => {
            // A broken config must not prevent stopping: fall back to the default drain budget.
            let drain = Config::load(&home.config_file())
                .map(|(c, _)| c.gateway.drain_timeout_secs)
                .unwrap_or_else(|_| Config::default().gateway.drain_timeout_secs);
            Duration::from_secs(drain) + STOP_MARGIN
        }
    };
    let options = StopOptions {
        timeout,
        via: match args.via {
            Via::Auto => StopVia::Auto,
            Via::Channel => StopVia::Channel,
            Via::Marker => StopVia::Marker,
            Via::Signal => StopVia::Signal,
        },
        restart: false,
        force: !args.no_force,
        requested_by: "herald stop".into(),
    };
    match herald_daemon::stop_gateway(home, &options) {
        Ok(StopOutcome::NotRunning { stale }) => {
            println!("herald is not running (home {})", home.root().display());
            if let Some(stale) = stale {
                println!("note: {stale}");
            }
            ExitCode::Ok
        }
        Ok(StopOutcome::Stopped { pid, path, elapsed }) => {
            let who = pid.map_or_else(|| "the gateway".to_owned(), |p| format!("pid {p}"));
            println!(
                "stopped {who} via {} in {:.0} ms",
                path.as_str(),
                elapsed.as_secs_f64() * 1000.0
            );
            ExitCode::Ok
        }
        Err(e) => {
            eprintln!("herald: stop failed: {e}");
            ExitCode::Failure
        }
    }
}
