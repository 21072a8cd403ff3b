//! The lifecycle layer's one error type, and its place in the exit-code contract.

use herald_home::ExitCode;
use herald_home::config::ConfigError;
use herald_home::paths::HomeError;
use herald_install::manage::ManageError;
use herald_process::StopError;

/// Why a lifecycle operation failed. `Display` is the sentence for people; [`Self::exit_code`] is the
/// contract.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error("fix the configuration first: {0}")]
    Config(#[source] std::sync::Arc<ConfigError>),
    #[error("cannot find the herald executable: {0}")]
    NoExecutable(#[source] std::io::Error),
    #[error("cannot start the gateway: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("cannot start the restart watcher: {0}")]
    SpawnWatcher(#[source] std::io::Error),
    /// The gateway died before it was ready; `log_tail` is what it wrote meanwhile.
    #[error("the gateway (pid {pid}) exited during start-up with {how}")]
    ExitedDuringStartup {
        pid: u32,
        how: String,
        code: Option<i32>,
        log_tail: String,
    },
    #[error("the gateway (pid {pid}) is not ready after {secs}s; it keeps starting in the background")]
    NotReady { pid: u32, secs: u64, log_tail: String },
    #[error("stop failed: {0}")]
    Stop(#[from] StopError),
    #[error(transparent)]
    Manage(#[from] ManageError),
    #[error(
        "a {backend} registration only starts the gateway at login; without that there is nothing to \
         register (use --backend none)"
    )]
    NothingToRegister { backend: &'static str },
    #[error(
        "this home is registered with {backend}; `herald uninstall` first (one autostart mechanism per home)"
    )]
    AlreadyRegistered { backend: &'static str },
    #[error("gave up: pid {pid} did not exit")]
    WaitedInVain { pid: u32 },
    #[error("no gateway is running on this home (an adapter restarts inside a running gateway)")]
    NotRunning,
    #[error("cannot reach the gateway's control channel: {0}")]
    Control(String),
    /// The gateway answered, and refused (no such adapter, stopping...).
    #[error("{0}")]
    AdapterRefused(String),
}

impl LifecycleError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            LifecycleError::Config(_) => ExitCode::Config,
            LifecycleError::Home(e) if e.is_unsafe() => ExitCode::Config,
            LifecycleError::ExitedDuringStartup { code: Some(78), .. } => ExitCode::Config,
            LifecycleError::NothingToRegister { .. } => ExitCode::Usage,
            LifecycleError::NotRunning => ExitCode::NotRunning,
            LifecycleError::AdapterRefused(_) => ExitCode::Usage,
            LifecycleError::Manage(
                ManageError::RunAsNeedsSystem | ManageError::ServiceAccountUnsupported,
            ) => ExitCode::Usage,
            _ => ExitCode::Failure,
        }
    }

    /// What the gateway wrote to its log before a failed start, for the user to see.
    pub fn log_tail(&self) -> Option<&str> {
        match self {
            LifecycleError::ExitedDuringStartup { log_tail, .. }
            | LifecycleError::NotReady { log_tail, .. } => Some(log_tail),
            _ => None,
        }
    }
}
