//! Stopping a running gateway from another process: `herald stop`, and `herald run --replace`.
//!
//! The ladder, gentlest first: the control channel; a planned-stop marker; SIGTERM (Unix); and, only if
//! the recorded process still is the recorded process, a force kill. Each step waits for the instance
//! lock to be released — the one witness that the gateway has really exited — so `stop` never returns
//! while the old process still holds the home.
//!
//! **Invariant:** nothing is ever killed on the word of a PID record alone. The pid must still carry the
//! recorded start time and command line at the moment of the kill.

use std::time::{Duration, Instant};

use crate::{Identity, TerminateError};
use herald_home::Home;
use herald_home::atomic::{RecordRead, read_record, remove_if_exists, write_record};
use herald_home::lifecycle::{EventKind, LifecycleEvent, LifecycleLog};
use herald_home::lock::InstanceLock;
use herald_home::records::{ExitRecord, GatewayState, MonitorRecord, PidRecord, StateRecord, StopMarker};
use herald_home::time::now_ms;

use crate::control::{self, Request};

/// How long to wait for the control channel to accept and answer a stop request.
const CHANNEL_TIMEOUT: Duration = Duration::from_secs(2);
/// In the automatic ladder, how long a marker (or SIGTERM) gets to show an effect before escalating.
const STEP_GRACE: Duration = Duration::from_secs(3);
/// How long to wait for the lock after a force kill.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How long a stop waits for a gateway that holds the lock but has not written its PID record yet.
const STARTING_GRACE: Duration = Duration::from_secs(3);
const STARTING_POLL: Duration = Duration::from_millis(10);
/// How long the process may take to disappear once it has released the lock.
const EXIT_AFTER_RELEASE: Duration = Duration::from_secs(2);

/// Which path to use. `Auto` walks the whole ladder; the others use one path only (and still force-kill
/// after the timeout if `force` is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopVia {
    Auto,
    Channel,
    Marker,
    Signal,
}

#[derive(Debug, Clone)]
pub struct StopOptions {
    /// Total time to wait for a planned stop (the drain) before force-killing.
    pub timeout: Duration,
    pub via: StopVia,
    pub restart: bool,
    /// Force-kill a verified gateway that has not stopped when the timeout ends.
    pub force: bool,
    /// Who is asking, for the marker and the log (`herald stop`, `herald run --replace`).
    pub requested_by: String,
}

/// The path that worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopPath {
    Channel,
    Marker,
    Signal,
    ForceKill,
}

impl StopPath {
    pub fn as_str(self) -> &'static str {
        match self {
            StopPath::Channel => "control channel",
            StopPath::Marker => "stop marker",
            StopPath::Signal => "SIGTERM",
            StopPath::ForceKill => "force kill",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopOutcome {
    /// No gateway held the lock. `stale` describes leftover records, if any.
    NotRunning { stale: Option<String> },
    Stopped {
        pid: Option<u32>,
        path: StopPath,
        elapsed: Duration,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error(
        "the home is locked, but its PID record does not name a live herald ({0}); the control channel did not answer either, so nothing was killed"
    )]
    Unverified(String),
    #[error("the gateway (pid {pid}) did not stop within {waited:?} via {tried}")]
    Timeout {
        pid: u32,
        waited: Duration,
        tried: String,
    },
    #[error("{0}")]
    Terminate(#[from] TerminateError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The gateway a stop is aimed at, as far as it can be verified.
struct Target {
    record: Option<PidRecord>,
    identity: Option<Identity>,
}

impl Target {
    fn read(home: &Home) -> Target {
        let record = read_record::<PidRecord>(&home.pid_record()).present();
        let identity = record
            .as_ref()
            .map(|r| crate::verify(r.key(), &r.argv, r.exe.as_deref(), &crate::probe(r.pid)));
        Target { record, identity }
    }

    fn verified(&self) -> Option<&PidRecord> {
        match (&self.record, &self.identity) {
            (Some(r), Some(i)) if i.is_verified() => Some(r),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match (&self.record, &self.identity) {
            (None, _) => "no usable PID record".into(),
            (Some(r), Some(i)) => format!("pid {}: {}", r.pid, i.describe()),
            (Some(r), None) => format!("pid {}", r.pid),
        }
    }
}

/// Stops a verified gateway whose lock file is gone: the control channel, then the verified SIGTERM/force
/// ladder, each step waiting for the process itself to exit (there is no lock to wait on).
fn stop_unlocked(
    home: &Home,
    options: &StopOptions,
    target: &Target,
    key: herald_home::records::ProcessKey,
    start: Instant,
) -> Result<StopOutcome, StopError> {
    let deadline = start + options.timeout;
    let remaining = || deadline.saturating_duration_since(Instant::now());
    let stopped = |path| {
        Ok(StopOutcome::Stopped {
            pid: Some(key.pid),
            path,
            elapsed: start.elapsed(),
        })
    };
    let request = Request::Stop {
        restart: options.restart,
    };
    if matches!(options.via, StopVia::Auto | StopVia::Channel)
        && control::call(home, request, CHANNEL_TIMEOUT.min(options.timeout)).is_ok_and(|r| r.ok)
        && crate::wait::wait_for_exit(key, remaining())
    {
        return stopped(StopPath::Channel);
    }
    if let Some(record) = target.verified()
        && matches!(options.via, StopVia::Auto | StopVia::Signal)
        && crate::request_terminate_verified(record.key(), &record.argv, record.exe.as_deref()).is_ok()
        && crate::wait::wait_for_exit(key, remaining())
    {
        return stopped(StopPath::Signal);
    }
    force_or_timeout(home, target, options, start, &["control channel", "SIGTERM"])
}

/// The gateway holding the lock, once its PID record names it — a gateway that has just taken the lock
/// writes its record a moment later, and a stop racing its start must wait for that, not give up — or
/// whatever can be read when `grace` runs out. `None` when the lock is released meanwhile.
fn addressable(home: &Home, grace: Duration) -> Option<Target> {
    let until = Instant::now() + grace;
    loop {
        let target = Target::read(home);
        if target.verified().is_some() || Instant::now() >= until {
            return Some(target);
        }
        if !InstanceLock::is_held(&home.lock_file()).unwrap_or(true) {
            return None;
        }
        std::thread::sleep(STARTING_POLL);
    }
}

/// Stops the gateway on `home` (blocking).
pub fn stop_gateway(home: &Home, options: &StopOptions) -> Result<StopOutcome, StopError> {
    let start = Instant::now();
    let deadline = start + options.timeout;
    let remaining = || deadline.saturating_duration_since(Instant::now());
    let lock = home.lock_file();

    if !InstanceLock::is_held(&lock)? {
        // The lock file may have been deleted under a gateway that still runs: a verified PID record is
        // then the only trace of it, and it is stopped by the same ladder, waiting for the process.
        let unlocked = Target::read(home);
        return match unlocked.verified().map(PidRecord::key) {
            Some(key) => stop_unlocked(home, options, &unlocked, key, start),
            None => Ok(StopOutcome::NotRunning {
                stale: stale_records(home),
            }),
        };
    }
    let target = match addressable(home, STARTING_GRACE.min(options.timeout)) {
        Some(target) => target,
        // The lock went away while we waited: a gateway that was starting has stopped by itself.
        None => {
            return Ok(StopOutcome::NotRunning {
                stale: stale_records(home),
            });
        }
    };
    let pid = target.verified().map(|r| r.pid);
    let key = target.verified().map(PidRecord::key);
    // The lock is released just before the process ends; a pid-watching service manager should not see
    // the process after `stop` has said it is gone, so wait for the process itself too (briefly).
    let done = |path| {
        if let Some(key) = key {
            crate::wait::wait_for_exit(key, EXIT_AFTER_RELEASE);
        }
        Ok(StopOutcome::Stopped {
            pid,
            path,
            elapsed: start.elapsed(),
        })
    };
    let mut tried = Vec::new();

    // 1. The control channel: answered by the gateway's own loop, so it also drains.
    if matches!(options.via, StopVia::Auto | StopVia::Channel) {
        tried.push("control channel");
        let request = Request::Stop {
            restart: options.restart,
        };
        match control::call(home, request, CHANNEL_TIMEOUT.min(options.timeout)) {
            Ok(reply) if reply.ok => {
                if InstanceLock::wait_released(&lock, remaining())? {
                    return done(StopPath::Channel);
                }
                return force_or_timeout(home, &target, options, start, &tried);
            }
            Ok(reply) => tracing::debug!("control channel refused the stop: {:?}", reply.error),
            Err(e) => tracing::debug!("control channel unavailable: {e}"),
        }
    }

    let Some(record) = target.verified() else {
        if !InstanceLock::is_held(&lock)? {
            return done(StopPath::Channel);
        }
        return Err(StopError::Unverified(target.describe()));
    };

    // 2. The planned-stop marker, for a gateway whose channel is unreachable.
    if matches!(options.via, StopVia::Auto | StopVia::Marker) {
        tried.push("stop marker");
        let marker = StopMarker {
            version: 1,
            target: record.key(),
            expires_at_ms: now_ms() + u64::try_from(options.timeout.as_millis()).unwrap_or(u64::MAX),
            requested_by: options.requested_by.clone(),
            restart: options.restart,
        };
        write_record(&home.stop_marker(), &marker).map_err(|e| std::io::Error::other(e.to_string()))?;
        let wait = if options.via == StopVia::Auto {
            STEP_GRACE.min(remaining())
        } else {
            remaining()
        };
        if InstanceLock::wait_released(&lock, wait)? {
            return done(StopPath::Marker);
        }
        // Not obeyed in time: take it back so it cannot stop anything later by surprise.
        let _ = remove_if_exists(&home.stop_marker());
    }

    // 3. SIGTERM, where the OS has a graceful signal.
    if matches!(options.via, StopVia::Auto | StopVia::Signal) {
        match crate::request_terminate_verified(record.key(), &record.argv, record.exe.as_deref()) {
            Ok(()) => {
                tried.push("SIGTERM");
                if InstanceLock::wait_released(&lock, remaining())? {
                    return done(StopPath::Signal);
                }
            }
            Err(TerminateError::Unsupported) if options.via == StopVia::Auto => {}
            Err(e) => return Err(e.into()),
        }
    }

    force_or_timeout(home, &target, options, start, &tried)
}

fn force_or_timeout(
    home: &Home,
    target: &Target,
    options: &StopOptions,
    start: Instant,
    tried: &[&str],
) -> Result<StopOutcome, StopError> {
    let lock = home.lock_file();
    let tried = tried.join(", ");
    let Some(record) = target.verified() else {
        if !InstanceLock::is_held(&lock)? {
            return Ok(StopOutcome::Stopped {
                pid: None,
                path: StopPath::Channel,
                elapsed: start.elapsed(),
            });
        }
        return Err(StopError::Unverified(target.describe()));
    };
    if !options.force {
        return Err(StopError::Timeout {
            pid: record.pid,
            waited: start.elapsed(),
            tried,
        });
    }
    // A supervised gateway: the wedged one is usually the worker. Kill it first (verified), then the
    // monitor, so the monitor cannot start a replacement in between.
    if let Some(worker) = read_record::<MonitorRecord>(&home.monitor_record())
        .present()
        .filter(|m| m.key() == record.key())
        .and_then(|m| m.worker)
        && let Err(e) = crate::force_kill_verified(worker.key(), &worker.argv, worker.exe.as_deref())
    {
        tracing::debug!("worker not killed: {e}");
    }
    crate::force_kill_verified(record.key(), &record.argv, record.exe.as_deref())?;
    let log = LifecycleLog::new(home.lifecycle_log());
    let _ = log.append(
        &LifecycleEvent::new(EventKind::ForceKill, std::process::id())
            .with("target_pid", record.pid)
            .with("requested_by", options.requested_by.as_str())
            .with(
                "after_ms",
                u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
            )
            .with("tried", tried.as_str()),
    );
    if !InstanceLock::wait_released(&lock, KILL_WAIT)? {
        return Err(StopError::Timeout {
            pid: record.pid,
            waited: start.elapsed(),
            tried: format!("{tried}, force kill"),
        });
    }
    record_forced_exit(home, record, &options.requested_by);
    Ok(StopOutcome::Stopped {
        pid: Some(record.pid),
        path: StopPath::ForceKill,
        elapsed: start.elapsed(),
    })
}

/// After a force kill the dead gateway could not write its own exit. Record it, holding the lock so a
/// gateway starting at this moment cannot have its fresh records overwritten.
fn record_forced_exit(home: &Home, record: &PidRecord, requested_by: &str) {
    let Ok(_lock) = InstanceLock::try_acquire(&home.lock_file()) else {
        return;
    };
    if let RecordRead::Present(mut state) = read_record::<StateRecord>(&home.state_record())
        && state.pid == record.pid
    {
        state.state = GatewayState::Stopped;
        state.updated_at_ms = now_ms();
        state.in_flight = 0;
        state.queued = 0;
        state.last_exit = Some(ExitRecord {
            code: herald_home::ExitCode::Failure.code(),
            reason: format!("force-killed by {requested_by} after the planned stop timed out"),
            at_ms: now_ms(),
        });
        let _ = write_record(&home.state_record(), &state);
    }
    let _ = remove_if_exists(&home.pid_record());
}

/// Describes records left by a gateway that did not exit cleanly, when no gateway holds the lock.
pub fn stale_records(home: &Home) -> Option<String> {
    match read_record::<PidRecord>(&home.pid_record()) {
        RecordRead::Present(record) => Some(format!(
            "a stale PID record names pid {} (that gateway exited without cleaning up)",
            record.pid
        )),
        RecordRead::Invalid { reason } => Some(format!("the PID record is unusable: {reason}")),
        RecordRead::Missing => None,
    }
}
