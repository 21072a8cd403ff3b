//! The runtime records a gateway leaves in `run/`: who it is (PID record), what it is doing (state record)
//! and, from another process, a request to stop (planned-stop marker).
//!
//! **Invariant:** a record is advice, never the truth on its own. The instance lock says whether a gateway
//! runs; a record's pid only counts when the OS confirms the process start time ([`ProcessKey`]), because
//! pids are recycled. Records are versioned so an older or newer herald reads them as invalid, not as
//! nonsense.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::atomic::Record;

/// A process as the OS knows it: a pid is only meaningful together with the process start time, which a
/// recycled pid cannot share. `start_time` is the OS-reported start in seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProcessKey {
    pub pid: u32,
    pub start_time: u64,
}

impl ProcessKey {
    /// `PID:START_TIME`, the form a process key takes on a command line or in an environment variable
    /// (a worker's `HERALD_MONITOR`, `restart --wait-for`).
    pub fn to_arg(self) -> String {
        format!("{}:{}", self.pid, self.start_time)
    }

    /// Parses [`Self::to_arg`]'s form, strictly.
    pub fn parse(text: &str) -> Option<ProcessKey> {
        let (pid, start_time) = text.split_once(':')?;
        Some(ProcessKey {
            pid: pid.trim().parse().ok()?,
            start_time: start_time.trim().parse().ok()?,
        })
    }
}

impl std::fmt::Display for ProcessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} (started {})", self.pid, self.start_time)
    }
}

/// `run/pid.json`: the identity of the gateway that holds the lock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PidRecord {
    pub version: u32,
    pub pid: u32,
    pub start_time: u64,
    pub argv: Vec<String>,
    pub exe: Option<String>,
    pub home: PathBuf,
    pub herald_version: String,
    pub started_at_ms: u64,
    /// The control channel endpoint (socket path or pipe name) the gateway listens on.
    pub control: String,
}

impl PidRecord {
    pub fn key(&self) -> ProcessKey {
        ProcessKey {
            pid: self.pid,
            start_time: self.start_time,
        }
    }
}

impl Record for PidRecord {
    const VERSION: u32 = 1;
    const KIND: &'static str = "PID record";
}

/// The gateway's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatewayState {
    Starting,
    Running,
    Draining,
    Stopped,
    StartupFailed,
    /// The supervisor gave up: the worker kept failing (see the lifecycle log's `crash_loop` event).
    CrashLooping,
}

impl GatewayState {
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayState::Starting => "starting",
            GatewayState::Running => "running",
            GatewayState::Draining => "draining",
            GatewayState::Stopped => "stopped",
            GatewayState::StartupFailed => "startup_failed",
            GatewayState::CrashLooping => "crash_looping",
        }
    }

    /// Whether a process in this state claims to be alive (and so must keep its record fresh).
    pub fn claims_alive(self) -> bool {
        matches!(
            self,
            GatewayState::Starting | GatewayState::Running | GatewayState::Draining
        )
    }
}

impl std::fmt::Display for GatewayState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the gateway can be reached.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    pub control: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_url: Option<String>,
}

/// How a part of the gateway that talks to the outside — a chat adapter (Telegram, ...) or the agent
/// backend — is doing, as `herald status` shows it. One vocabulary for both, so a person reads one word.
///
/// Records written before this vocabulary used `retrying`, `error` and `unauthorized`; they still read
/// (as `degraded`, `degraded` and `bad_credentials`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// Not connected yet (nothing known).
    Starting,
    /// Doing its job: its last poll, send, turn or probe worked.
    Connected,
    /// Transient errors (a network failure, a stuck poll, a 5xx, an agent failing its turns): retrying
    /// with backoff, and rebuilding its connection when that is what is wrong.
    #[serde(alias = "retrying", alias = "error")]
    Degraded,
    /// The service refused the credentials (a 401): retried slowly, in case they are restored.
    #[serde(alias = "unauthorized")]
    BadCredentials,
    /// Another program takes this adapter's messages (Telegram's 409: another poller on the token).
    Conflict,
    /// Set up so that it cannot work (a program that does not exist, a model the server refuses):
    /// retrying will not help; the operator must fix the configuration.
    Misconfigured,
    /// Stopped by a planned stop.
    Stopped,
}

impl HealthState {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Starting => "starting",
            HealthState::Connected => "connected",
            HealthState::Degraded => "degraded",
            HealthState::BadCredentials => "bad_credentials",
            HealthState::Conflict => "conflict",
            HealthState::Misconfigured => "misconfigured",
            HealthState::Stopped => "stopped",
        }
    }

    /// Whether it is doing its job (or about to).
    pub fn is_healthy(self) -> bool {
        matches!(
            self,
            HealthState::Starting | HealthState::Connected | HealthState::Stopped
        )
    }
}

impl std::fmt::Display for HealthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One chat adapter, or the agent, in the state record: its state since when and why, and when it last
/// did its job — so "alive but deaf" is a fact someone can read, not a guess.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthRecord {
    /// `telegram`, ...; for the agent, its backend (`openai`).
    pub name: String,
    pub state: HealthState,
    /// Why it is in `state`, for people (never a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it entered `state`.
    pub since_ms: u64,
    /// The last message it took in (an update polled, a turn started); for a poller, its last completed
    /// poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_inbound_ms: Option<u64>,
    /// While `connected`, something comes in at least this often (a poller's longest normal gap between
    /// two completed polls); a longer silence is "alive but deaf" (`status --deep`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound_every_ms: Option<u64>,
    /// The last thing it got out (a reply sent, an agent's answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_outbound_ms: Option<u64>,
    /// The last error, whatever the state now, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_ms: Option<u64>,
    /// Times this adapter was restarted inside the running gateway (by its supervisor or by hand).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restarts: u32,
    /// When the people it serves were told it is failing (cleared when it recovers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice_sent_ms: Option<u64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl HealthRecord {
    /// A fresh record in `state` since `now_ms`.
    pub fn new(name: impl Into<String>, state: HealthState, now_ms: u64) -> HealthRecord {
        HealthRecord {
            name: name.into(),
            state,
            message: None,
            since_ms: now_ms,
            last_inbound_ms: None,
            inbound_every_ms: None,
            last_outbound_ms: None,
            last_error: None,
            last_error_ms: None,
            restarts: 0,
            notice_sent_ms: None,
        }
    }
}

/// How the last gateway process on this home ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub code: u8,
    pub reason: String,
    pub at_ms: u64,
}

/// `run/state.json`: what the gateway is doing, rewritten on every transition and on a heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateRecord {
    pub version: u32,
    pub state: GatewayState,
    pub pid: u32,
    pub start_time: u64,
    pub started_at_ms: u64,
    pub updated_at_ms: u64,
    /// The record is rewritten at least this often while the state claims the gateway is alive.
    pub heartbeat_secs: u64,
    /// Turns this gateway holds: running their agent, or waiting in line for a slot.
    pub in_flight: u32,
    /// Of `in_flight`, the turns waiting for a slot (absent from records written before the line).
    #[serde(default)]
    pub queued: u32,
    /// How many turns may run at once (`[agent] max_concurrent_turns`); 0 when not known.
    #[serde(default)]
    pub turn_slots: u32,
    pub endpoints: Endpoints,
    /// The worker process serving under a supervising monitor (`pid` is then the monitor's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<ExitRecord>,
    /// Push adapters and how they are doing (absent from records written before adapters existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adapters: Vec<HealthRecord>,
    /// The agent backend and how it is doing (absent from records written before agent health).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<HealthRecord>,
    /// The replicas sharing the journal, as this gateway last read them (a PostgreSQL journal only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterView>,
    /// Since when the journal's database has been unreachable, and why (a PostgreSQL journal only;
    /// absent while it answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal_outage: Option<JournalOutage>,
}

/// The journal's database not answering: since when, and the last error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalOutage {
    pub since_ms: u64,
    pub error: String,
}

/// One replica of those sharing a journal, as the registry shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaView {
    /// The registry's id of this replica (one per process start).
    pub id: i64,
    /// Its machine and home, for people.
    pub name: String,
    pub pid: u32,
    pub version: String,
    pub started_ms: u64,
    /// Its lease is current (it renewed it within the TTL).
    pub alive: bool,
    /// Turns it owns that are not finished.
    pub turns: u64,
    /// The push adapters it runs (each on one replica at a time).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adapters: Vec<String>,
    /// This is the replica that made the view.
    #[serde(default)]
    pub me: bool,
}

/// The replicas sharing a journal, as one of them last read the registry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClusterView {
    pub replicas: Vec<ReplicaView>,
    /// Unfinished turns no live replica owns (left by a stopped or dead one, waiting to be adopted).
    #[serde(default)]
    pub orphaned: u64,
    /// The lease TTL, in seconds.
    pub lease_secs: u64,
}

impl StateRecord {
    pub fn key(&self) -> ProcessKey {
        ProcessKey {
            pid: self.pid,
            start_time: self.start_time,
        }
    }

    /// True when the state claims a live gateway but has not been refreshed within two heartbeats.
    pub fn is_stale(&self, now_ms: u64) -> bool {
        self.state.claims_alive()
            && now_ms.saturating_sub(self.updated_at_ms) > self.heartbeat_secs.saturating_mul(2_000)
    }
}

impl Record for StateRecord {
    const VERSION: u32 = 1;
    const KIND: &'static str = "state record";
}

/// A supervised worker, as its monitor records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRecord {
    pub pid: u32,
    pub start_time: u64,
    pub argv: Vec<String>,
    pub exe: Option<String>,
}

impl WorkerRecord {
    pub fn key(&self) -> ProcessKey {
        ProcessKey {
            pid: self.pid,
            start_time: self.start_time,
        }
    }
}

/// What the supervising monitor is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MonitorPhase {
    /// A worker is running.
    Supervising,
    /// The worker exited unexpectedly; the next one starts after a delay.
    Backoff,
    CrashLooping,
    Stopped,
}

/// `run/monitor.json`: the supervisor's view, written only by the monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorRecord {
    pub version: u32,
    pub pid: u32,
    pub start_time: u64,
    pub phase: MonitorPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerRecord>,
    pub restarts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_restart_reason: Option<String>,
    pub updated_at_ms: u64,
}

impl MonitorRecord {
    pub fn key(&self) -> ProcessKey {
        ProcessKey {
            pid: self.pid,
            start_time: self.start_time,
        }
    }
}

impl Record for MonitorRecord {
    const VERSION: u32 = 1;
    const KIND: &'static str = "monitor record";
}

/// `run/stop.marker`: a planned-stop request for one specific process, for when the control channel
/// cannot be reached. It names its target by [`ProcessKey`] and expires, because a marker left behind
/// for a process that is gone must never stop its successor (a known crash loop in other gateways).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopMarker {
    pub version: u32,
    pub target: ProcessKey,
    pub expires_at_ms: u64,
    pub requested_by: String,
    #[serde(default)]
    pub restart: bool,
}

impl Record for StopMarker {
    const VERSION: u32 = 1;
    const KIND: &'static str = "stop marker";
}

/// What a gateway should do with a marker it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerVerdict {
    /// Addressed to this process and not expired: stop.
    ForMe,
    /// Addressed to another process (a predecessor, usually): ignore and remove.
    Foreign,
    /// Addressed to this process but too old: ignore and remove.
    Expired,
}

impl StopMarker {
    /// `me` lists every identity the reader answers for (a worker also obeys markers addressed to its
    /// monitor, since stoppers only know the monitor from the PID record).
    pub fn verdict(&self, me: &[ProcessKey], now_ms: u64) -> MarkerVerdict {
        if !me.contains(&self.target) {
            MarkerVerdict::Foreign
        } else if now_ms > self.expires_at_ms {
            MarkerVerdict::Expired
        } else {
            MarkerVerdict::ForMe
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: ProcessKey = ProcessKey {
        pid: 10,
        start_time: 1000,
    };

    fn marker(target: ProcessKey, expires_at_ms: u64) -> StopMarker {
        StopMarker {
            version: 1,
            target,
            expires_at_ms,
            requested_by: "test".into(),
            restart: false,
        }
    }

    #[test]
    fn marker_verdicts() {
        assert_eq!(marker(ME, 5_000).verdict(&[ME], 4_000), MarkerVerdict::ForMe);
        assert_eq!(marker(ME, 5_000).verdict(&[ME], 6_000), MarkerVerdict::Expired);
        let recycled = ProcessKey {
            pid: 10,
            start_time: 999,
        };
        assert_eq!(
            marker(recycled, 5_000).verdict(&[ME], 4_000),
            MarkerVerdict::Foreign
        );
        let other = ProcessKey {
            pid: 11,
            start_time: 1000,
        };
        assert_eq!(marker(other, 5_000).verdict(&[ME], 4_000), MarkerVerdict::Foreign);
    }

    #[test]
    fn staleness_only_applies_to_states_that_claim_to_be_alive() {
        let mut record = StateRecord {
            version: 1,
            state: GatewayState::Running,
            pid: 1,
            start_time: 1,
            started_at_ms: 0,
            updated_at_ms: 10_000,
            heartbeat_secs: 30,
            in_flight: 0,
            queued: 0,
            turn_slots: 0,
            endpoints: Endpoints::default(),
            worker_pid: None,
            detail: None,
            last_exit: None,
            adapters: Vec::new(),
            agent: None,
            cluster: None,
            journal_outage: None,
        };
        assert!(!record.is_stale(10_000 + 60_000));
        assert!(record.is_stale(10_000 + 60_001));
        record.state = GatewayState::Stopped;
        assert!(!record.is_stale(u64::MAX));
    }

    #[test]
    fn process_keys_parse_strictly() {
        let key = ProcessKey {
            pid: 12,
            start_time: 345,
        };
        assert_eq!(ProcessKey::parse(&key.to_arg()), Some(key));
        for bad in ["", "12", "a:1", "1:b", "1:2:3", ":"] {
            assert_eq!(ProcessKey::parse(bad), None, "{bad}");
        }
    }
}
