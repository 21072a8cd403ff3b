//! The lifecycle log: one JSON object per line, `{ts, event, pid, ...}`, appended by every process that
//! changes a gateway's life (the gateway itself, and a CLI that has to force-kill one).
//!
//! **Invariant:** appending never rewrites history. Each event is written with one `write` on a file
//! opened for append, so concurrent writers interleave whole lines; the file is rotated by size (renamed,
//! never truncated) so the log cannot fill a disk. Readers skip lines they cannot parse and say so.

use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Default size at which the log is rotated.
pub const DEFAULT_MAX_BYTES: u64 = 1024 * 1024;
/// Rotated generations kept (`lifecycle.jsonl.1` … `.N`).
pub const DEFAULT_KEEP: u32 = 3;

/// The events a gateway's life is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Start,
    Ready,
    StopRequested,
    DrainBegin,
    DrainEnd,
    Exit,
    Panic,
    StartupFailed,
    /// A stop marker that was not for this process (or expired) was found and removed.
    MarkerIgnored,
    /// A stop request that was absorbed (a spurious console event on a detached process).
    SignalIgnored,
    /// `--replace` or `stop` had to force-kill a gateway that did not stop in time.
    ForceKill,
    /// `--replace` took over from a running instance.
    Replaced,
    /// The monitor started a worker.
    WorkerSpawned,
    /// The monitor could not start a worker (the spawn itself failed) and will try again: the error, the
    /// attempt, the delay.
    WorkerSpawnFailed,
    /// A supervised worker exited (code or signal, how long it ran, whether the monitor asked it to).
    WorkerExit,
    /// The monitor will start a new worker after a delay.
    RestartScheduled,
    /// The crash-loop breaker tripped; carries the last exit and the worker's last stderr lines.
    CrashLoop,
    /// `herald start` launched a detached gateway (and whether it broke away from the caller's job).
    DetachedSpawn,
    /// `herald restart --after-exit`: the awaited process exited and the gateway was restarted (or not).
    RestartAfterExit,
    /// Turns left unfinished by an earlier process were resumed (or closed after too many resumes).
    TurnsResumed,
    /// The session journal needed attention at start: a corrupt file moved aside, a schema migrated.
    Journal,
    /// The monitor ended processes a dead worker left behind (agent process trees), before restarting.
    OrphansEnded,
    /// The instance lock file was deleted or replaced under the running gateway (and locked again).
    LockReplaced,
    /// `herald.toml` and the secrets were read again (SIGHUP, `herald reload`): what was applied, what
    /// needs a restart, or why nothing was.
    Reload,
    /// One chat adapter was restarted inside the running gateway (`herald restart --adapter`).
    AdapterRestart,
    /// The monitor's watchdog found the worker alive but deaf (no beat from its event loop for the
    /// configured limit): what it knew, before it killed the worker to replace it.
    Wedged,
    /// A worker's beat came late (more than 1.5 intervals apart) but within the limit; at most one a
    /// minute, with the largest gap since the last one.
    WatchdogLate,
    /// `herald upgrade` refused a candidate before touching anything (the reasons).
    UpgradeRefused,
    /// `herald upgrade` began: the versions, the candidate, the executable it replaces.
    UpgradeBegin,
    /// The candidate was put in place of the executable (the previous one kept beside it).
    UpgradeSwap,
    /// The new gateway passed the health gate: the upgrade is done.
    UpgradeHealthy,
    /// The new gateway failed the gate (or the upgrade was rolled back by hand): the previous
    /// executable, and the data the new one may have changed, were put back — the outcome and why.
    UpgradeRollback,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Start => "start",
            EventKind::Ready => "ready",
            EventKind::StopRequested => "stop_requested",
            EventKind::DrainBegin => "drain_begin",
            EventKind::DrainEnd => "drain_end",
            EventKind::Exit => "exit",
            EventKind::Panic => "panic",
            EventKind::StartupFailed => "startup_failed",
            EventKind::MarkerIgnored => "marker_ignored",
            EventKind::SignalIgnored => "signal_ignored",
            EventKind::ForceKill => "force_kill",
            EventKind::Replaced => "replaced",
            EventKind::WorkerSpawned => "worker_spawned",
            EventKind::WorkerSpawnFailed => "worker_spawn_failed",
            EventKind::WorkerExit => "worker_exit",
            EventKind::RestartScheduled => "restart_scheduled",
            EventKind::CrashLoop => "crash_loop",
            EventKind::DetachedSpawn => "detached_spawn",
            EventKind::RestartAfterExit => "restart_after_exit",
            EventKind::TurnsResumed => "turns_resumed",
            EventKind::Journal => "journal",
            EventKind::OrphansEnded => "orphans_ended",
            EventKind::LockReplaced => "lock_replaced",
            EventKind::Reload => "reload",
            EventKind::AdapterRestart => "adapter_restart",
            EventKind::Wedged => "wedged",
            EventKind::WatchdogLate => "watchdog_late",
            EventKind::UpgradeRefused => "upgrade_refused",
            EventKind::UpgradeBegin => "upgrade_begin",
            EventKind::UpgradeSwap => "upgrade_swap",
            EventKind::UpgradeHealthy => "upgrade_healthy",
            EventKind::UpgradeRollback => "upgrade_rollback",
        }
    }
}

/// One line of the lifecycle log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LifecycleEvent {
    pub ts: String,
    pub event: String,
    pub pid: u32,
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

impl LifecycleEvent {
    /// An event stamped now, for process `pid`.
    pub fn new(kind: EventKind, pid: u32) -> LifecycleEvent {
        LifecycleEvent {
            ts: crate::time::rfc3339_ms(crate::time::now_ms()),
            event: kind.as_str().to_owned(),
            pid,
            fields: Map::new(),
        }
    }

    /// Adds a field. Reserved names (`ts`, `event`, `pid`) are prefixed rather than overwritten.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> LifecycleEvent {
        let key = match key {
            "ts" | "event" | "pid" => format!("detail_{key}"),
            other => other.to_owned(),
        };
        self.fields.insert(key, value.into());
        self
    }

    pub fn field(&self, key: &str) -> Option<&Value> {
        self.fields.get(key)
    }
}

/// A line of the log that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub line: usize,
    pub reason: String,
}

/// Appender with size-based rotation.
#[derive(Debug, Clone)]
pub struct LifecycleLog {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
}

impl LifecycleLog {
    pub fn new(path: PathBuf) -> LifecycleLog {
        LifecycleLog::with_limits(path, DEFAULT_MAX_BYTES, DEFAULT_KEEP)
    }

    pub fn with_limits(path: PathBuf, max_bytes: u64, keep: u32) -> LifecycleLog {
        LifecycleLog {
            path,
            max_bytes: max_bytes.max(1),
            keep: keep.max(1),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event as one line, rotating first if the file would grow past the limit.
    pub fn append(&self, event: &LifecycleEvent) -> io::Result<()> {
        let mut line = serde_json::to_vec(event).map_err(io::Error::other)?;
        line.push(b'\n');
        if let Ok(meta) = fs::metadata(&self.path)
            && meta.len() > 0
            && meta.len() + line.len() as u64 > self.max_bytes
        {
            self.rotate()?;
        }
        let mut options = OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        crate::ownership::no_follow(&mut options);
        let mut file = options.open(&self.path)?;
        file.write_all(&line)
    }

    /// Path of rotated generation `n` (1 = newest).
    pub fn rotated_path(&self, n: u32) -> PathBuf {
        let mut name = self.path.as_os_str().to_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&self) -> io::Result<()> {
        crate::atomic::remove_if_exists(&self.rotated_path(self.keep))?;
        for n in (1..self.keep).rev() {
            let from = self.rotated_path(n);
            if from.exists() {
                fs::rename(&from, self.rotated_path(n + 1))?;
            }
        }
        match fs::rename(&self.path, self.rotated_path(1)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Reads the current file (not the rotated ones): every event, and every line that is not one.
    pub fn read(&self) -> io::Result<(Vec<LifecycleEvent>, Vec<BadLine>)> {
        read_events(&self.path)
    }
}

/// Reads a lifecycle log file tolerantly. A missing file is an empty log.
pub fn read_events(path: &Path) -> io::Result<(Vec<LifecycleEvent>, Vec<BadLine>)> {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(e),
    };
    Ok(parse_events(io::BufReader::new(file)))
}

/// Parses log lines (separate from I/O for fuzzing). Non-UTF-8 and non-JSON lines become [`BadLine`]s.
pub fn parse_events(reader: impl BufRead) -> (Vec<LifecycleEvent>, Vec<BadLine>) {
    let mut events = Vec::new();
    let mut bad = Vec::new();
    for (index, line) in reader.split(b'\n').enumerate() {
        let line_no = index + 1;
        let bytes = match line {
            Ok(b) => b,
            Err(e) => {
                bad.push(BadLine {
                    line: line_no,
                    reason: e.to_string(),
                });
                break;
            }
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<LifecycleEvent>(&bytes) {
            Ok(event) => events.push(event),
            Err(e) => bad.push(BadLine {
                line: line_no,
                reason: e.to_string(),
            }),
        }
    }
    (events, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_with_fields() {
        let dir = tempfile::tempdir().unwrap();
        let log = LifecycleLog::new(dir.path().join("l.jsonl"));
        log.append(&LifecycleEvent::new(EventKind::Start, 42).with("version", "1.0"))
            .unwrap();
        log.append(
            &LifecycleEvent::new(EventKind::Exit, 42)
                .with("code", 0)
                .with("pid", 7),
        )
        .unwrap();
        let (events, bad) = log.read().unwrap();
        assert!(bad.is_empty());
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event, "start");
        assert_eq!(events[1].field("code"), Some(&Value::from(0)));
        assert_eq!(
            events[1].pid, 42,
            "a field named pid must not overwrite the event's pid"
        );
        assert_eq!(events[1].field("detail_pid"), Some(&Value::from(7)));
    }

    #[test]
    fn garbage_lines_are_reported_not_fatal() {
        let input = b"{\"ts\":\"t\",\"event\":\"start\",\"pid\":1}\nnot json\n\xff\xfe\n\n{\"ts\":\"t\",\"event\":\"exit\",\"pid\":1,\"code\":0}\n{\"ts\":";
        let (events, bad) = parse_events(&input[..]);
        assert_eq!(events.len(), 2);
        assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), vec![2, 3, 6]);
    }

    #[test]
    fn rotation_keeps_a_bounded_number_of_generations() {
        let dir = tempfile::tempdir().unwrap();
        let log = LifecycleLog::with_limits(dir.path().join("l.jsonl"), 200, 2);
        for i in 0..50 {
            log.append(&LifecycleEvent::new(EventKind::Ready, i)).unwrap();
        }
        assert!(fs::metadata(log.path()).unwrap().len() <= 200);
        assert!(log.rotated_path(1).exists());
        assert!(log.rotated_path(2).exists());
        assert!(!log.rotated_path(3).exists());
        let (events, bad) = log.read().unwrap();
        assert!(bad.is_empty());
        assert_eq!(events.last().unwrap().pid, 49);
    }
}
