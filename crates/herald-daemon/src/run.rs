//! `herald run`: the gateway process from lock to exit.
//!
//! Order matters and is the point of this module:
//! 1. take the instance lock (or, with `--replace`, stop the holder first) — before touching any record,
//!    so a second instance can never overwrite the first one's records;
//! 2. write the PID record and `starting`, then load the config (a bad config is `startup_failed`, exit 78);
//! 3. bind the control channel, listen for signals and markers, then `running` and the `ready` event;
//! 4. on the first stop request from any source: record the in-flight set, drain within the budget, write
//!    `stopped` with the exit code, remove the PID record and socket, and only then release the lock.
//!
//! **Architecture Invariant:** there is exactly one place a stop is carried out (`shutdown` below), reached
//! from every stop source, so the drain happens once whichever path asked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_gateway::{ResumeLedger, TurnTracker};
use herald_home::config::{Config, ConfigError};
use herald_home::lifecycle::{EventKind, LifecycleEvent, LifecycleLog};
use herald_home::lock::{InstanceLock, LockError};
use herald_home::paths::HomeError;
use herald_home::records::{GatewayState, ProcessKey};
use herald_home::{ExitCode, Home, StopBudget};
use tokio::sync::mpsc;

use crate::control::{ControlCall, ControlServer};
use crate::host::{GatewayHost, StartFailure};
use crate::marker::{self, MarkerCheck};
use crate::payload::SharedFactory;
use crate::readiness::Notifier;
use crate::serve_policy::{self, DrainStep, Heard, Step, StopOrder};
use crate::signals::{self, Disposition, SignalEvent, StopSource};
use crate::state::{HEARTBEAT_SECS, RecordKeeper, Role};
use herald_process::control::{self, DrainSummary, Response};
use herald_process::stop::{self, StopOptions, StopOutcome, StopVia};

/// How long a starting gateway keeps retrying a busy lock before concluding another gateway owns the
/// home: probes hold the lock for an instant, and a gateway that just won the lock needs a moment to
/// write its PID record.
const LOCK_RETRY_WINDOW: Duration = Duration::from_millis(1500);
const LOCK_RETRY_STEP: Duration = Duration::from_millis(15);

#[derive(Debug)]
pub struct RunOptions {
    pub home: Home,
    /// The home's config as this invocation read it, once (a broken one is recorded as
    /// `startup_failed`, exit 78, after the lock is taken).
    pub config: Result<Config, Arc<ConfigError>>,
    /// Who is told when the gateway is ready or stopping (systemd, the SCM, nobody).
    pub notifier: Notifier,
    /// Stop a gateway already running on this home, then take over.
    pub replace: bool,
    pub mode: RunMode,
    /// Builds the journal and agent for the serving process.
    pub payload: SharedFactory,
}

/// How `herald run` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// A monitor process that runs the gateway as a worker child and restarts it (the default).
    Supervised,
    /// One process, no monitor (`--no-supervise`, for service managers that supervise themselves).
    Standalone,
    /// The worker half of `Supervised`, started by a monitor (`run --worker`; not for people).
    Worker { monitor: ProcessKey },
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{}", already_running_message(*pid))]
    AlreadyRunning { pid: Option<u32> },
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Config(Arc<ConfigError>),
    #[error("cannot replace the running gateway: {0}")]
    Replace(#[from] stop::StopError),
    #[error("startup failed: {0}")]
    Startup(String),
    #[error("invalid configuration: {0}")]
    Payload(String),
    #[error("a previous worker still serves this home and did not exit within {0:?}")]
    WorkerBusy(Duration),
}

fn already_running_message(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!(
            "already running (pid {pid}); use `herald stop` first, or `herald run --replace` to take over"
        ),
        None => "already running (the home is locked by a process that has not written its PID record yet)"
            .to_owned(),
    }
}

impl RunError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            RunError::Config(_) | RunError::Payload(_) => ExitCode::Config,
            _ => ExitCode::Failure,
        }
    }
}

/// Runs the gateway in the foreground until a planned stop. Returns the exit code to exit with.
pub fn run(options: RunOptions) -> Result<ExitCode, RunError> {
    let RunOptions {
        home,
        config,
        notifier,
        replace,
        mode,
        payload,
    } = options;
    match mode {
        RunMode::Supervised => crate::supervise::monitor::run_monitor(home, config, &notifier, replace),
        RunMode::Standalone => run_gateway(home, config, &notifier, Role::Standalone, replace, &payload),
        RunMode::Worker { monitor } => {
            run_gateway(home, config, &notifier, Role::Worker { monitor }, false, &payload)
        }
    }
}

/// The serving process: standalone (holds the instance lock) or a monitor's worker (holds the worker
/// lock; the monitor holds the instance lock and the PID record).
fn run_gateway(
    home: Home,
    config: Result<Config, Arc<ConfigError>>,
    notifier: &Notifier,
    role: Role,
    replace: bool,
    payload: &SharedFactory,
) -> Result<ExitCode, RunError> {
    let Started {
        lock,
        mut keeper,
        config,
    } = begin(&home, config, role, replace)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("herald-worker")
        .enable_all()
        .build();
    let runtime = runtime_or_fail(&mut keeper, runtime)?;
    let turns = TurnTracker::new();
    let outcome = runtime.block_on(serve(&mut keeper, &config, notifier, &turns, payload));
    runtime.shutdown_timeout(Duration::from_secs(1));

    let (code, reason) = match outcome {
        Ok(done) => done,
        Err((code, reason)) => {
            fail_startup(&mut keeper, code, &reason);
            return Err(if code == ExitCode::Config {
                RunError::Payload(reason)
            } else {
                RunError::Startup(reason)
            });
        }
    };
    ControlServer::cleanup(&home);
    keeper.finish(code, &reason, GatewayState::Stopped);
    if role == Role::Standalone {
        keeper.remove_pid_record();
    }
    keeper.log_exit(code, &reason);
    drop(lock);
    Ok(code)
}

/// A gateway process that has taken its lock, announced itself and read its config.
pub(crate) struct Started {
    pub lock: InstanceLock,
    pub keeper: RecordKeeper,
    pub config: Config,
}

/// What every process of a gateway does first, in this order: take its lock (the instance lock, or the
/// worker lock for a worker), write the PID record (not a worker: its monitor owns it), record
/// `starting` and the `start` event, install the panic hook, and load the config — a bad config is
/// recorded as `startup_failed` and returned as [`RunError::Config`] (exit 78).
pub(crate) fn begin(
    home: &Home,
    config: Result<Config, Arc<ConfigError>>,
    role: Role,
    replace: bool,
) -> Result<Started, RunError> {
    home.ensure()?;
    let budget = StopBudget::of(config.as_ref().map_err(|e| &**e));
    let (lock, replaced) = match role {
        Role::Worker { .. } => (acquire_worker_lock(home, budget)?, false),
        _ => acquire(home, replace, budget)?,
    };
    let me = herald_process::identity::current();
    let mut keeper = RecordKeeper::new(home.clone(), role, me.clone(), control::endpoint(home));
    if !matches!(role, Role::Worker { .. }) {
        keeper.write_pid_record();
    }
    keeper.transition(GatewayState::Starting, None);
    keeper.log(
        keeper
            .event(EventKind::Start)
            .with("version", env!("CARGO_PKG_VERSION"))
            .with("home", home.root().display().to_string())
            .with("argv", me.cmd.clone())
            .with("replaced", replaced),
    );
    install_panic_hook(home, keeper.pid());
    match config {
        Ok(config) => Ok(Started { lock, keeper, config }),
        Err(e) => {
            fail_startup(&mut keeper, ExitCode::Config, &e.to_string());
            Err(RunError::Config(e))
        }
    }
}

/// Records a runtime that could not be built as a startup failure.
pub(crate) fn runtime_or_fail(
    keeper: &mut RecordKeeper,
    runtime: std::io::Result<tokio::runtime::Runtime>,
) -> Result<tokio::runtime::Runtime, RunError> {
    runtime.map_err(|e| {
        let reason = format!("cannot start the async runtime: {e}");
        fail_startup(keeper, ExitCode::Failure, &reason);
        RunError::Startup(reason)
    })
}

/// A worker waits for a previous worker (orphaned when its monitor was killed, and still draining) to
/// exit, so two workers never serve one home.
fn acquire_worker_lock(home: &Home, budget: StopBudget) -> Result<InstanceLock, RunError> {
    let budget = budget.stop_timeout();
    let deadline = Instant::now() + budget;
    loop {
        match InstanceLock::try_acquire(&home.worker_lock()) {
            Ok(lock) => return Ok(lock),
            Err(LockError::Held(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(RunError::WorkerBusy(budget));
        }
        tracing::warn!("a previous worker still serves this home; waiting for it to exit");
        InstanceLock::wait_released(&home.worker_lock(), remaining).map_err(|source| LockError::Io {
            path: home.worker_lock(),
            source,
        })?;
    }
}

/// Takes the lock, retrying briefly for transient holders, or stopping the holder with `--replace`.
fn acquire(home: &Home, replace: bool, budget: StopBudget) -> Result<(InstanceLock, bool), RunError> {
    let path = home.lock_file();
    let window = Instant::now() + LOCK_RETRY_WINDOW;
    let mut replaced = false;
    loop {
        match InstanceLock::try_acquire(&path) {
            Ok(lock) => return Ok((lock, replaced)),
            Err(LockError::Held(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let holder = verified_holder(home);
        if replace && !replaced {
            let outcome = stop::stop_gateway(
                home,
                &StopOptions {
                    timeout: budget.stop_timeout(),
                    via: StopVia::Auto,
                    restart: false,
                    force: true,
                    requested_by: "herald run --replace".into(),
                },
            )?;
            if let StopOutcome::Stopped { pid, path, elapsed } = outcome {
                let _ = LifecycleLog::new(home.lifecycle_log()).append(
                    &LifecycleEvent::new(EventKind::Replaced, std::process::id())
                        .with("old_pid", pid)
                        .with("path", path.as_str())
                        .with(
                            "elapsed_ms",
                            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                        ),
                );
            }
            replaced = true;
            continue;
        }
        if let Some(pid) = holder {
            return Err(RunError::AlreadyRunning { pid: Some(pid) });
        }
        if Instant::now() >= window {
            return Err(RunError::AlreadyRunning { pid: None });
        }
        std::thread::sleep(LOCK_RETRY_STEP);
    }
}

/// The pid of a live, verified gateway named by the PID record, if any.
fn verified_holder(home: &Home) -> Option<u32> {
    let record =
        herald_home::atomic::read_record::<herald_home::records::PidRecord>(&home.pid_record()).present()?;
    let identity = herald_process::verify(
        record.key(),
        &record.argv,
        record.exe.as_deref(),
        &herald_process::probe(record.pid),
    );
    identity.is_verified().then_some(record.pid)
}

fn fail_startup(keeper: &mut RecordKeeper, code: ExitCode, reason: &str) {
    keeper.finish(code, reason, GatewayState::StartupFailed);
    if !matches!(keeper.role(), Role::Worker { .. }) {
        keeper.remove_pid_record();
    }
    keeper.log(keeper.event(EventKind::StartupFailed).with("error", reason));
    keeper.log_exit(code, reason);
}

/// Records panics (message and location) in the lifecycle log, then defers to the default hook.
fn install_panic_hook(home: &Home, pid: u32) {
    let log = LifecycleLog::new(home.lifecycle_log());
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".into());
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let thread = std::thread::current().name().unwrap_or("unnamed").to_owned();
        let _ = log.append(
            &LifecycleEvent::new(EventKind::Panic, pid)
                .with("message", message)
                .with("location", location)
                .with("thread", thread),
        );
        previous(info);
    }));
}

/// What the main loop hears from outside: control-channel calls, and signals (OS signals, SCM controls,
/// the monitor going away).
struct Inbox {
    calls: mpsc::Receiver<ControlCall>,
    signals: mpsc::UnboundedReceiver<SignalEvent>,
}

/// The async life of the gateway. `Err` is a startup failure; `Ok` the exit code and reason.
async fn serve(
    keeper: &mut RecordKeeper,
    config: &Config,
    notifier: &Notifier,
    turns: &TurnTracker,
    payload: &SharedFactory,
) -> Result<(ExitCode, String), StartFailure> {
    let home = keeper.home().clone();
    let pid = keeper.pid();
    let failure = |reason: String| (ExitCode::Failure, reason);

    let server = ControlServer::bind(&home).map_err(|e| {
        failure(format!(
            "cannot open the control channel {}: {e}",
            control::endpoint(&home)
        ))
    })?;
    let (calls_tx, calls) = mpsc::channel::<ControlCall>(64);
    let server_task = tokio::spawn(server.serve(calls_tx, pid));

    let (signal_tx, signals) = mpsc::unbounded_channel::<SignalEvent>();
    let mut inbox = Inbox { calls, signals };
    let signal_tx_for_monitor = signal_tx.clone();
    // Running as a Windows Service: the SCM's Stop and Preshutdown arrive as stop requests here too.
    notifier.attach(signal_tx.clone());
    signals::listen(signal_tx).map_err(|e| failure(format!("cannot install signal handlers: {e}")))?;

    // Stop markers are watched by whoever owns the PID record: a standalone gateway here, a supervised
    // one's monitor (which forwards the stop). A worker needs no watcher — and exits faster without one:
    // closing an inotify descriptor can hold up process exit for a long time.
    let (marker_tx, mut marker_wake) = mpsc::unbounded_channel::<()>();
    let _watch = if matches!(keeper.role(), Role::Worker { .. }) {
        watch_monitor(signal_tx_for_monitor.clone());
        drop(marker_tx);
        None
    } else {
        // A marker left from before this process started is never for us: clear it before watching.
        clear_old_marker(keeper);
        Some(marker::watch(&home, marker_tx))
    };

    let host = GatewayHost::start(keeper, config, turns, payload).await?;
    let ledger = host.ledger();
    // Push adapters' states go into the state record as they change.
    let mut adapter_changes = host.adapter_board().subscribe();

    keeper.transition(GatewayState::Running, None);
    host.serving();
    keeper.log(
        keeper
            .event(EventKind::Ready)
            .with("control", control::endpoint(&home))
            .with("http", keeper.http_url().unwrap_or_default())
            .with("agent", host.agent_name())
            .with(
                "startup_ms",
                herald_home::time::now_ms().saturating_sub(keeper.started_at_ms()),
            ),
    );
    tracing::info!(pid, home = %home.root().display(), "herald gateway running");
    notifier.ready();
    let mut watchdog = notifier.watchdog();

    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(HEARTBEAT_SECS),
        Duration::from_secs(HEARTBEAT_SECS),
    );
    let order = loop {
        let mut call = None;
        let mut signal = None;
        let mut marker_check = None;
        tokio::select! {
            Some(c) = inbox.calls.recv() => call = Some(c),
            Some(event) = inbox.signals.recv() => signal = Some(event),
            Some(()) = marker_wake.recv() => {
                marker_check = Some(marker::check(keeper.home(), &[keeper.key()], herald_home::time::now_ms()));
            }
            _ = heartbeat.tick() => {}
            Ok(()) = adapter_changes.changed() => {}
            () = watchdog.tick() => continue,
        }
        let heard = match (&call, &signal, &marker_check) {
            (Some(call), _, _) => Heard::Call(&call.request),
            (_, Some(event), _) => Heard::Signal(event),
            (_, _, Some(check)) => Heard::Marker(check),
            _ => Heard::Heartbeat,
        };
        match serve_policy::while_serving(&heard) {
            Step::Reply => reply(call, status_response(keeper, turns)),
            Step::Stop(order) => {
                if let MarkerCheck::Stop(marker) = marker_check.as_ref().unwrap_or(&MarkerCheck::None) {
                    tracing::info!("stop marker from {}", marker.requested_by);
                }
                reply(call, status_response(keeper, turns));
                break order;
            }
            Step::Drain => {
                if let Some(call) = call {
                    drain_on_request(keeper, turns, &ledger, config, notifier, call).await;
                }
            }
            Step::LogAbsorbed(source) => keeper.log(
                keeper
                    .event(EventKind::SignalIgnored)
                    .with("source", source)
                    .with("why", "no console: a spurious interrupt, absorbed"),
            ),
            Step::LogIgnoredMarker(why) => {
                keeper.log(keeper.event(EventKind::MarkerIgnored).with("why", why))
            }
            Step::Heartbeat => keeper.heartbeat(turns.in_flight()),
            Step::Nothing => {}
        }
    };
    let result = shutdown(keeper, turns, &ledger, config, notifier, order, &mut inbox).await;
    host.stop().await;
    server_task.abort();
    Ok(result)
}

/// Answers a call, if there was one (a client that hung up is not an error).
fn reply(call: Option<ControlCall>, response: Response) {
    if let Some(call) = call {
        let _ = call.reply.send(response);
    }
}

/// The control channel's `drain`: refuse new turns, record the in-flight set, and answer once the drain
/// is over (the gateway keeps running; a stop still has to be asked for).
async fn drain_on_request(
    keeper: &mut RecordKeeper,
    turns: &TurnTracker,
    ledger: &dyn ResumeLedger,
    config: &Config,
    notifier: &Notifier,
    call: ControlCall,
) {
    let at_start = begin_drain(keeper, turns, ledger, notifier, "control_channel").await;
    let turns = turns.clone();
    let budget = Duration::from_secs(config.gateway.drain_timeout_secs);
    let pid = keeper.pid();
    tokio::spawn(async move {
        let report = turns.finish_drain(&at_start, budget).await;
        let _ = call.reply.send(Response {
            ok: true,
            pid,
            state: Some(GatewayState::Draining),
            in_flight: Some(turns.in_flight()),
            drain: Some(DrainSummary {
                finished: report.finished,
                cut: report.cut,
            }),
            ..Response::default()
        });
    });
}

fn status_response(keeper: &RecordKeeper, turns: &TurnTracker) -> Response {
    Response {
        ok: true,
        pid: keeper.pid(),
        state: Some(keeper.state()),
        in_flight: Some(turns.in_flight()),
        uptime_ms: Some(herald_home::time::now_ms().saturating_sub(keeper.started_at_ms())),
        ..Response::default()
    }
}

/// A marker left from before this process started is never for it: cleared (and an ignored one logged).
fn clear_old_marker(keeper: &RecordKeeper) {
    if let MarkerCheck::Ignored { why } =
        marker::check(keeper.home(), &[keeper.key()], herald_home::time::now_ms())
    {
        keeper.log(keeper.event(EventKind::MarkerIgnored).with("why", why));
    }
}

/// A worker's stdin is a pipe from its monitor that is never written to: end-of-file means the monitor is
/// gone (killed, say), and the worker then stops in a planned way instead of serving unsupervised.
fn watch_monitor(events: mpsc::UnboundedSender<SignalEvent>) {
    let spawned = std::thread::Builder::new()
        .name("herald-monitor-watch".into())
        .spawn(move || {
            use std::io::Read;
            let mut sink = [0u8; 64];
            let mut stdin = std::io::stdin().lock();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            let _ = events.send(SignalEvent {
                source: StopSource::MonitorGone,
                disposition: Disposition::Stop,
            });
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot watch the monitor: {e}");
    }
}

/// Records the in-flight set and refuses new turns. Idempotent.
async fn begin_drain(
    keeper: &mut RecordKeeper,
    turns: &TurnTracker,
    ledger: &dyn ResumeLedger,
    notifier: &Notifier,
    source: &str,
) -> Vec<herald_gateway::TurnInfo> {
    let first = !turns.is_draining();
    if first {
        notifier.stopping();
    }
    let at_start = turns.begin_drain(Some(ledger)).await.unwrap_or_else(|e| {
        tracing::warn!("cannot record in-flight turns for resume: {e}");
        Vec::new()
    });
    if first {
        keeper.transition(GatewayState::Draining, None);
        keeper.heartbeat(at_start.len());
        keeper.log(
            keeper
                .event(EventKind::DrainBegin)
                .with("in_flight", at_start.len())
                .with(
                    "turns",
                    at_start.iter().map(|t| t.label.clone()).collect::<Vec<_>>(),
                )
                .with("source", source),
        );
    }
    at_start
}

/// The one place a planned stop is carried out.
async fn shutdown(
    keeper: &mut RecordKeeper,
    turns: &TurnTracker,
    ledger: &dyn ResumeLedger,
    config: &Config,
    notifier: &Notifier,
    order: StopOrder,
    inbox: &mut Inbox,
) -> (ExitCode, String) {
    let source = order.source.describe();
    keeper.log(
        keeper
            .event(EventKind::StopRequested)
            .with("source", source.as_str())
            .with("restart", order.restart),
    );
    tracing::info!("stop requested ({source}); draining");
    let started = Instant::now();
    let at_start = begin_drain(keeper, turns, ledger, notifier, &source).await;
    let budget = Duration::from_secs(config.gateway.drain_timeout_secs);
    let drain = turns.finish_drain(&at_start, budget);
    tokio::pin!(drain);
    // A drain may outlast WatchdogSec: keep pinging while it runs.
    let mut watchdog = notifier.watchdog();
    let (report, cut_short_by) = loop {
        tokio::select! {
            report = &mut drain => break (report, None),
            () = watchdog.tick() => {}
            Some(call) = inbox.calls.recv() => {
                if serve_policy::while_draining(&Heard::Call(&call.request)) == DrainStep::Reply {
                    reply(Some(call), status_response(keeper, turns));
                }
            }
            Some(event) = inbox.signals.recv() => {
                if let DrainStep::CutShort(by) = serve_policy::while_draining(&Heard::Signal(&event)) {
                    break (turns.report(&at_start), Some(by));
                }
            }
        }
    };
    let mut end = keeper
        .event(EventKind::DrainEnd)
        .with("finished", report.finished)
        .with("cut", report.cut)
        .with(
            "elapsed_ms",
            u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        );
    if let Some(by) = cut_short_by {
        end = end.with("cut_short_by", by);
    }
    keeper.log(end);
    let code = if order.restart {
        ExitCode::Restart
    } else {
        ExitCode::Ok
    };
    let reason = format!("planned stop ({source})");
    (code, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_are_recorded_with_message_and_location() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        home.ensure().unwrap();
        install_panic_hook(&home, 4242);
        let _ = std::thread::Builder::new()
            .name("turn".into())
            .spawn(|| panic!("boom in a turn"))
            .unwrap()
            .join();
        drop(std::panic::take_hook());
        let (events, bad) = herald_home::lifecycle::read_events(&home.lifecycle_log()).unwrap();
        assert!(bad.is_empty());
        let panic = events
            .iter()
            .find(|e| {
                e.event == "panic" && e.field("message").and_then(|m| m.as_str()) == Some("boom in a turn")
            })
            .unwrap_or_else(|| panic!("{events:#?}"));
        assert_eq!(panic.pid, 4242);
        let location = panic.field("location").and_then(|l| l.as_str()).unwrap();
        assert!(location.contains("run.rs"), "{location}");
        assert_eq!(panic.field("thread").and_then(|t| t.as_str()), Some("turn"));
    }

    #[test]
    fn already_running_messages() {
        assert!(already_running_message(Some(12)).contains("already running (pid 12)"));
        assert!(already_running_message(None).contains("already running"));
    }
}
