//! The fast status summary: lock + records + OS identity, no network, no waiting.
//!
//! **Invariant:** `running` means a process holds the instance lock — the lock is the truth. The PID
//! record only supplies a pid when the OS confirms it (start time and command line); the state record
//! only supplies details. Every disagreement between them becomes a warning, never a wrong answer.

use std::path::PathBuf;

use herald_home::Home;
use herald_home::atomic::read_record;
use herald_home::lock::InstanceLock;
use herald_home::records::{ExitRecord, GatewayState, HealthRecord, MonitorRecord, PidRecord, StateRecord};
use herald_home::time::now_ms;

use herald_install::manage::registered_for_home;
use herald_install::names;
use herald_install::scm::{Scm, ScmService, ScmState};
use herald_process::identity::{self, Identity};

/// What `herald status` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    pub home: PathBuf,
    pub running: bool,
    /// The verified gateway pid (only when the OS confirms the PID record).
    pub pid: Option<u32>,
    /// The version the verified gateway runs (its PID record's), so an upgrade shows.
    pub version: Option<String>,
    pub state: Option<GatewayState>,
    pub uptime_secs: Option<u64>,
    pub in_flight: Option<u32>,
    /// Of `in_flight`, the turns waiting in line for one of `turn_slots` slots.
    pub queued: Option<u32>,
    pub turn_slots: Option<u32>,
    pub control: Option<String>,
    pub http_url: Option<String>,
    pub last_exit: Option<ExitRecord>,
    /// Why a running gateway is not serving: one a launchd job started (`run --launchd`) waits, in
    /// `startup_failed`, for its config to be fixed instead of exiting 78.
    pub waiting: Option<String>,
    /// Supervision: the worker serving under the monitor (`pid`), restarts so far and why the last one.
    pub worker_pid: Option<u32>,
    pub restarts: Option<u32>,
    pub last_restart_reason: Option<String>,
    /// Push adapters (Telegram, ...) and how they are doing, from the state record.
    pub adapters: Vec<HealthRecord>,
    /// The agent backend and how it is doing, from the state record.
    pub agent: Option<HealthRecord>,
    /// The replicas sharing the journal, from the state record (a PostgreSQL journal only).
    pub cluster: Option<herald_home::records::ClusterView>,
    /// The journal's database not answering, from the state record (a PostgreSQL journal only).
    pub journal_outage: Option<herald_home::records::JournalOutage>,
    /// The Windows Service registered for this home, once [`StatusReport::read_service`] asked the SCM.
    pub service: Option<ServiceSummary>,
    pub warnings: Vec<String>,
}

/// A service registration as its manager reports it. Plain `status` asks only the Windows SCM (a local
/// RPC, well within the 5 ms budget); `systemctl` and `launchctl` cost a process each and are left to
/// `--deep`'s probe 9.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSummary {
    /// `windows service`.
    pub manager: &'static str,
    /// `Herald_Gateway[_PROFILE]`.
    pub name: String,
    /// The manager's word: `running`, `start pending`, `stop pending`, `stopped`...
    pub state: String,
    /// The process the manager runs for it.
    pub pid: Option<u32>,
    /// When the manager starts it: `automatic`, `manual`, `disabled`.
    pub start: String,
    /// Why it last stopped, while it is stopped (`exit code 75`, `win32 error 1067`).
    pub exit: Option<String>,
}

impl ServiceSummary {
    fn from_scm(name: String, service: &ScmService) -> ServiceSummary {
        let status = &service.status;
        ServiceSummary {
            manager: "windows service",
            name,
            state: status.state.as_str().to_owned(),
            pid: status.pid,
            start: service.start.as_str().to_owned(),
            exit: (status.state == ScmState::Stopped).then(|| status.exit.to_string()),
        }
    }

    /// `windows service Herald_Gateway: running (pid 42), automatic start`.
    pub fn describe(&self) -> String {
        let mut out = format!("{} {}: {}", self.manager, self.name, self.state);
        match (self.pid, &self.exit) {
            (Some(pid), _) => out.push_str(&format!(" (pid {pid})")),
            (None, Some(exit)) => out.push_str(&format!(" ({exit})")),
            (None, None) => {}
        }
        out.push_str(&format!(", {} start", self.start));
        out
    }
}

/// Another gateway sharing this home's root (the default home or a profile), found running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherGateway {
    /// `None` for the root home itself.
    pub profile: Option<String>,
    pub home: PathBuf,
    /// From its PID record (not identity-checked: this is a one-line overview).
    pub pid: Option<u32>,
}

/// The running gateways of the sibling homes (`--deep` checks one home; this only lists the others).
pub fn other_running(home: &Home) -> Vec<OtherGateway> {
    home.siblings()
        .into_iter()
        .filter(|h| InstanceLock::is_held(&h.lock_file()).unwrap_or(false))
        .map(|h| OtherGateway {
            profile: h.profile().map(|p| p.to_string()),
            pid: read_record::<PidRecord>(&h.pid_record()).present().map(|r| r.pid),
            home: h.root().to_path_buf(),
        })
        .collect()
}

impl StatusReport {
    /// Reads the lock and records of `home` and checks the recorded pid with the OS.
    pub fn gather(home: &Home) -> StatusReport {
        let mut warnings = Vec::new();
        let lock_held = match InstanceLock::is_held(&home.lock_file()) {
            Ok(held) => held,
            Err(e) => {
                warnings.push(format!("cannot probe the instance lock: {e}"));
                false
            }
        };
        if let Some(words) = crate::upgrade::describe_unfinished(home) {
            warnings.push(words);
        }
        let pid_record = read_record::<PidRecord>(&home.pid_record());
        let state_record = read_record::<StateRecord>(&home.state_record());
        for reason in [pid_record.invalid_reason(), state_record.invalid_reason()]
            .into_iter()
            .flatten()
        {
            warnings.push(format!("{reason}; ignoring it"));
        }
        let identity = pid_record
            .as_present()
            .map(|r| identity::verify(r.key(), &r.argv, r.exe.as_deref(), &identity::probe(r.pid)));
        let state = state_record.as_present();
        let now = now_ms();

        // A gateway whose lock file was deleted (or replaced) still runs, unlocked: say so, never "not
        // running" — a start would otherwise put a second gateway beside it.
        let unlocked_but_alive = !lock_held && matches!(identity, Some(Identity::Verified));
        if unlocked_but_alive && let Some(r) = pid_record.as_present() {
            warnings.push(format!(
                "{} is missing or was replaced while the gateway (pid {}) runs: stop it with `herald stop`, \
                 then start it again to restore the lock",
                home.lock_file().display(),
                r.pid
            ));
        }
        if !lock_held && !unlocked_but_alive {
            if let Some(r) = pid_record.as_present() {
                warnings.push(format!(
                    "stale PID record for pid {} ({}): that gateway exited without cleaning up",
                    r.pid,
                    identity.as_ref().map_or_else(String::new, Identity::describe)
                ));
            }
            if let Some(s) = state.filter(|s| s.state.claims_alive()) {
                warnings.push(format!(
                    "the state record still says {} but no gateway holds the lock",
                    s.state
                ));
            }
            return StatusReport {
                home: home.root().to_path_buf(),
                running: false,
                pid: None,
                version: None,
                state: state.map(|s| s.state).filter(|s| !s.claims_alive()),
                uptime_secs: None,
                in_flight: None,
                queued: None,
                turn_slots: None,
                control: None,
                http_url: None,
                last_exit: state.and_then(|s| s.last_exit.clone()),
                waiting: None,
                worker_pid: None,
                restarts: None,
                last_restart_reason: None,
                adapters: Vec::new(),
                cluster: None,
                journal_outage: None,
                agent: None,
                service: None,
                warnings,
            };
        }

        let verified = match (pid_record.as_present(), &identity) {
            (Some(r), Some(Identity::Verified)) => Some(r),
            (Some(r), Some(other)) => {
                warnings.push(format!(
                    "the home is locked, but the PID record's pid {} is not it: {}",
                    r.pid,
                    other.describe()
                ));
                None
            }
            _ => {
                warnings.push("the home is locked, but there is no usable PID record (starting up?)".into());
                None
            }
        };
        let state = state.filter(|s| verified.is_some_and(|r| r.key() == s.key()));
        if let Some(s) = state
            && s.is_stale(now)
        {
            warnings.push(format!(
                "the state record has not been refreshed for {}s (heartbeat {}s): the gateway may be wedged",
                now.saturating_sub(s.updated_at_ms) / 1000,
                s.heartbeat_secs
            ));
        }
        let monitor = read_record::<MonitorRecord>(&home.monitor_record())
            .present()
            .filter(|m| verified.is_some_and(|r| r.key() == m.key()));
        StatusReport {
            home: home.root().to_path_buf(),
            running: true,
            pid: verified.map(|r| r.pid),
            version: verified.map(|r| r.herald_version.clone()),
            state: state.map(|s| s.state),
            uptime_secs: verified.map(|r| now.saturating_sub(r.started_at_ms) / 1000),
            in_flight: state.map(|s| s.in_flight),
            queued: state.map(|s| s.queued),
            turn_slots: state.map(|s| s.turn_slots).filter(|n| *n > 0),
            control: verified.map(|r| r.control.clone()),
            http_url: state.and_then(|s| s.endpoints.http_url.clone()),
            last_exit: None,
            waiting: state
                .filter(|s| s.state == GatewayState::StartupFailed)
                .and_then(|s| s.detail.clone()),
            worker_pid: state
                .and_then(|s| s.worker_pid)
                .or_else(|| monitor.as_ref().and_then(|m| m.worker.as_ref().map(|w| w.pid))),
            restarts: monitor.as_ref().map(|m| m.restarts),
            last_restart_reason: monitor.and_then(|m| m.last_restart_reason),
            adapters: state.map(|s| s.adapters.clone()).unwrap_or_default(),
            cluster: state.and_then(|s| s.cluster.clone()),
            journal_outage: state.and_then(|s| s.journal_outage.clone()),
            agent: state.and_then(|s| s.agent.clone()),
            service: None,
            warnings,
        }
    }

    /// Asks the SCM for this home's Windows Service and adds what it says, with a warning when it
    /// contradicts the lock. Not Windows, or no service for this home: nothing changes.
    pub fn read_service(&mut self, home: &Home, scm: &dyn Scm) {
        match registered_for_home(home, scm) {
            Ok(Some(service)) => {
                let name = names::windows_service_name(home.profile());
                self.add_service(ServiceSummary::from_scm(name, &service), service.status.state);
            }
            Ok(None) => {}
            Err(e) => self
                .warnings
                .push(format!("cannot ask the Service Control Manager: {e}")),
        }
    }

    /// Records `service` and judges it against the lock (the lock stays the truth for `running`):
    /// the SCM running the service while no gateway holds the lock, or running a process that is not the
    /// gateway, is said; pending states are transitions and are not.
    fn add_service(&mut self, service: ServiceSummary, state: ScmState) {
        if state == ScmState::Running && !self.running {
            self.warnings.push(format!(
                "the SCM says {} is running{}, but no gateway holds the lock",
                service.name,
                service.pid.map_or_else(String::new, |p| format!(" (pid {p})"))
            ));
        }
        if let (true, Some(gateway), Some(scm_pid)) = (self.running, self.pid, service.pid)
            && gateway != scm_pid
        {
            self.warnings.push(format!(
                "the gateway (pid {gateway}) is not the service's process (pid {scm_pid}): it was started \
                 outside {}",
                service.name
            ));
        }
        self.service = Some(service);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_install::scm::{ScmExit, ScmStart, ScmStatus};

    fn report(running: bool, pid: Option<u32>) -> StatusReport {
        StatusReport {
            home: PathBuf::from("/h"),
            running,
            pid,
            version: None,
            state: None,
            uptime_secs: None,
            in_flight: None,
            queued: None,
            turn_slots: None,
            control: None,
            http_url: None,
            last_exit: None,
            waiting: None,
            worker_pid: None,
            restarts: None,
            last_restart_reason: None,
            adapters: Vec::new(),
            cluster: None,
            journal_outage: None,
            agent: None,
            service: None,
            warnings: Vec::new(),
        }
    }

    fn service(state: ScmState, pid: Option<u32>, exit: ScmExit) -> ScmService {
        ScmService {
            command_line: r#""C:\h\herald.exe" --home C:\h run --no-supervise --windows-service"#.into(),
            start: ScmStart::Auto,
            account: None,
            failure: None,
            failure_on_non_crash: None,
            status: ScmStatus::settled(state, pid, exit),
        }
    }

    fn judged(mut report: StatusReport, svc: &ScmService) -> StatusReport {
        report.add_service(
            ServiceSummary::from_scm("Herald_Gateway".into(), svc),
            svc.status.state,
        );
        report
    }

    #[test]
    fn a_running_service_that_is_the_gateway_agrees() {
        let r = judged(
            report(true, Some(42)),
            &service(ScmState::Running, Some(42), ScmExit::Win32(0)),
        );
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        assert_eq!(
            r.service.unwrap().describe(),
            "windows service Herald_Gateway: running (pid 42), automatic start"
        );
    }

    #[test]
    fn a_stopped_service_says_why() {
        let r = judged(
            report(false, None),
            &service(ScmState::Stopped, None, ScmExit::ServiceSpecific(75)),
        );
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        assert_eq!(
            r.service.unwrap().describe(),
            "windows service Herald_Gateway: stopped (exit code 75), automatic start"
        );
    }

    #[test]
    fn running_without_the_lock_is_a_warning_but_pending_is_not() {
        let r = judged(
            report(false, None),
            &service(ScmState::Running, Some(7), ScmExit::Win32(0)),
        );
        assert_eq!(r.warnings.len(), 1);
        assert!(
            r.warnings[0].contains("no gateway holds the lock"),
            "{:?}",
            r.warnings
        );
        for pending in [ScmState::StartPending, ScmState::StopPending] {
            let r = judged(report(false, None), &service(pending, Some(7), ScmExit::Win32(0)));
            assert!(r.warnings.is_empty(), "{pending:?}: {:?}", r.warnings);
        }
    }

    #[test]
    fn a_gateway_outside_the_service_is_named() {
        let r = judged(
            report(true, Some(42)),
            &service(ScmState::Running, Some(9), ScmExit::Win32(0)),
        );
        assert_eq!(r.warnings.len(), 1);
        assert!(
            r.warnings[0].contains("not the service's process (pid 9)"),
            "{:?}",
            r.warnings
        );
    }
}
