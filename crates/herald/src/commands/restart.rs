//! `herald restart [--after-exit PID]`.
//!
//! A restart is a planned stop (drain) followed by a fresh detached start, so an updated executable is the
//! one that runs afterwards (a monitor re-spawning its worker would run the old image). With
//! `--after-exit`, a detached watcher — outside the caller's job object, so a closing GUI or updater does
//! not take it along — waits for that exact process (pid and start time) to exit first.

use std::ffi::OsString;
use std::time::Duration;

use herald_home::lifecycle::{EventKind, LifecycleEvent, LifecycleLog};
use herald_home::{ExitCode, Home};
use herald_service::ProcessProbe;

use crate::cli::{RestartArgs, StartArgs, StopArgs, Via};

/// The longest a watcher waits for the awaited process.
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

pub fn restart(home: &Home, args: &RestartArgs) -> ExitCode {
    if let Some(key) = &args.wait_for {
        return watch_then_restart(home, key, args.timeout);
    }
    let Some(pid) = args.after_exit else {
        return restart_now(home, args.timeout);
    };
    let key = match herald_service::probe(pid) {
        ProcessProbe::Alive(info) => info.key,
        _ => {
            println!("pid {pid} is not running; restarting now");
            return restart_now(home, args.timeout);
        }
    };
    let Some(exe) = super::prepare_detached_spawn(home) else {
        return ExitCode::Failure;
    };
    let watcher_args: Vec<OsString> = vec![
        "--home".into(),
        home.root().into(),
        "restart".into(),
        "--wait-for".into(),
        format!("{}:{}", key.pid, key.start_time).into(),
        "--timeout".into(),
        args.timeout.to_string().into(),
    ];
    match herald_service::spawn::spawn_detached(&exe, &watcher_args, &home.stdio_log()) {
        Ok(watcher) => {
            let mut event = LifecycleEvent::new(EventKind::DetachedSpawn, std::process::id())
                .with("watcher_pid", watcher.child.id())
                .with("waits_for_pid", pid)
                .with("broke_away_from_job", watcher.broke_away);
            if !watcher.broke_away {
                event = event.with("note", "the caller's job object forbids breakaway");
            }
            let _ = LifecycleLog::new(home.lifecycle_log()).append(&event);
            println!(
                "herald will restart after pid {pid} exits (watcher pid {})",
                watcher.child.id()
            );
            ExitCode::Ok
        }
        Err(e) => {
            eprintln!("herald: cannot start the restart watcher: {e}");
            ExitCode::Failure
        }
    }
}

/// Planned stop (if running), then a detached start that waits for readiness.
fn restart_now(home: &Home, timeout: u64) -> ExitCode {
    if let Some(code) = super::install::route(home, herald_service::install::manage::Action::Restart) {
        return code;
    }
    let stop = super::stop::stop(
        home,
        &StopArgs {
            timeout: None,
            via: Via::Auto,
            no_force: false,
        },
    );
    if stop != ExitCode::Ok {
        return stop;
    }
    super::start::start(home, &StartArgs { timeout })
}

fn watch_then_restart(home: &Home, key: &str, timeout: u64) -> ExitCode {
    let log = LifecycleLog::new(home.lifecycle_log());
    let Some(key) = herald_daemon::supervise::monitor::parse_monitor_env(key) else {
        eprintln!("herald: --wait-for takes PID:START_TIME");
        return ExitCode::Usage;
    };
    let exited = herald_service::wait::wait_for_exit(key, MAX_WAIT);
    let event = |outcome: &str, code: ExitCode| {
        LifecycleEvent::new(EventKind::RestartAfterExit, std::process::id())
            .with("waited_for_pid", key.pid)
            .with("outcome", outcome)
            .with("code", code.code())
    };
    if !exited {
        let _ = log.append(&event("gave up: the process did not exit", ExitCode::Failure));
        return ExitCode::Failure;
    }
    let code = restart_now(home, timeout);
    let outcome = if code == ExitCode::Ok {
        "restarted"
    } else {
        "restart failed"
    };
    let _ = log.append(&event(outcome, code));
    code
}
