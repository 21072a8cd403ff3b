//! The operations that go around any service manager: a detached, supervised start, and the stop
//! ladder of `herald-process`. [`crate::start`], [`crate::stop`] and [`crate::restart`] use them when no
//! manager owns the home, and [`crate::route`] hands them to the install executor as its hooks (a
//! gateway running outside the manager is stopped this way; a logon entry's "start now" starts this way).
//!
//! **Invariant:** a start succeeds only when the state record says `running` for the process we started
//! *and* its control channel answers `ping`; if the gateway exits first, the error says so with the last
//! lines of its log — never success before success. A stop returns only once the gateway has exited.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use herald_home::Home;
use herald_home::atomic::read_record;
use herald_home::lifecycle::{EventKind, LifecycleEvent, LifecycleLog};
use herald_home::lock::InstanceLock;
use herald_home::records::{GatewayState, StateRecord};
use herald_process::control::{self, Request};
use herald_process::{StopOptions, StopOutcome, StopVia, stop_gateway};

use crate::error::LifecycleError;
use crate::status::StatusReport;
use crate::target::Target;

/// How long `start` waits for readiness unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of the gateway's log kept when it dies during start-up.
const LOG_TAIL_LINES: usize = 15;
/// How often readiness is checked while starting.
const READY_POLL: Duration = Duration::from_millis(5);

/// A detached gateway that became ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub pid: u32,
    pub elapsed: Duration,
    /// Where its output goes.
    pub log: PathBuf,
    /// Another caller's start won the race for the home; this is its gateway (ours exited).
    pub already_running: bool,
}

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

/// `Some(pid)` when a gateway holds the home's lock (its pid when verified).
pub(crate) fn running(target: &Target) -> Option<Option<u32>> {
    InstanceLock::is_held(&target.home().lock_file())
        .unwrap_or(false)
        .then(|| StatusReport::gather(target.home()).pid)
}

/// A detached, supervised `herald run`, waited for until ready.
pub(crate) fn start_detached(target: &Target, timeout: Duration) -> Result<Started, LifecycleError> {
    let home = target.home();
    let exe = prepare_detached_spawn(target)?;
    let log = home.stdio_log();
    let log_start = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let spawn_args: Vec<OsString> = vec!["--home".into(), home.root().into(), "run".into()];
    let started = Instant::now();
    let mut detached =
        herald_process::spawn::spawn_detached(&exe, &spawn_args, &log).map_err(LifecycleError::Spawn)?;
    let pid = detached.child.id();
    log_detached_spawn(target, "gateway_pid", pid, detached.broke_away, &[]);

    let deadline = started + timeout;
    loop {
        if let Ok(Some(status)) = detached.child.try_wait() {
            // Another start won the race for the home: its gateway is the caller's wish too.
            if let Some(other) = started_elsewhere(target, pid, deadline) {
                return Ok(other);
            }
            let how = status
                .code()
                .map_or_else(|| "a signal".to_owned(), |c| format!("code {c}"));
            return Err(LifecycleError::ExitedDuringStartup {
                pid,
                how,
                code: status.code(),
                log_tail: log_tail(&log, log_start),
            });
        }
        if serves(home, pid) {
            return Ok(Started {
                pid,
                elapsed: started.elapsed(),
                log,
                already_running: false,
            });
        }
        if Instant::now() >= deadline {
            return Err(LifecycleError::NotReady {
                pid,
                secs: timeout.as_secs(),
                log_tail: log_tail(&log, log_start),
            });
        }
        std::thread::sleep(READY_POLL);
    }
}

/// Whether the gateway `pid` (the pid its records name) serves: its state record says so and it answers
/// on the control channel — or, when the record does not say so (it may not be writable: a full disk),
/// the gateway says so itself over the control channel. A gateway still starting answers only once it
/// runs, so asking costs no more than the wait.
fn serves(home: &Home, pid: u32) -> bool {
    let timeout = Duration::from_secs(2);
    let recorded = read_record::<StateRecord>(&home.state_record())
        .present()
        .is_some_and(|s| s.pid == pid && s.state == GatewayState::Running);
    if recorded {
        return control::call(home, Request::Ping, timeout).is_ok_and(|r| r.ok);
    }
    control::call(home, Request::Status, timeout)
        .is_ok_and(|r| r.ok && r.gateway_pid == Some(pid) && r.state == Some(GatewayState::Running))
}

/// The gateway another caller is starting on this home, once it serves (within `deadline`).
pub(crate) fn ready_elsewhere(target: &Target, deadline: Instant) -> Option<Started> {
    started_elsewhere(target, 0, deadline)
}

/// When our gateway has exited during start-up: a gateway another caller started that holds the home now,
/// once it is ready (within `deadline`). `None` when no other gateway holds the home.
fn started_elsewhere(target: &Target, ours: u32, deadline: Instant) -> Option<Started> {
    let home = target.home();
    let began = Instant::now();
    loop {
        if !InstanceLock::is_held(&home.lock_file()).unwrap_or(false) {
            return None;
        }
        let state = read_record::<StateRecord>(&home.state_record()).present();
        if let Some(state) = state.filter(|s| s.pid != ours && s.state == GatewayState::Running)
            && control::call(home, Request::Ping, Duration::from_secs(2)).is_ok_and(|r| r.ok)
        {
            return Some(Started {
                pid: state.pid,
                elapsed: began.elapsed(),
                log: home.stdio_log(),
                already_running: true,
            });
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(READY_POLL);
    }
}

/// Before a detached spawn (`start`, `restart --after-exit`): the home must exist (the child logs into
/// it) and we must know our own executable.
pub(crate) fn prepare_detached_spawn(target: &Target) -> Result<PathBuf, LifecycleError> {
    target.home().ensure()?;
    target.executable()
}

/// Records a detached spawn (`role_key` names the spawned process's role) in the lifecycle log.
pub(crate) fn log_detached_spawn(
    target: &Target,
    role_key: &str,
    pid: u32,
    broke_away: bool,
    extra: &[(&str, u32)],
) {
    let mut event = LifecycleEvent::new(EventKind::DetachedSpawn, std::process::id()).with(role_key, pid);
    for (key, value) in extra {
        event = event.with(key, *value);
    }
    // Job objects exist only on Windows: elsewhere the field would only say something about nothing.
    if cfg!(windows) {
        event = event.with("broke_away_from_job", broke_away);
        if !broke_away {
            event = event.with(
                "note",
                "the caller's job object forbids breakaway; the process started inside it",
            );
        }
    }
    let _ = LifecycleLog::new(target.home().lifecycle_log()).append(&event);
}

/// The last lines the gateway wrote to its log since `from` (lossy for non-UTF-8 output), indented.
pub(crate) fn log_tail(log: &Path, from: u64) -> String {
    let bytes = std::fs::read(log).unwrap_or_default();
    let fresh = bytes.get(usize::try_from(from).unwrap_or(0)..).unwrap_or(&[]);
    let text = String::from_utf8_lossy(fresh);
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    tail.iter().map(|l| format!("  | {l}\n")).collect()
}

/// The ladder, never through a manager (a gateway running outside it, `restart`'s own stop).
pub(crate) fn stop_direct(target: &Target, request: &StopRequest) -> Result<StopOutcome, LifecycleError> {
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
