//! `herald run`.

use std::sync::Arc;

use herald_daemon::supervise::monitor::MONITOR_ENV;
use herald_daemon::{OnFatalStart, RunError, RunMode, RunOptions, SharedFactory};
use herald_home::ExitCode;
use herald_home::records::ProcessKey;
use herald_lifecycle::Target;

use crate::cli::RunArgs;
use crate::payload::StandardPayload;

pub fn run(target: Target, args: &RunArgs) -> ExitCode {
    let home = target.home();
    // Started by a logon task, a Run value or the SCM (Windows), stderr goes nowhere: log to the
    // home's stdio log instead, as a detached `herald start` does. A worker inherits it from its monitor.
    if !args.worker
        && let Err(e) = herald_process::stdio::adopt_log_when_orphaned(&home.stdio_log())
    {
        tracing::warn!("cannot open {}: {e}", home.stdio_log().display());
    }
    let mode = if args.worker {
        match std::env::var(MONITOR_ENV)
            .ok()
            .as_deref()
            .and_then(ProcessKey::parse)
        {
            Some(monitor) => RunMode::Worker { monitor },
            None => {
                eprintln!(
                    "herald: --worker is started by `herald run` itself ({MONITOR_ENV} is missing or invalid)"
                );
                return ExitCode::Usage;
            }
        }
    } else if args.no_supervise {
        RunMode::Standalone
    } else {
        RunMode::Supervised
    };
    let service = herald_install::names::windows_service_name(home.profile());
    let (home, config) = target.into_parts();
    let options = RunOptions {
        home,
        config,
        notifier: herald_daemon::readiness::Notifier::from_env(),
        replace: args.replace,
        mode,
        on_fatal: if args.launchd {
            OnFatalStart::Wait
        } else {
            OnFatalStart::Exit
        },
        payload: SharedFactory(Arc::new(StandardPayload)),
    };
    let result = if args.windows_service {
        match herald_daemon::winsvc::run_as_service(options, service) {
            Ok(result) => result,
            Err(e) => {
                eprintln!("herald: {e}");
                return ExitCode::Usage;
            }
        }
    } else {
        herald_daemon::run(options)
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            match &e {
                RunError::Config(config) => eprintln!("herald: invalid configuration: {config}"),
                other => eprintln!("herald: {other}"),
            }
            e.exit_code()
        }
    }
}
