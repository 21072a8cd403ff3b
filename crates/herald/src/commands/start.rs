//! `herald start`: a detached, supervised gateway, reported only once it is ready.
//!
//! Success means: the state record says `running` for the process we started, and its control channel
//! answers `ping`. If the gateway exits first, say so with the last lines of its log — never print success
//! before success.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use herald_daemon::control::{self, Request};
use herald_home::atomic::read_record;
use herald_home::lifecycle::{EventKind, LifecycleEvent, LifecycleLog};
use herald_home::lock::InstanceLock;
use herald_home::records::{GatewayState, StateRecord};
use herald_home::{ExitCode, Home};
use herald_service::status::StatusReport;

use crate::cli::StartArgs;

/// Lines of the gateway's log shown when it dies during start-up.
const LOG_TAIL_LINES: usize = 15;

pub fn start(home: &Home, args: &StartArgs) -> ExitCode {
    if InstanceLock::is_held(&home.lock_file()).unwrap_or(false) {
        let report = StatusReport::gather(home);
        let pid = report
            .pid
            .map_or_else(|| "pid unknown".to_owned(), |p| format!("pid {p}"));
        println!("herald is already running ({pid})");
        return ExitCode::Ok;
    }
    if let Some(code) = super::install::route(home, herald_service::install::manage::Action::Start) {
        return code;
    }
    let Some(exe) = super::prepare_detached_spawn(home) else {
        return ExitCode::Failure;
    };
    let log = home.stdio_log();
    let log_start = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let spawn_args: Vec<OsString> = vec!["--home".into(), home.root().into(), "run".into()];
    let started = Instant::now();
    let mut detached = match herald_service::spawn::spawn_detached(&exe, &spawn_args, &log) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("herald: cannot start the gateway: {e}");
            return ExitCode::Failure;
        }
    };
    let pid = detached.child.id();
    let mut event = LifecycleEvent::new(EventKind::DetachedSpawn, std::process::id())
        .with("gateway_pid", pid)
        .with("broke_away_from_job", detached.broke_away);
    if !detached.broke_away {
        event = event.with(
            "note",
            "the caller's job object forbids breakaway; the gateway started inside it",
        );
    }
    let _ = LifecycleLog::new(home.lifecycle_log()).append(&event);

    let deadline = started + Duration::from_secs(args.timeout);
    loop {
        if let Ok(Some(status)) = detached.child.try_wait() {
            let code = status
                .code()
                .map_or_else(|| "a signal".to_owned(), |c| format!("code {c}"));
            eprintln!("herald: the gateway (pid {pid}) exited during start-up with {code}");
            eprint!("{}", log_tail(&log, log_start));
            return match status.code() {
                Some(78) => ExitCode::Config,
                _ => ExitCode::Failure,
            };
        }
        let ready = read_record::<StateRecord>(&home.state_record())
            .present()
            .is_some_and(|s| s.pid == pid && s.state == GatewayState::Running);
        if ready && control::call(home, Request::Ping, Duration::from_secs(2)).is_ok_and(|r| r.ok) {
            println!(
                "herald started (pid {pid}) in {:.0} ms; logs: {}",
                started.elapsed().as_secs_f64() * 1000.0,
                log.display()
            );
            return ExitCode::Ok;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "herald: the gateway (pid {pid}) is not ready after {}s; it keeps starting in the background",
                args.timeout
            );
            eprint!("{}", log_tail(&log, log_start));
            return ExitCode::Failure;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The last lines the gateway wrote to its log since `from` (lossy for non-UTF-8 output).
fn log_tail(log: &std::path::Path, from: u64) -> String {
    let bytes = std::fs::read(log).unwrap_or_default();
    let fresh = bytes.get(usize::try_from(from).unwrap_or(0)..).unwrap_or(&[]);
    let text = String::from_utf8_lossy(fresh);
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    tail.iter().map(|l| format!("  | {l}\n")).collect()
}
