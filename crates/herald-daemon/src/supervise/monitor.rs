//! The monitor process: lock, PID record, then a loop of "start a worker, wait for it, decide".
//!
//! The worker's stderr is relayed to the monitor's stderr as it comes (one write per read) and its last
//! lines are kept, so a crash loop is recorded with what the worker said before dying. Stop requests that
//! reach the monitor (signals; a stop marker while no worker runs) are forwarded to the worker once — on
//! Unix as the same signal (SIGTERM for a marker), the control channel on Windows — and the monitor then
//! exits with the worker's planned-stop code instead of restarting it. SIGHUP is passed on as a `reload`
//! call.
//!
//! Hosted by a Windows Service (`run --windows-service`), the monitor is the service's process: the SCM's
//! Stop and Preshutdown reach it as stop requests, it reports the service running once its first worker
//! serves and stop pending when a planned stop begins, and its exit code is the service's.
//!
//! The watchdog ([`super::watchdog`]): the worker's stdout is a pipe on which its main loop beats; the
//! monitor reads it and sleeps until the beat deadline, which every beat moves. A worker silent past it is
//! recorded (`wedged`: the silence, its turn counts, on Linux what each of its threads is doing), killed
//! after its identity is verified, and its exit takes the normal path of an unexpected one. Under systemd
//! (the monitor as the main process with `WatchdogSec`) `WATCHDOG=1` is sent only while the worker beats;
//! under the SCM, which has no watchdog, the monitor's own is the only one.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_home::config::{Config, ConfigError};
use herald_home::lifecycle::EventKind;
use herald_home::records::{
    GatewayState, MonitorPhase, MonitorRecord, ProcessKey, StateRecord, StopMarker, WorkerRecord,
};
use herald_home::time::now_ms;
use herald_home::{ExitCode, Home};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::mpsc;

use super::policy::{Decision, RestartPolicy, Supervisor, WorkerExit, spawn_retry_delay};
use super::watchdog::{BeatWatch, Verdict, WatchdogPolicy, wedged_reason};
use crate::beat::BEAT_ENV;
use crate::lock_watch::{HeldLock, LockChecker};
use crate::marker::{self, MarkerCheck};
use crate::readiness::{Notifier, Watchdog};
use crate::signals::{self, Disposition, SignalEvent, StopSource};
use crate::startup::{RunError, Started, begin, runtime_or_fail};
use crate::state::{RecordKeeper, Role};

/// Asks the serving worker to reload, through the control channel it answers (in the background: the
/// monitor keeps watching its worker meanwhile).
fn forward_reload(home: &Home) {
    let home = home.clone();
    tokio::spawn(async move {
        let request = herald_process::control::Request::Reload;
        match herald_process::control::call_async(&home, request, Duration::from_secs(30)).await {
            Ok(reply) if reply.ok => {}
            Ok(reply) => tracing::warn!("reload: {}", reply.error.unwrap_or_default()),
            Err(e) => tracing::warn!("cannot pass the reload to the worker: {e}"),
        }
    });
}

/// Environment variable through which a worker learns its monitor's identity (`pid:start_time`).
pub const MONITOR_ENV: &str = "HERALD_MONITOR";
/// Lines of worker stderr kept for the crash-loop event.
const STDERR_TAIL: usize = 20;

#[cfg(unix)]
#[path = "unix.rs"]
mod os;
#[cfg(windows)]
#[path = "windows.rs"]
mod os;

/// How often a monitor hosted by a Windows Service looks for its worker's readiness while the start is
/// pending (never after).
const READY_POLL: Duration = Duration::from_millis(50);

/// Reports the service running ([`Notifier::ready`]) once the worker `worker_pid` serves, as its
/// state record says: the same moment a standalone gateway reports it. Ends when reported, or when the
/// start is no longer pending (a stop came first).
async fn report_ready_when_serving(home: Home, worker_pid: u32, notifier: Notifier) {
    while notifier.awaiting_ready() {
        let state = herald_home::atomic::read_record::<StateRecord>(&home.state_record()).present();
        if state.is_some_and(|s| s.state == GatewayState::Running && s.worker_pid == Some(worker_pid)) {
            notifier.ready();
            return;
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

pub fn run_monitor(
    home: Home,
    config: Result<Config, Arc<ConfigError>>,
    notifier: &Notifier,
    replace: bool,
) -> Result<ExitCode, RunError> {
    let Started {
        lock,
        mut keeper,
        config,
    } = begin(&home, config, Role::Monitor, replace)?;
    let lock = HeldLock::new(&home, lock, Role::Monitor.as_str());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let runtime = runtime_or_fail(&mut keeper, runtime)?;
    let mut monitor = Monitor {
        lock: lock.checker(),
        keeper,
        restarts: 0,
        last_restart_reason: None,
    };
    let (code, reason) = runtime.block_on(monitor.supervise(&config, notifier));
    runtime.shutdown_timeout(Duration::from_secs(1));

    let keeper = &mut monitor.keeper;
    // A worker that stopped cleanly wrote `stopped` itself; one that died did not.
    let state = herald_home::atomic::read_record::<StateRecord>(&home.state_record()).present();
    if state.is_none_or(|s| s.state.claims_alive() || s.pid != keeper.pid()) {
        keeper.finish(code, &reason, GatewayState::Stopped);
    }
    monitor.write_monitor_record(MonitorPhase::Stopped, None);
    let keeper = &mut monitor.keeper;
    keeper.remove_pid_record();
    keeper.log_exit(code, &reason);
    drop(lock);
    Ok(code)
}

struct Monitor {
    /// Keeps the instance lock in place (run by the marker watch).
    lock: LockChecker,
    keeper: RecordKeeper,
    restarts: u32,
    last_restart_reason: Option<String>,
}

impl Monitor {
    async fn supervise(&mut self, config: &Config, notifier: &Notifier) -> (ExitCode, String) {
        let home = self.keeper.home().clone();
        let (signal_tx, mut signals_rx) = mpsc::unbounded_channel::<SignalEvent>();
        // Hosted by a Windows Service: the SCM's Stop and Preshutdown arrive as stop requests here too.
        notifier.attach(signal_tx.clone());
        os::adopt_orphans();
        let mut orphans = os::Orphans::watch();
        if let Err(e) = signals::listen(signal_tx) {
            return (ExitCode::Failure, format!("cannot install signal handlers: {e}"));
        }
        let (marker_tx, mut marker_wake) = mpsc::unbounded_channel::<()>();
        // A marker left from before this monitor started is never for it: clear it before watching.
        self.check_marker();
        let _watch = marker::watch(&home, marker_tx, Some(self.lock.clone()));
        let mut supervisor = Supervisor::new(RestartPolicy {
            max_exits: config.supervisor.crash_loop_max_exits,
            window: Duration::from_secs(config.supervisor.crash_loop_window_secs),
        });
        let watchdog = WatchdogPolicy::from_config(&config.supervisor);
        // systemd's watchdog over the monitor itself (the main process of a unit with `WatchdogSec`).
        let mut sd_watchdog = notifier.watchdog();

        // Spawns that failed in a row (see [`spawn_retry_delay`]).
        let mut spawn_failures = 0;
        loop {
            let mut child = match os::spawn_worker(self.worker_command(&home, watchdog)) {
                Ok(child) => {
                    spawn_failures = 0;
                    child
                }
                Err(e) => {
                    spawn_failures += 1;
                    let Some(delay) = spawn_retry_delay(spawn_failures) else {
                        let why = format!(
                            "cannot start the worker: {e} ({})",
                            herald_home::words::count(u64::from(spawn_failures), "attempt", "attempts")
                        );
                        return (ExitCode::Failure, why);
                    };
                    self.keeper.log(
                        self.keeper
                            .event(EventKind::WorkerSpawnFailed)
                            .with("error", e.to_string())
                            .with("attempt", spawn_failures)
                            .with(
                                "retry_in_ms",
                                u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                            ),
                    );
                    tracing::warn!("cannot start the worker: {e}; trying again in {delay:?}");
                    if let Some(stop) = self
                        .backoff(delay, &mut signals_rx, &mut marker_wake, &mut sd_watchdog)
                        .await
                    {
                        return (ExitCode::Ok, stop);
                    }
                    continue;
                }
            };
            let worker_pid = child.id().unwrap_or(0);
            // Held open for the worker's life: its end-of-file tells the worker the monitor is gone.
            let stdin = child.stdin.take();
            let tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
            let relay = child
                .stderr
                .take()
                .map(|stderr| tokio::spawn(relay_stderr(stderr, tail.clone())));
            // Under the SCM, "running" is reported once the first worker serves.
            let ready_watch = notifier.awaiting_ready().then(|| {
                tokio::spawn(report_ready_when_serving(
                    home.clone(),
                    worker_pid,
                    notifier.clone(),
                ))
            });
            let worker = worker_record(worker_pid);
            let mut beats = BeatReader(child.stdout.take());
            let mut watch = watchdog.map(BeatWatch::new);
            // Set once the watchdog killed this worker: the reason its exit and restart carry.
            let mut wedged: Option<String> = None;
            self.write_monitor_record(MonitorPhase::Supervising, worker.clone());
            self.keeper.log(
                self.keeper
                    .event(EventKind::WorkerSpawned)
                    .with("worker_pid", worker_pid)
                    .with("restarts", self.restarts),
            );
            let started = Instant::now();
            let mut planned = false;
            // A stop marker asking for a restart: stop this worker and start a new one.
            let mut restart_requested = false;

            let exit = loop {
                // A worker that was asked to stop, or already killed, is not watched any more.
                let deadline = watch
                    .as_ref()
                    .filter(|_| !planned && wedged.is_none())
                    .and_then(BeatWatch::deadline);
                tokio::select! {
                    status = child.wait() => break to_worker_exit(status),
                    () = orphans.reap(worker_pid) => {}
                    () = beats.next() => {
                        if let Some(watch) = watch.as_mut()
                            && let Some(late) = watch.on_beat(Instant::now())
                        {
                            self.keeper.log(self.keeper.event(EventKind::WatchdogLate)
                                .with("worker_pid", worker_pid)
                                .with("gap_ms", millis(late.gap))
                                .with("limit_ms", millis(watch.policy().limit())));
                        }
                    }
                    () = until(deadline) => {
                        if let Some(watch) = watch.as_mut() {
                            wedged = self.on_silence(watch, worker_pid, worker.as_ref(), &mut child);
                        }
                    }
                    () = sd_watchdog.due() => {
                        if watch.as_ref().is_none_or(|w| w.beating(Instant::now())) {
                            sd_watchdog.ping();
                        }
                    }
                    Some(event) = signals_rx.recv() => match event.disposition {
                        Disposition::Stop => {
                            if !planned {
                                self.keeper.log(self.keeper.event(EventKind::StopRequested)
                                    .with("source", event.source.describe())
                                    .with("restart", false));
                            }
                            planned = true;
                            notifier.stopping();
                            os::forward_stop(&mut child, &home, event.source).await;
                        }
                        Disposition::Absorb => self.keeper.log(self.keeper.event(EventKind::SignalIgnored)
                            .with("source", event.source.describe())),
                        // SIGHUP to the monitor (the pid the records name): the worker reloads.
                        Disposition::Reload => forward_reload(&home),
                    },
                    Some(()) = marker_wake.recv() => {
                        if let Some(marker) = self.check_marker() {
                            if !planned {
                                self.keeper.log(self.keeper.event(EventKind::StopRequested)
                                    .with("source", "marker")
                                    .with("restart", marker.restart)
                                    .with("requested_by", marker.requested_by.as_str()));
                            }
                            planned = true;
                            restart_requested |= marker.restart;
                            if !restart_requested {
                                notifier.stopping();
                            }
                            os::forward_stop(&mut child, &home, StopSource::Marker).await;
                        }
                    }
                }
            };
            drop(stdin);
            if let Some(watch) = ready_watch {
                watch.abort();
            }
            if let Some(relay) = relay {
                let _ = relay.await;
            }
            // What the worker left behind (a killed worker's agents) ends before anything runs again.
            let orphans = os::end_orphans();
            if orphans > 0 {
                self.keeper.log(
                    self.keeper
                        .event(EventKind::OrphansEnded)
                        .with("processes", orphans)
                        .with("worker_pid", worker_pid),
                );
            }
            let ran_for = started.elapsed();
            let decision = match supervisor.on_exit(exit, ran_for, Instant::now(), planned) {
                Decision::Exit(ExitCode::Ok) if restart_requested => Decision::Restart {
                    delay: Duration::ZERO,
                    reason: "restart requested (stop marker)".into(),
                },
                other => other,
            };
            // Killed by the watchdog: an unexpected exit like any other, but the reason is the wedge.
            let decision = match (decision, &wedged) {
                (Decision::Restart { delay, .. }, Some(why)) => Decision::Restart {
                    delay,
                    reason: why.clone(),
                },
                (Decision::CrashLoop { exits, .. }, Some(why)) => Decision::CrashLoop {
                    exits,
                    reason: why.clone(),
                },
                (other, _) => other,
            };
            let stderr_tail: Vec<String> = tail
                .lock()
                .map(|t| t.iter().cloned().collect())
                .unwrap_or_default();
            let mut event = self
                .keeper
                .event(EventKind::WorkerExit)
                .with("worker_pid", worker_pid)
                .with("exit", exit.describe())
                .with("ran_ms", u64::try_from(ran_for.as_millis()).unwrap_or(u64::MAX))
                // Planned: the monitor forwarded a stop, or the worker was asked directly (its control
                // channel) and ended with a planned code — 0 for a stop, 75 for a restart.
                .with("planned", planned || exit.is_planned());
            match exit {
                WorkerExit::Code(code) => event = event.with("code", code),
                WorkerExit::Signal(signal) => event = event.with("signal", signal),
            }
            if let Some(why) = &wedged {
                event = event.with("reason", why.as_str());
            }
            if let Some(watch) = &watch {
                event = event.with("largest_beat_gap_ms", millis(watch.largest_gap()));
            }
            self.keeper.log(event);

            match decision {
                Decision::Exit(code) => {
                    return (code, format!("{} (worker {})", code.name(), exit.describe()));
                }
                Decision::CrashLoop { exits, reason } => {
                    let why = format!(
                        "crash loop: {} within {}s; last: {reason}",
                        herald_home::words::count(
                            u64::try_from(exits).unwrap_or(u64::MAX),
                            "unexpected worker exit",
                            "unexpected worker exits"
                        ),
                        config.supervisor.crash_loop_window_secs
                    );
                    self.keeper.log(
                        self.keeper
                            .event(EventKind::CrashLoop)
                            .with("exits", exits)
                            .with("window_secs", config.supervisor.crash_loop_window_secs)
                            .with("last_exit", exit.describe())
                            .with("stderr_tail", stderr_tail),
                    );
                    self.write_monitor_record(MonitorPhase::CrashLooping, None);
                    self.keeper
                        .finish(ExitCode::Failure, &why, GatewayState::CrashLooping);
                    return (ExitCode::Failure, why);
                }
                Decision::Restart { delay, reason } => {
                    self.restarts += 1;
                    self.last_restart_reason = Some(reason.clone());
                    self.write_monitor_record(MonitorPhase::Backoff, None);
                    self.keeper.log(
                        self.keeper
                            .event(EventKind::RestartScheduled)
                            .with("delay_ms", u64::try_from(delay.as_millis()).unwrap_or(u64::MAX))
                            .with("reason", reason.as_str())
                            .with("restarts", self.restarts)
                            .with("stderr_tail", stderr_tail),
                    );
                    if let Some(stop) = self
                        .backoff(delay, &mut signals_rx, &mut marker_wake, &mut sd_watchdog)
                        .await
                    {
                        return (ExitCode::Ok, stop);
                    }
                }
            }
        }
    }

    /// Sleeps before the next worker, unless a stop arrives first (then returns its description).
    async fn backoff(
        &mut self,
        delay: Duration,
        signals_rx: &mut mpsc::UnboundedReceiver<SignalEvent>,
        marker_wake: &mut mpsc::UnboundedReceiver<()>,
        sd_watchdog: &mut Watchdog,
    ) -> Option<String> {
        // A marker may already be waiting (written while the last worker was dying).
        if self.check_marker().is_some() {
            self.keeper.log(
                self.keeper
                    .event(EventKind::StopRequested)
                    .with("source", "marker"),
            );
            return Some("planned stop (marker) while no worker ran".into());
        }
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return None,
                // No worker to watch: the monitor's own loop is what systemd's watchdog hears.
                () = sd_watchdog.tick() => {}
                Some(event) = signals_rx.recv() => if event.disposition == Disposition::Stop {
                    let source = event.source.describe();
                    self.keeper.log(self.keeper.event(EventKind::StopRequested).with("source", source.as_str()));
                    return Some(format!("planned stop ({source}) while no worker ran"));
                },
                Some(()) = marker_wake.recv() => {
                    if self.check_marker().is_some() {
                        self.keeper.log(self.keeper.event(EventKind::StopRequested).with("source", "marker"));
                        return Some("planned stop (marker) while no worker ran".into());
                    }
                }
            }
        }
    }

    /// Reads the stop marker: returns it when it is addressed to this monitor (and consumes it); logs and
    /// removes any other.
    fn check_marker(&self) -> Option<StopMarker> {
        match marker::check(self.keeper.home(), &[self.keeper.key()], now_ms()) {
            MarkerCheck::Stop(marker) => Some(marker),
            MarkerCheck::Ignored { why } => {
                self.keeper
                    .log(self.keeper.event(EventKind::MarkerIgnored).with("why", why));
                None
            }
            MarkerCheck::None => None,
        }
    }

    /// The worker has been silent up to the deadline: unless its planned stop is under way (it beats no
    /// more then, and the stop has its own budget), records what is known and kills it, identity
    /// verified. Returns the reason its exit will carry, when it was killed.
    fn on_silence(
        &self,
        watch: &mut BeatWatch,
        worker_pid: u32,
        worker: Option<&WorkerRecord>,
        child: &mut Child,
    ) -> Option<String> {
        let Verdict::Wedged { silent_for } = watch.verdict(Instant::now()) else {
            return None;
        };
        let home = self.keeper.home();
        let state = herald_home::atomic::read_record::<StateRecord>(&home.state_record())
            .present()
            .filter(|s| s.worker_pid == Some(worker_pid));
        if state
            .as_ref()
            .is_some_and(|s| matches!(s.state, GatewayState::Draining | GatewayState::Stopped))
        {
            watch.stand_aside();
            return None;
        }
        let reason = wedged_reason(silent_for);
        let policy = watch.policy();
        let mut event = self
            .keeper
            .event(EventKind::Wedged)
            .with("worker_pid", worker_pid)
            .with("last_beat_ms_ago", millis(silent_for))
            .with("interval_ms", millis(policy.interval))
            .with("missed_beats", policy.missed_beats);
        if let Some(state) = &state {
            event = event
                .with("in_flight", state.in_flight)
                .with("queued", state.queued);
        }
        if let Some(threads) = herald_process::threads::threads_of(worker_pid) {
            let threads: Vec<serde_json::Value> = threads
                .into_iter()
                .map(|t| {
                    serde_json::json!({
                        "tid": t.tid,
                        "name": t.name,
                        "state": t.state.to_string(),
                        "wchan": t.wchan,
                    })
                })
                .collect();
            event = event.with("threads", threads);
        }
        self.keeper.log(event);
        let killed = match worker {
            Some(w) => herald_process::force_kill_verified(
                ProcessKey {
                    pid: w.pid,
                    start_time: w.start_time,
                },
                &w.argv,
                w.exe.as_deref(),
            )
            .map_err(|e| e.to_string()),
            None => Err(format!("the identity of worker {worker_pid} was never read")),
        };
        if let Err(e) = killed {
            // Our own unreaped child (the handle, not a pid read anywhere): it cannot have been recycled.
            tracing::warn!(
                "cannot kill worker {worker_pid} by its verified identity ({e}); killing our child"
            );
            if let Err(e) = child.start_kill() {
                tracing::warn!("cannot kill worker {worker_pid}: {e}");
            }
        }
        // Logged after the kill: a stderr nobody reads (the cause of some wedges) may block this write.
        tracing::warn!("{reason}: killed worker {worker_pid} to start a new one");
        Some(reason)
    }

    fn worker_command(&self, home: &Home, watchdog: Option<WatchdogPolicy>) -> Command {
        // This very image, even if its file was replaced since (an upgrade, a package manager): a
        // worker of another build could speak another beat or record format.
        let image = herald_process::image::own_image().unwrap_or_else(|_| herald_process::image::OwnImage {
            program: "herald".into(),
            arg0: "herald".into(),
        });
        let key = self.keeper.key();
        let mut cmd = Command::new(&image.program);
        #[cfg(unix)]
        cmd.arg0(&image.arg0);
        cmd.arg("--home")
            .arg(home.root())
            .args(["run", "--worker"])
            .env(MONITOR_ENV, key.to_arg())
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(false);
        // The beats come on the worker's stdout (nothing else writes there), at the interval decided here.
        match watchdog {
            Some(policy) => cmd
                .env(BEAT_ENV, millis(policy.interval).to_string())
                .stdout(Stdio::piped()),
            None => cmd.env_remove(BEAT_ENV).stdout(Stdio::inherit()),
        };
        cmd
    }

    fn write_monitor_record(&self, phase: MonitorPhase, worker: Option<WorkerRecord>) {
        let key = self.keeper.key();
        let record = MonitorRecord {
            version: 1,
            pid: key.pid,
            start_time: key.start_time,
            phase,
            worker,
            restarts: self.restarts,
            last_restart_reason: self.last_restart_reason.clone(),
            updated_at_ms: now_ms(),
        };
        if let Err(e) = herald_home::atomic::write_record(&self.keeper.home().monitor_record(), &record) {
            tracing::warn!("{e}");
        }
    }
}

/// The read end of the worker's beat pipe (its stdout).
struct BeatReader(Option<ChildStdout>);

impl BeatReader {
    /// Waits for the next beat (all bytes read at once are one); forever once the pipe is closed (the
    /// worker is ending) or when there is none. Cancel-safe: a read interrupted by another branch loses
    /// nothing.
    async fn next(&mut self) {
        let mut bytes = [0u8; 64];
        loop {
            let Some(pipe) = &mut self.0 else {
                return std::future::pending().await;
            };
            match pipe.read(&mut bytes).await {
                Ok(n) if n > 0 => return,
                _ => self.0 = None,
            }
        }
    }
}

/// Sleeps until `deadline`; forever without one.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await,
        None => std::future::pending().await,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn worker_record(pid: u32) -> Option<WorkerRecord> {
    match herald_process::probe(pid) {
        herald_process::ProcessProbe::Alive(info) => Some(WorkerRecord {
            pid,
            start_time: info.key.start_time,
            argv: info.cmd,
            exe: info.exe.map(|p| p.display().to_string()),
        }),
        _ => None,
    }
}

fn to_worker_exit(status: std::io::Result<std::process::ExitStatus>) -> WorkerExit {
    match status {
        Ok(status) => match status.code() {
            Some(code) => WorkerExit::Code(code),
            None => WorkerExit::Signal(os::exit_signal(&status).unwrap_or(0)),
        },
        Err(_) => WorkerExit::Code(ExitCode::Failure.code().into()),
    }
}

/// Copies the worker's stderr to ours as it comes — one write per read, however many lines it holds:
/// the worker logs a line per turn, and a write per line (each a blocking-pool hop in tokio) would cost
/// the monitor more than the turn — keeping the last lines (lossily for non-UTF-8) for a crash loop.
async fn relay_stderr(mut stderr: tokio::process::ChildStderr, tail: Arc<Mutex<VecDeque<String>>>) {
    let mut out = tokio::io::stderr();
    let mut chunk = vec![0u8; RELAY_CHUNK];
    let mut lines = LineTail::default();
    loop {
        let n = match stderr.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                lines.finish(&tail);
                return;
            }
            Ok(n) => n,
        };
        let _ = out.write_all(&chunk[..n]).await;
        lines.take(&chunk[..n], &tail);
    }
}

/// How much of the worker's stderr one relay step reads.
const RELAY_CHUNK: usize = 64 * 1024;

/// The line being assembled from the relayed bytes.
#[derive(Default)]
struct LineTail {
    partial: Vec<u8>,
}

impl LineTail {
    /// Adds relayed bytes; every line they complete goes to `tail` (only the last [`STDERR_TAIL`] are
    /// kept). A line longer than a chunk is kept as it is, cut there.
    fn take(&mut self, bytes: &[u8], tail: &Mutex<VecDeque<String>>) {
        self.partial.extend_from_slice(bytes);
        let complete = match self.partial.iter().rposition(|b| *b == b'\n') {
            Some(end) => self.partial.drain(..=end).collect::<Vec<u8>>(),
            None if self.partial.len() >= RELAY_CHUNK => std::mem::take(&mut self.partial),
            None => return,
        };
        let lines: Vec<&[u8]> = complete
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .collect();
        let start = lines.len().saturating_sub(STDERR_TAIL);
        push_lines(tail, &lines[start..]);
    }

    /// The worker closed its stderr: a last line without a line break counts too.
    fn finish(&mut self, tail: &Mutex<VecDeque<String>>) {
        if !self.partial.is_empty() {
            let last = std::mem::take(&mut self.partial);
            push_lines(tail, &[&last]);
        }
    }
}

fn push_lines(tail: &Mutex<VecDeque<String>>, lines: &[&[u8]]) {
    if let Ok(mut tail) = tail.lock() {
        for line in lines {
            if tail.len() == STDERR_TAIL {
                tail.pop_front();
            }
            tail.push_back(String::from_utf8_lossy(line).trim_end().to_owned());
        }
    }
}

#[cfg(test)]
mod relay_tests {
    use super::*;

    fn kept(tail: &Mutex<VecDeque<String>>) -> Vec<String> {
        tail.lock().unwrap().iter().cloned().collect()
    }

    #[test]
    fn lines_split_across_reads_are_kept_whole_and_only_the_last_ones() {
        let tail = Mutex::new(VecDeque::new());
        let mut lines = LineTail::default();
        lines.take(b"first li", &tail);
        assert!(kept(&tail).is_empty());
        lines.take(b"ne\nsecond\r\nthi", &tail);
        assert_eq!(kept(&tail), ["first line", "second"]);
        let many: String = (0..50).map(|i| format!("line {i}\n")).collect();
        lines.take(format!("rd\n{many}").as_bytes(), &tail);
        let now = kept(&tail);
        assert_eq!(now.len(), STDERR_TAIL);
        assert_eq!(now.last().map(String::as_str), Some("line 49"));
        lines.take(b"no newline at the end", &tail);
        lines.finish(&tail);
        assert_eq!(
            kept(&tail).last().map(String::as_str),
            Some("no newline at the end")
        );
    }
}
