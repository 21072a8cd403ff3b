//! What every gateway process does first, and how a failed start is recorded.
//!
//! Order matters and is the point of this module: take the lock (the instance lock, or with `--replace`
//! stop its holder first; a worker takes the worker lock) — before touching any record, so a second
//! instance can never overwrite the first one's records — then write the PID record and `starting`, then
//! judge the config (a bad config is `startup_failed`, exit 78). Everything that can fail after the lock
//! is a typed [`StartError`] (or [`RunError`] before it), each with its place in the exit-code contract.

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_home::config::{Config, ConfigError};
use herald_home::lifecycle::{EventKind, LifecycleEvent, LifecycleLog};
use herald_home::lock::{InstanceLock, LockError};
use herald_home::paths::HomeError;
use herald_home::records::GatewayState;
use herald_home::{ExitCode, Home, StopBudget};

use crate::payload::PayloadError;
use crate::state::{RecordKeeper, Role};
use herald_process::control;
use herald_process::stop::{self, StopOptions, StopOutcome, StopVia};

/// How long a starting gateway keeps retrying a busy lock before concluding another gateway owns the
/// home: probes hold the lock for an instant, and a gateway that just won the lock needs a moment to
/// write its PID record.
const LOCK_RETRY_WINDOW: Duration = Duration::from_millis(1500);
const LOCK_RETRY_STEP: Duration = Duration::from_millis(15);

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
    /// The gateway held its lock but could not start serving (recorded as `startup_failed`).
    #[error("{}", start_failure_message(.0))]
    Start(#[from] StartError),
    /// The Windows Service entry point could not run the gateway at all.
    #[error("the Windows Service could not run the gateway: {0}")]
    Service(String),
    #[error(
        "a gateway (pid {pid}) still runs on this home, but its lock file was deleted or replaced; stop it \
         with `herald stop` (or take over with `herald run --replace`)"
    )]
    Unlocked { pid: u32 },
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
            RunError::Config(_) => ExitCode::Config,
            RunError::Home(e) if e.is_unsafe() => ExitCode::Config,
            RunError::Start(e) => e.exit_code(),
            _ => ExitCode::Failure,
        }
    }
}

fn start_failure_message(e: &StartError) -> String {
    match e.exit_code() {
        _ if matches!(e, StartError::HttpAddrInUse { .. }) => format!("cannot start: {e}"),
        ExitCode::Config => format!("invalid configuration: {e}"),
        _ => format!("startup failed: {e}"),
    }
}

/// Why a gateway that holds its lock could not start serving. Each is recorded as `startup_failed` with
/// its exit code before the process exits.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot open the control channel {endpoint}: {source}")]
    ControlChannel {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error("building the gateway panicked: {0}")]
    BuildPanicked(String),
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error("cannot resume unfinished turns: {0}")]
    Resume(#[source] herald_gateway::journal::JournalError),
    #[error("{0}")]
    Secrets(#[source] herald_home::secrets::SecretsError),
    #[error("[http] listen `{0}` is not an IP:PORT address")]
    HttpListen(String),
    #[error("the variable {var} (named by [http] token_env) {problem}")]
    HttpTokenEnv { var: String, problem: &'static str },
    #[error("{0} (set [http] listen in herald.toml)")]
    HttpBind(String),
    #[error(
        "[http] listen {addr} is already in use{}: another program, or the gateway of another Herald \
         home or profile, listens there. Stop it, or give this home its own port in herald.toml \
         ([http] listen; `127.0.0.1:0` takes any free port and `herald status` shows it)",
        holder.as_deref().map(|h| format!(" by {h}")).unwrap_or_default()
    )]
    HttpAddrInUse { addr: String, holder: Option<String> },
}

impl StartError {
    /// 78 when the configuration (or the environment it names) is at fault: a restart will not help.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            StartError::Payload(PayloadError::Config(_))
            | StartError::HttpListen(_)
            | StartError::HttpTokenEnv { .. }
            | StartError::Secrets(_)
            // Retrying cannot free the port; restarting in a loop only hides the clash.
            | StartError::HttpAddrInUse { .. } => ExitCode::Config,
            _ => ExitCode::Failure,
        }
    }
}

/// The stop budget a gateway process uses (how long `--replace` and a new worker wait for the old one):
/// [`StopBudget::of`] the config it was handed, like every other party.
pub fn stop_budget(config: &Result<Config, Arc<ConfigError>>) -> StopBudget {
    StopBudget::of(config.as_ref().map_err(|e| &**e))
}

/// A gateway process that has taken its lock, announced itself and read its config.
pub(crate) struct Started {
    pub lock: InstanceLock,
    pub keeper: RecordKeeper,
    pub config: Config,
}

/// A gateway process that has taken its lock and announced itself; its config not yet judged.
pub(crate) struct Claimed {
    pub lock: InstanceLock,
    pub keeper: RecordKeeper,
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
    let Claimed { lock, mut keeper } = claim(home, stop_budget(&config), role, replace)?;
    match config {
        Ok(config) => Ok(Started { lock, keeper, config }),
        Err(e) => {
            fail_startup(&mut keeper, ExitCode::Config, &e.to_string());
            Err(RunError::Config(e))
        }
    }
}

/// [`begin`] up to the config: lock, PID record, `starting`, the `start` event, the panic hook. The
/// caller judges the config (a standalone gateway under launchd may wait for it to be fixed).
pub(crate) fn claim(home: &Home, budget: StopBudget, role: Role, replace: bool) -> Result<Claimed, RunError> {
    home.ensure()?;
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
            .with("version", herald_home::VERSION)
            .with("home", home.root().display().to_string())
            .with("argv", me.cmd.clone())
            .with("replaced", replaced),
    );
    install_panic_hook(home, keeper.pid());
    Ok(Claimed { lock, keeper })
}

/// Records a runtime that could not be built as a startup failure.
pub(crate) fn runtime_or_fail(
    keeper: &mut RecordKeeper,
    runtime: std::io::Result<tokio::runtime::Runtime>,
) -> Result<tokio::runtime::Runtime, RunError> {
    runtime.map_err(|e| {
        let error = StartError::Runtime(e);
        fail_startup(keeper, error.exit_code(), &error.to_string());
        RunError::Start(error)
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
            // The lock file may have been deleted under a gateway that still runs (the lock taken here is
            // then a new file's): never serve beside it.
            Ok(lock) => match verified_holder(home) {
                None => return Ok((lock, replaced)),
                Some(pid) if !replace || replaced => {
                    drop(lock);
                    return Err(RunError::Unlocked { pid });
                }
                Some(_) => drop(lock),
            },
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

pub(crate) fn fail_startup(keeper: &mut RecordKeeper, code: ExitCode, reason: &str) {
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
        assert!(location.contains("startup.rs"), "{location}");
        assert_eq!(panic.field("thread").and_then(|t| t.as_str()), Some("turn"));
    }

    #[test]
    fn already_running_messages() {
        assert!(already_running_message(Some(12)).contains("already running (pid 12)"));
        assert!(already_running_message(None).contains("already running"));
    }
}
