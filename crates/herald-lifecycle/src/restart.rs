//! `restart [--after-exit PID]`.
//!
//! A restart is a planned stop (drain) followed by a fresh detached start, so an updated executable is the
//! one that runs afterwards (a monitor re-spawning its worker would run the old image). With
//! `--after-exit`, a detached watcher — outside the caller's job object, so a closing GUI or updater does
//! not take it along — waits for that exact process (pid and start time) to exit first.

use std::ffi::OsString;
use std::time::Duration;

use herald_home::lifecycle::{EventKind, LifecycleEvent, LifecycleLog};
use herald_home::records::ProcessKey;
use herald_install::manage::Action;
use herald_process::{ProcessProbe, StopOutcome};

use crate::direct::{self, StopRequest};
use crate::error::LifecycleError;
use crate::route::{Routed, route};
use crate::start::StartOutcome;
use crate::target::Target;

/// How long an adapter restart may take: its tasks get a couple of seconds to stop, then it starts anew.
const ADAPTER_RESTART_TIMEOUT: Duration = Duration::from_secs(30);

/// `restart --adapter NAME`: one chat adapter of the running gateway stops and starts again (new
/// connections), alone — the process, its HTTP API and the other adapters keep serving. Returns the pid
/// of the process that did it.
pub fn restart_adapter(target: &Target, adapter: &str) -> Result<u32, LifecycleError> {
    let home = target.home();
    if !herald_home::lock::InstanceLock::is_held(&home.lock_file()).unwrap_or(false) {
        return Err(LifecycleError::NotRunning);
    }
    let request = herald_process::control::Request::RestartAdapter {
        adapter: adapter.to_owned(),
    };
    match herald_process::control::call(home, request, ADAPTER_RESTART_TIMEOUT) {
        Ok(reply) if reply.ok => Ok(reply.pid),
        Ok(reply) => Err(LifecycleError::AdapterRefused(
            reply.error.unwrap_or_else(|| "the gateway refused".into()),
        )),
        Err(e) => Err(LifecycleError::Control(e.to_string())),
    }
}

/// The longest a watcher waits for the awaited process.
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// What `restart` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartOutcome {
    /// The service manager restarted it.
    Routed(Routed),
    /// Stopped (or found not running), then started.
    Direct {
        stopped: StopOutcome,
        started: StartOutcome,
    },
}

/// What `restart --after-exit PID` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterExit {
    /// A detached watcher will restart the gateway once `pid` has exited.
    Watching { pid: u32, watcher_pid: u32 },
    /// `pid` was not running: restarted now.
    RestartedNow(RestartOutcome),
}

/// Planned stop (if running), then a detached start that waits for readiness.
pub fn restart(target: &Target, timeout: Duration) -> Result<RestartOutcome, LifecycleError> {
    if let Some(routed) = route(target, Action::Restart)? {
        return Ok(RestartOutcome::Routed(routed));
    }
    let stopped = direct::stop_direct(target, &StopRequest::planned("herald restart"))?;
    // Another starter may have won the home in between: its gateway is the caller's wish too.
    let started = match direct::running(target) {
        Some(pid) => StartOutcome::AlreadyRunning { pid },
        None => StartOutcome::Started(direct::start_detached(target, timeout)?),
    };
    Ok(RestartOutcome::Direct { stopped, started })
}

/// Restarts once `pid` has exited, through a detached watcher (`restart --wait-for`), or now when `pid`
/// is not running.
pub fn restart_after_exit(target: &Target, pid: u32, timeout: Duration) -> Result<AfterExit, LifecycleError> {
    let key = match herald_process::probe(pid) {
        ProcessProbe::Alive(info) => info.key,
        _ => return restart(target, timeout).map(AfterExit::RestartedNow),
    };
    let exe = direct::prepare_detached_spawn(target)?;
    let home = target.home();
    let watcher_args: Vec<OsString> = vec![
        "--home".into(),
        home.root().into(),
        "restart".into(),
        "--wait-for".into(),
        format!("{}:{}", key.pid, key.start_time).into(),
        "--timeout".into(),
        timeout.as_secs().to_string().into(),
    ];
    let watcher = herald_process::spawn::spawn_detached(&exe, &watcher_args, &home.stdio_log())
        .map_err(LifecycleError::SpawnWatcher)?;
    let watcher_pid = watcher.child.id();
    direct::log_detached_spawn(
        target,
        "watcher_pid",
        watcher_pid,
        watcher.broke_away,
        &[("waits_for_pid", pid)],
    );
    Ok(AfterExit::Watching { pid, watcher_pid })
}

/// The watcher's side: waits for `key` to exit, restarts, and records the outcome in the lifecycle log
/// (it has no terminal to report to).
pub fn watch_then_restart(
    target: &Target,
    key: ProcessKey,
    timeout: Duration,
) -> Result<RestartOutcome, LifecycleError> {
    let log = LifecycleLog::new(target.home().lifecycle_log());
    let event = |outcome: &str, code: herald_home::ExitCode| {
        LifecycleEvent::new(EventKind::RestartAfterExit, std::process::id())
            .with("waited_for_pid", key.pid)
            .with("outcome", outcome)
            .with("code", code.code())
    };
    if !herald_process::wait::wait_for_exit(key, MAX_WAIT) {
        let error = LifecycleError::WaitedInVain { pid: key.pid };
        let _ = log.append(&event("gave up: the process did not exit", error.exit_code()));
        return Err(error);
    }
    let result = restart(target, timeout);
    let _ = match &result {
        Ok(_) => log.append(&event("restarted", herald_home::ExitCode::Ok)),
        Err(e) => log.append(&event("restart failed", e.exit_code())),
    };
    result
}
