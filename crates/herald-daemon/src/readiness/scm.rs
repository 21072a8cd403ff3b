//! The Windows Service's status as the SCM sees it, as a pure state machine: the readiness notifier of a
//! process that runs as a service (`herald run --windows-service`; the entry point is `crate::winsvc`).
//!
//! - **Status.** `SERVICE_START_PENDING` until the gateway is ready (the same moment systemd gets
//!   `READY=1`; a monitor learns it from its worker's state record), then `SERVICE_RUNNING`; a planned
//!   stop — whoever asked — reports `SERVICE_STOP_PENDING`, and a helper thread raises the checkpoint
//!   every second (with a wait hint) until the process has exited; then `SERVICE_STOPPED` with the exit
//!   code below. The helper thread sleeps without a timeout while the service runs: no wake-ups. A
//!   worker restarted by the monitor is not a change of the service's state.
//! - **Controls.** Stop and Preshutdown (accepted from the start) become a stop request on the process's
//!   own stop channel ([`crate::signals::StopSource::Service`]), recorded as `stop_requested` with source
//!   `scm:stop` / `scm:preshutdown`. A control that arrives before the channel exists is kept and
//!   delivered when it does.
//! - **Exit codes** ([`scm_exit`]): 0 (planned stop) → `NO_ERROR`; 75 (restart requested) → service
//!   specific 75, a failure for the SCM, whose failure actions start it again; 78 (fatal configuration) →
//!   `NO_ERROR`, so the SCM does *not* restart a gateway that cannot start; any other code → service
//!   specific, restarted with growing delays.
//!
//! **Invariant:** the session is created by the service entry point and handed down as
//! [`super::Notifier::Scm`]; nothing reaches it through a global.

use herald_home::sync::MutexExt;
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use herald_home::ExitCode;
use tokio::sync::mpsc::UnboundedSender;

use crate::signals::{Disposition, ServiceControl, SignalEvent, StopSource};

/// The wait hint reported with each pending status; the checkpoint advances every [`TICK`], well inside
/// it, for as long as the start or the drain takes.
pub const WAIT_HINT: Duration = Duration::from_secs(10);
/// How often the checkpoint of a pending start or stop advances.
pub const TICK: Duration = Duration::from_secs(1);

/// What the SCM is told when the gateway has exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScmExitReport {
    /// `NO_ERROR`: no failure actions.
    Clean,
    /// `ERROR_SERVICE_SPECIFIC_ERROR` with this code: the failure actions restart the service.
    ServiceSpecific(u32),
}

/// The exit-code contract mapped to the SCM (see the module documentation).
pub fn scm_exit(code: ExitCode) -> ScmExitReport {
    match code {
        ExitCode::Ok | ExitCode::Config => ScmExitReport::Clean,
        other => ScmExitReport::ServiceSpecific(u32::from(other.code())),
    }
}

/// The service's state as reported to the SCM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Starting,
    Running,
    Stopping,
    Stopped(ScmExitReport),
}

/// One `SetServiceStatus` call, as data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusUpdate {
    pub phase: Phase,
    /// Advances while a start or stop is pending; 0 otherwise.
    pub checkpoint: u32,
    pub wait_hint: Duration,
    /// Accept Stop and Preshutdown (while starting and running).
    pub accept_stop: bool,
}

type Reporter = Box<dyn Fn(&StatusUpdate) + Send + Sync>;

#[derive(Debug)]
struct Inner {
    phase: Phase,
    checkpoint: u32,
    /// A stop control that arrived before the gateway listened.
    pending: Option<ServiceControl>,
    events: Option<UnboundedSender<SignalEvent>>,
}

/// The state shared by the SCM's control handler, the gateway (through [`ready`], [`stopping`] and
/// [`attach`]) and the checkpoint thread.
pub struct ScmSession {
    inner: Mutex<Inner>,
    changed: Condvar,
    reporter: OnceLock<Reporter>,
}

impl std::fmt::Debug for ScmSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScmSession")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl Default for ScmSession {
    fn default() -> Self {
        ScmSession::new()
    }
}

impl ScmSession {
    pub fn new() -> ScmSession {
        ScmSession {
            inner: Mutex::new(Inner {
                phase: Phase::Starting,
                checkpoint: 0,
                pending: None,
                events: None,
            }),
            changed: Condvar::new(),
            reporter: OnceLock::new(),
        }
    }

    /// Where status updates go (set once, after the control handler is registered).
    pub fn set_reporter(&self, reporter: impl Fn(&StatusUpdate) + Send + Sync + 'static) {
        let _ = self.reporter.set(Box::new(reporter));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock_unpoisoned()
    }

    /// Reports the current phase (raising the checkpoint of a pending one).
    fn report(&self, inner: &mut Inner) {
        let pending = matches!(inner.phase, Phase::Starting | Phase::Stopping);
        inner.checkpoint = if pending {
            inner.checkpoint.saturating_add(1)
        } else {
            0
        };
        let update = StatusUpdate {
            phase: inner.phase,
            checkpoint: inner.checkpoint,
            wait_hint: if pending { WAIT_HINT } else { Duration::ZERO },
            accept_stop: matches!(inner.phase, Phase::Starting | Phase::Running),
        };
        if let Some(reporter) = self.reporter.get() {
            reporter(&update);
        }
        self.changed.notify_all();
    }

    /// The first report: start pending.
    pub fn begin(&self) {
        let mut inner = self.lock();
        self.report(&mut inner);
    }

    /// The gateway serves.
    pub fn ready(&self) {
        let mut inner = self.lock();
        if inner.phase == Phase::Starting {
            inner.phase = Phase::Running;
            self.report(&mut inner);
        }
    }

    /// A planned stop has begun (from any source).
    pub fn stopping(&self) {
        let mut inner = self.lock();
        if matches!(inner.phase, Phase::Starting | Phase::Running) {
            inner.phase = Phase::Stopping;
            inner.checkpoint = 0;
            self.report(&mut inner);
        }
    }

    /// A control from the SCM: stop pending at once, and a stop request for the gateway (now, or when it
    /// listens).
    pub fn control(&self, control: ServiceControl) {
        let mut inner = self.lock();
        if !matches!(inner.phase, Phase::Starting | Phase::Running) {
            return;
        }
        match &inner.events {
            Some(events) => {
                let _ = events.send(stop_event(control));
            }
            None => inner.pending = Some(control),
        }
        inner.phase = Phase::Stopping;
        inner.checkpoint = 0;
        self.report(&mut inner);
    }

    /// Whether the SCM still waits to hear that the service serves (start pending).
    pub fn starting(&self) -> bool {
        self.lock().phase == Phase::Starting
    }

    /// The gateway's stop channel; a control that came first is delivered now.
    pub fn attach(&self, events: UnboundedSender<SignalEvent>) {
        let mut inner = self.lock();
        if let Some(control) = inner.pending.take() {
            let _ = events.send(stop_event(control));
        }
        inner.events = Some(events);
    }

    /// The gateway has exited with `code`.
    pub fn finish(&self, code: ExitCode) {
        let mut inner = self.lock();
        inner.phase = Phase::Stopped(scm_exit(code));
        inner.events = None;
        self.report(&mut inner);
    }

    /// One turn of the checkpoint thread: waits up to [`TICK`] while a start or stop is pending (then
    /// raises the checkpoint), without a timeout while running. Returns `false` once stopped.
    pub fn tick(&self) -> bool {
        let mut inner = self.lock();
        loop {
            match inner.phase {
                Phase::Stopped(_) => return false,
                Phase::Running => {
                    inner = self.changed.wait(inner).unwrap_or_else(PoisonError::into_inner);
                }
                Phase::Starting | Phase::Stopping => {
                    let before = (inner.phase, inner.checkpoint);
                    let (mut guard, timeout) = self
                        .changed
                        .wait_timeout(inner, TICK)
                        .unwrap_or_else(PoisonError::into_inner);
                    if timeout.timed_out() && (guard.phase, guard.checkpoint) == before {
                        self.report(&mut guard);
                        return true;
                    }
                    inner = guard;
                }
            }
        }
    }
}

fn stop_event(control: ServiceControl) -> SignalEvent {
    SignalEvent {
        source: StopSource::Service(control),
        disposition: Disposition::Stop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn recording() -> (ScmSession, Arc<Mutex<Vec<StatusUpdate>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let session = ScmSession::new();
        let sink = seen.clone();
        session.set_reporter(move |u| sink.lock().unwrap().push(*u));
        (session, seen)
    }

    #[test]
    fn exit_codes_map_so_config_errors_do_not_restart_and_failures_do() {
        assert_eq!(scm_exit(ExitCode::Ok), ScmExitReport::Clean);
        assert_eq!(scm_exit(ExitCode::Config), ScmExitReport::Clean);
        assert_eq!(scm_exit(ExitCode::Restart), ScmExitReport::ServiceSpecific(75));
        assert_eq!(scm_exit(ExitCode::Failure), ScmExitReport::ServiceSpecific(1));
    }

    #[test]
    fn a_service_starts_pending_runs_then_stops_pending_with_rising_checkpoints() {
        let (session, seen) = recording();
        session.begin();
        assert!(session.tick(), "a pending start ticks");
        session.ready();
        session.stopping();
        assert!(session.tick());
        assert!(session.tick());
        session.finish(ExitCode::Ok);
        assert!(!session.tick());
        let seen = seen.lock().unwrap();
        let phases: Vec<(Phase, u32, bool)> = seen
            .iter()
            .map(|u| (u.phase, u.checkpoint, u.accept_stop))
            .collect();
        assert_eq!(
            phases,
            [
                (Phase::Starting, 1, true),
                (Phase::Starting, 2, true),
                (Phase::Running, 0, true),
                (Phase::Stopping, 1, false),
                (Phase::Stopping, 2, false),
                (Phase::Stopping, 3, false),
                (Phase::Stopped(ScmExitReport::Clean), 0, false),
            ]
        );
        assert!(
            seen.iter()
                .filter(|u| u.phase == Phase::Stopping)
                .all(|u| u.wait_hint == WAIT_HINT)
        );
    }

    #[test]
    fn a_stop_control_reaches_the_gateway_even_before_it_listens() {
        let (session, seen) = recording();
        session.begin();
        session.control(ServiceControl::Preshutdown);
        assert_eq!(seen.lock().unwrap().last().unwrap().phase, Phase::Stopping);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        session.attach(tx);
        let event = rx.try_recv().unwrap();
        assert_eq!(event.source.describe(), "scm:preshutdown");
        assert_eq!(event.disposition, Disposition::Stop);
        // Once stopping, further controls are not accepted twice.
        session.control(ServiceControl::Stop);
        assert!(rx.try_recv().is_err());

        let (session, _) = recording();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        session.attach(tx);
        session.ready();
        session.control(ServiceControl::Stop);
        assert_eq!(rx.try_recv().unwrap().source.describe(), "scm:stop");
    }

    #[test]
    fn a_running_service_has_no_timer() {
        let (session, _) = recording();
        let session = Arc::new(session);
        session.ready();
        let ticker = {
            let session = session.clone();
            std::thread::spawn(move || session.tick())
        };
        std::thread::sleep(TICK + Duration::from_millis(300));
        assert!(!ticker.is_finished(), "no tick while running");
        session.finish(ExitCode::Restart);
        assert!(!ticker.join().unwrap());
    }
}
