//! The gateway's own records: the PID record it owns while alive, the state record it rewrites on every
//! transition and heartbeat, and its lifecycle events.
//!
//! **Invariant:** only the process holding the instance lock writes these (the one exception is a stopper
//! that force-killed a gateway and then took the lock itself to record the outcome). A failed write (a
//! full disk) is logged and survived: the gateway keeps serving, and the lock still tells the truth.

use herald_gateway::TurnCounts;
use herald_gateway::health::HealthBoard;
use herald_home::ExitCode;
use herald_home::Home;
use herald_home::atomic::{remove_if_exists, write_record};
use herald_home::lifecycle::{EventKind, LifecycleEvent, LifecycleLog};
use herald_home::records::{Endpoints, ExitRecord, GatewayState, PidRecord, ProcessKey, StateRecord};
use herald_home::time::now_ms;
use herald_process::ProcessInfo;

/// Interval at which a live gateway rewrites its state record.
pub const HEARTBEAT_SECS: u64 = 30;

/// Which process of a gateway is writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `run --no-supervise`: one process that holds the lock and serves.
    Standalone,
    /// The supervising monitor: holds the lock and the PID record, serves nothing.
    Monitor,
    /// Serves under a monitor, whose identity the state record carries as the gateway's.
    Worker { monitor: ProcessKey },
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Standalone => "standalone",
            Role::Monitor => "monitor",
            Role::Worker { .. } => "worker",
        }
    }
}

#[derive(Debug)]
pub struct RecordKeeper {
    home: Home,
    role: Role,
    me: ProcessInfo,
    started_at_ms: u64,
    state: GatewayState,
    turns: TurnCounts,
    turn_slots: usize,
    endpoints: Endpoints,
    log: LifecycleLog,
    /// Where push adapters and the agent report their health (recorded with every write).
    health: Option<HealthBoard>,
    /// The replicas sharing the journal (recorded with every write), when it is shared.
    cluster: Option<tokio::sync::watch::Receiver<Option<herald_home::records::ClusterView>>>,
    /// The journal's database outage, if any (recorded with every write), for a journal on a server.
    journal_outage: Option<tokio::sync::watch::Receiver<Option<herald_home::records::JournalOutage>>>,
}

impl RecordKeeper {
    pub fn new(home: Home, role: Role, me: ProcessInfo, control_endpoint: String) -> RecordKeeper {
        let log = LifecycleLog::new(home.lifecycle_log());
        RecordKeeper {
            home,
            role,
            me,
            started_at_ms: now_ms(),
            state: GatewayState::Starting,
            turns: TurnCounts::default(),
            turn_slots: 0,
            endpoints: Endpoints {
                control: control_endpoint,
                http_url: None,
            },
            log,
            health: None,
            cluster: None,
            journal_outage: None,
        }
    }

    pub fn key(&self) -> ProcessKey {
        self.me.key
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn pid(&self) -> u32 {
        self.me.key.pid
    }

    /// The pid the records name as the gateway's: the monitor's for a worker, else this process's.
    pub fn gateway_pid(&self) -> u32 {
        match self.role {
            Role::Worker { monitor } => monitor.pid,
            _ => self.me.key.pid,
        }
    }

    pub fn started_at_ms(&self) -> u64 {
        self.started_at_ms
    }

    pub fn state(&self) -> GatewayState {
        self.state
    }

    pub fn home(&self) -> &Home {
        &self.home
    }

    pub fn http_url(&self) -> Option<String> {
        self.endpoints.http_url.clone()
    }

    /// Records where the HTTP adapter listens (written with the next state transition).
    pub fn set_http_url(&mut self, url: Option<String>) {
        self.endpoints.http_url = url;
    }

    /// Records the replicas sharing the journal, as `view` last saw them, with every later write.
    pub fn set_cluster(
        &mut self,
        view: tokio::sync::watch::Receiver<Option<herald_home::records::ClusterView>>,
    ) {
        self.cluster = Some(view);
    }

    /// Records the journal's database outage, as `outage` says, with every later write.
    pub fn set_journal_outages(
        &mut self,
        outage: tokio::sync::watch::Receiver<Option<herald_home::records::JournalOutage>>,
    ) {
        self.journal_outage = Some(outage);
    }

    /// Records the adapters' and the agent's health from `board` with every later write.
    pub fn set_health_board(&mut self, board: HealthBoard) {
        self.health = Some(board);
    }

    /// Writes the PID record naming this process.
    pub fn write_pid_record(&self) {
        let record = PidRecord {
            version: 1,
            pid: self.me.key.pid,
            start_time: self.me.key.start_time,
            argv: self.me.cmd.clone(),
            exe: self.me.exe.as_ref().map(|p| p.display().to_string()),
            home: self.home.root().to_path_buf(),
            herald_version: herald_home::VERSION.to_owned(),
            started_at_ms: self.started_at_ms,
            control: self.endpoints.control.clone(),
        };
        if let Err(e) = write_record(&self.home.pid_record(), &record) {
            tracing::warn!("{e}");
        }
    }

    pub fn remove_pid_record(&self) {
        if let Err(e) = remove_if_exists(&self.home.pid_record()) {
            tracing::warn!("cannot remove the PID record: {e}");
        }
    }

    /// Moves to `state` and records it.
    pub fn transition(&mut self, state: GatewayState, detail: Option<String>) {
        self.state = state;
        self.write_state(detail, None);
    }

    /// Records how many turns may run at once (written with the next write).
    pub fn set_turn_slots(&mut self, slots: usize) {
        self.turn_slots = slots;
    }

    /// Rewrites the state record with a fresh timestamp (heartbeat) and the current turn counts.
    pub fn heartbeat(&mut self, turns: TurnCounts) {
        self.turns = turns;
        self.write_state(None, None);
    }

    /// Records the final state and exit.
    pub fn finish(&mut self, code: ExitCode, reason: &str, state: GatewayState) {
        self.state = state;
        self.turns = TurnCounts::default();
        let exit = ExitRecord {
            code: code.code(),
            reason: reason.to_owned(),
            at_ms: now_ms(),
        };
        let detail = (state == GatewayState::StartupFailed).then(|| reason.to_owned());
        self.write_state(detail, Some(exit));
    }

    fn write_state(&self, detail: Option<String>, last_exit: Option<ExitRecord>) {
        let (gateway, worker_pid) = match self.role {
            Role::Worker { monitor } => (monitor, Some(self.me.key.pid)),
            _ => (self.me.key, None),
        };
        let record = StateRecord {
            version: 1,
            state: self.state,
            pid: gateway.pid,
            start_time: gateway.start_time,
            worker_pid,
            started_at_ms: self.started_at_ms,
            updated_at_ms: now_ms(),
            heartbeat_secs: HEARTBEAT_SECS,
            in_flight: saturating_u32(self.turns.in_flight),
            queued: saturating_u32(self.turns.queued),
            turn_slots: saturating_u32(self.turn_slots),
            endpoints: self.endpoints.clone(),
            detail,
            last_exit,
            adapters: self
                .health
                .as_ref()
                .map(HealthBoard::adapters)
                .unwrap_or_default(),
            agent: self.health.as_ref().and_then(HealthBoard::agent_record),
            cluster: self.cluster.as_ref().and_then(|view| view.borrow().clone()),
            journal_outage: self
                .journal_outage
                .as_ref()
                .and_then(|outage| outage.borrow().clone()),
        };
        if let Err(e) = write_record(&self.home.state_record(), &record) {
            tracing::warn!("{e}");
        }
    }

    /// Starts a lifecycle event for this process.
    pub fn event(&self, kind: EventKind) -> LifecycleEvent {
        LifecycleEvent::new(kind, self.me.key.pid).with("role", self.role.as_str())
    }

    /// Records this process's `exit` event.
    pub fn log_exit(&self, code: ExitCode, reason: &str) {
        self.log(
            self.event(EventKind::Exit)
                .with("code", code.code())
                .with("reason", reason),
        );
    }

    /// Appends an event to the lifecycle log (a failure is logged, not fatal).
    pub fn log(&self, event: LifecycleEvent) {
        if let Err(e) = self.log.append(&event) {
            tracing::warn!("cannot append to {}: {e}", self.log.path().display());
        }
    }
}

fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
