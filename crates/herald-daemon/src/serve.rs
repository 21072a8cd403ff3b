//! The serving gateway from its lock to its exit.
//!
//! 1. [`crate::startup::begin`]: lock, records, config;
//! 2. bind the control channel, listen for signals and markers, host the gateway, then `running` and the
//!    `ready` event (and the notifier's ready);
//! 3. the main loop waits, and [`crate::serve_policy`] decides what each thing it hears means;
//! 4. on the first stop order from any source: record the in-flight set, drain within the budget, write
//!    `stopped` with the exit code, remove the PID record and socket, and only then release the lock.
//!
//! **Architecture Invariant:** there is exactly one place a stop is carried out (`shutdown` below), reached
//! from every stop source, so the drain happens once whichever path asked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_gateway::{ResumeLedger, TurnCounts, TurnTracker};
use herald_home::config::{Config, ConfigError};
use herald_home::lifecycle::EventKind;
use herald_home::records::GatewayState;
use herald_home::{ExitCode, Home};
use tokio::sync::{mpsc, watch};

use crate::beat::Beat;
use crate::config_wait::{self, Baseline, Since, Waited};
use crate::control::{ControlCall, ControlServer};
use crate::host::GatewayHost;
use crate::lock_watch::{HeldLock, LockChecker};
use crate::marker::{self, MarkerCheck};
use crate::memory;
use crate::payload::SharedFactory;
use crate::readiness::Notifier;
use crate::run::OnFatalStart;
use crate::serve_policy::{self, DrainStep, Heard, Step, StopOrder};
use crate::signals::{self, Disposition, SignalEvent, StopSource};
use crate::startup::{Claimed, RunError, StartError, claim, fail_startup, runtime_or_fail};
use crate::state::{HEARTBEAT_SECS, RecordKeeper, Role};
use herald_process::control::{self, DrainSummary, Response};

/// The serving process: standalone (holds the instance lock) or a monitor's worker (holds the worker
/// lock; the monitor holds the instance lock and the PID record). With [`OnFatalStart::Wait`] a start that
/// fails with exit 78 waits for a fix (`crate::config_wait`) and is tried again, keeping the lock.
pub(crate) fn run_gateway(
    home: Home,
    config: Result<Config, Arc<ConfigError>>,
    notifier: &Notifier,
    role: Role,
    replace: bool,
    payload: &SharedFactory,
    on_fatal: OnFatalStart,
) -> Result<ExitCode, RunError> {
    let wait = on_fatal == OnFatalStart::Wait && role == Role::Standalone;
    let Claimed { lock, mut keeper } = claim(&home, crate::startup::stop_budget(&config), role, replace)?;
    // The instance lock is kept in place where it is held (standalone: by the marker watch); a worker's
    // own lock is not watched (a worker holds no file-notification descriptor).
    let lock = HeldLock::new(&home, lock, role.as_str());
    let mut config = match config {
        Ok(config) => config,
        Err(e) if wait => match wait_for_fix(&mut keeper, &e.to_string(), Since::Unknown)? {
            Ok(config) => config,
            Err((code, reason)) => return Ok(finish(&home, keeper, role, lock, code, &reason)),
        },
        Err(e) => {
            fail_startup(&mut keeper, ExitCode::Config, &e.to_string());
            return Err(RunError::Config(e));
        }
    };
    let (code, reason) = loop {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("herald-worker")
            .enable_all()
            .build();
        let runtime = runtime_or_fail(&mut keeper, runtime)?;
        let turns = TurnTracker::with_limit(config.agent.concurrent_turns());
        keeper.set_turn_slots(turns.limit());
        // What a fix must change, should this attempt fail: the files as they are before it reads them.
        let before = wait.then(|| Baseline::now(&home));
        let outcome = runtime.block_on(serve(
            &mut keeper,
            &config,
            notifier,
            &turns,
            payload,
            lock.checker(),
        ));
        runtime.shutdown_timeout(Duration::from_secs(1));
        match outcome {
            Ok(done) => break done,
            Err(error) if wait && error.exit_code() == ExitCode::Config => {
                let since = before.map_or(Since::Unknown, Since::Before);
                match wait_for_fix(&mut keeper, &error.to_string(), since)? {
                    Ok(fixed) => config = fixed,
                    Err(stopped) => break stopped,
                }
            }
            Err(error) => {
                fail_startup(&mut keeper, error.exit_code(), &error.to_string());
                return Err(RunError::Start(error));
            }
        }
    };
    Ok(finish(&home, keeper, role, lock, code, &reason))
}

/// Records the end of a gateway that held its lock, releasing the lock last.
fn finish(
    home: &Home,
    mut keeper: RecordKeeper,
    role: Role,
    lock: HeldLock,
    code: ExitCode,
    reason: &str,
) -> ExitCode {
    ControlServer::cleanup(home);
    keeper.finish(code, reason, GatewayState::Stopped);
    if role == Role::Standalone {
        keeper.remove_pid_record();
    }
    keeper.log_exit(code, reason);
    drop(lock);
    code
}

/// Waits, idle in `startup_failed`, for a config that loads (`Ok`) or a stop (`Err` with the exit code and
/// reason). A wait that cannot even be set up fails the start as it would have failed without it.
fn wait_for_fix(
    keeper: &mut RecordKeeper,
    reason: &str,
    since: Since,
) -> Result<Result<Config, (ExitCode, String)>, RunError> {
    match config_wait::until_fixed(keeper, reason, since) {
        Ok(Waited::Fixed(config)) => {
            keeper.transition(GatewayState::Starting, None);
            Ok(Ok(*config))
        }
        Ok(Waited::Stopped { code, reason }) => Ok(Err((code, reason))),
        Err(error) => {
            fail_startup(
                keeper,
                error.exit_code(),
                &format!("{reason} (and cannot wait for a fix: {error})"),
            );
            Err(RunError::Start(error))
        }
    }
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
    lock: LockChecker,
) -> Result<(ExitCode, String), StartError> {
    let home = keeper.home().clone();
    let pid = keeper.pid();

    let server = ControlServer::bind(&home).map_err(|source| StartError::ControlChannel {
        endpoint: control::endpoint(&home),
        source,
    })?;
    let (calls_tx, calls) = mpsc::channel::<ControlCall>(64);
    let server_task = tokio::spawn(server.serve(calls_tx, pid));

    let (signal_tx, signals) = mpsc::unbounded_channel::<SignalEvent>();
    let mut inbox = Inbox { calls, signals };
    let signal_tx_for_monitor = signal_tx.clone();
    // Running as a Windows Service: the SCM's Stop and Preshutdown arrive as stop requests here too.
    notifier.attach(signal_tx.clone());
    signals::listen(signal_tx).map_err(StartError::Signals)?;

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
        Some(marker::watch(&home, marker_tx, Some(lock)))
    };

    let host = GatewayHost::start(keeper, config, turns, payload).await?;
    let ledger = host.ledger();
    // The adapters' and the agent's health go into the state record as they change, and so do the turn
    // counts (at most once a second: `status` shows the line without a write per turn).
    let mut health_changes = host.health_board().subscribe();
    // And so does the view of the replicas sharing the journal, when it changes.
    let mut cluster_changes = host.engine().cluster().map(|cluster| cluster.view());
    if let Some(view) = &cluster_changes {
        keeper.set_cluster(view.clone());
    }
    // And the journal's database outage, when its journal is on a server.
    let mut outage_changes = host.journal_outages();
    if let Some(outage) = &outage_changes {
        keeper.set_journal_outages(outage.clone());
    }
    let mut count_changes = throttled(turns.subscribe(), COUNTS_REFRESH);

    // A worker's loop beats for its monitor's watchdog (`crate::beat`): a wedged loop stops the beats.
    // The first beat goes now, so a worker seen `running` is already watched.
    let mut beat = match keeper.role() {
        Role::Worker { .. } => Beat::from_env(),
        _ => Beat::none(),
    };
    // Ready for traffic first: whoever sees `running` in the state record finds `/readyz` answering 200.
    host.serving();
    keeper.transition(GatewayState::Running, None);
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

    // A replica sharing its journal stops at once if another replica took its turns over (see
    // `herald_gateway::cluster`): nothing it still runs is its own.
    let mut lost = host.engine().cluster().map(|cluster| cluster.lost());
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
            _ = heartbeat.tick() => memory::release_free_memory(),
            Ok(()) = health_changes.changed() => {}
            () = view_changed(&mut cluster_changes) => {}
            () = view_changed(&mut outage_changes) => {}
            Some(()) = count_changes.recv() => {}
            () = watchdog.tick() => continue,
            () = beat.tick() => continue,
            why = lost_standing(&mut lost) => {
                tracing::error!("stopping at once: {why}");
                turns.begin_drain(None).await.ok();
                host.stop().await;
                server_task.abort();
                return Ok((ExitCode::Failure, why));
            }
        }
        let heard = match (&call, &signal, &marker_check) {
            (Some(call), _, _) => Heard::Call(&call.request),
            (_, Some(event), _) => Heard::Signal(event),
            (_, _, Some(check)) => Heard::Marker(check),
            _ => Heard::Heartbeat,
        };
        match serve_policy::while_serving(&heard) {
            Step::Reply => {
                let mut response = status_response(keeper, turns);
                response.agent = Some(host.agent_status());
                response.adapters = Some(host.health_board().adapters());
                reply(call, response);
            }
            Step::RestartAdapter(name) => {
                keeper.log(
                    keeper
                        .event(EventKind::AdapterRestart)
                        .with("adapter", name.as_str())
                        .with("source", "control_channel"),
                );
                // The restart waits for the adapter's tasks to stop: answered from a task of its own, so
                // the loop keeps serving meanwhile.
                let restart = host.restart_adapter(&name);
                let done = status_response(keeper, turns);
                tokio::spawn(async move {
                    let response = match restart.await {
                        Ok(()) => done,
                        Err(why) => Response::error(pid, why),
                    };
                    reply(call, response);
                });
            }
            Step::RetryDelivery(turn_id) => {
                let engine = host.engine();
                let done = status_response(keeper, turns);
                tokio::spawn(async move {
                    let response = match engine.retry_delivery(turn_id).await {
                        Ok(true) => done,
                        Ok(false) => Response::error(pid, format!("turn {turn_id} has no reply set aside")),
                        Err(e) => Response::error(pid, format!("cannot take the reply back: {e}")),
                    };
                    reply(call, response);
                });
            }
            Step::CheckTurn => {
                let engine = host.engine();
                let done = status_response(keeper, turns);
                tokio::spawn(async move {
                    let response = match engine.check_turn().await {
                        Ok(()) => done,
                        Err(e) => Response::error(pid, format!("the check turn failed: {e}")),
                    };
                    reply(call, response);
                });
            }
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
            Step::Reload(source) => {
                let response = reload_on_request(keeper, turns, &host, &source).await;
                reply(call, response);
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
            Step::Heartbeat => keeper.heartbeat(turns.counts()),
            Step::Nothing => {}
        }
    };
    let result = shutdown(keeper, turns, &ledger, config, notifier, order, &mut inbox).await;
    host.stop().await;
    server_task.abort();
    Ok(result)
}

/// Resolves when a watched view changes (never, when there is none to watch).
async fn view_changed<T>(view: &mut Option<watch::Receiver<T>>) {
    let Some(receiver) = view else {
        return std::future::pending().await;
    };
    if receiver.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Resolves once the replica lost its standing among those sharing the journal (never, for a journal of
/// one gateway).
async fn lost_standing(lost: &mut Option<watch::Receiver<Option<String>>>) -> String {
    let Some(receiver) = lost else {
        return std::future::pending().await;
    };
    loop {
        if let Some(why) = receiver.borrow_and_update().clone() {
            return why;
        }
        if receiver.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// The least time between two state-record writes caused by turn counts changing.
const COUNTS_REFRESH: Duration = Duration::from_secs(1);

/// Wakes (through the returned receiver) after the counts change, at most once per `every`: a change
/// is reported `every` after it, with whatever happened meanwhile. An idle gateway is not woken.
fn throttled(mut counts: watch::Receiver<TurnCounts>, every: Duration) -> mpsc::Receiver<()> {
    let (wake, woken) = mpsc::channel(1);
    tokio::spawn(async move {
        while counts.changed().await.is_ok() {
            tokio::time::sleep(every).await;
            counts.mark_unchanged();
            if wake.send(()).await.is_err() {
                return;
            }
        }
    });
    woken
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

/// Carries out a reload (see `crate::reload`), records it, and builds the answer: what was applied and
/// what needs a restart, or why nothing changed.
async fn reload_on_request(
    keeper: &RecordKeeper,
    turns: &TurnTracker,
    host: &GatewayHost,
    source: &str,
) -> Response {
    let event = keeper.event(EventKind::Reload).with("source", source);
    match host.reload(keeper.home()).await {
        Ok(summary) => {
            tracing::info!(
                "reloaded ({source}): applied [{}]; needs a restart: [{}]",
                summary.applied.join(", "),
                summary.restart_needed.join(", ")
            );
            keeper.log(
                event
                    .with("applied", summary.applied.clone())
                    .with("restart_needed", summary.restart_needed.clone()),
            );
            Response {
                reload: Some(summary),
                ..status_response(keeper, turns)
            }
        }
        Err(why) => {
            tracing::warn!("reload ({source}) refused, nothing changed: {why}");
            keeper.log(event.with("error", why.as_str()));
            Response::error(keeper.pid(), format!("reload refused, nothing changed: {why}"))
        }
    }
}

fn status_response(keeper: &RecordKeeper, turns: &TurnTracker) -> Response {
    Response {
        ok: true,
        pid: keeper.pid(),
        state: Some(keeper.state()),
        gateway_pid: Some(keeper.gateway_pid()),
        in_flight: Some(turns.in_flight()),
        queued: Some(turns.counts().queued),
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
        keeper.heartbeat(turns.counts());
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
                match serve_policy::while_draining(&Heard::Call(&call.request)) {
                    DrainStep::Reply => reply(Some(call), status_response(keeper, turns)),
                    DrainStep::Refuse(why) => {
                        let pid = keeper.pid();
                        reply(Some(call), Response::error(pid, why));
                    }
                    _ => {}
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
