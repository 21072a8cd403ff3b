//! Herald as a Windows Service: `herald run --windows-service`, the command line the SCM registration
//! (`herald install --backend windows-service`) starts.
//!
//! The Windows leaf connects to the SCM (`StartServiceCtrlDispatcher`), registers a control handler and
//! runs `herald run` inside the service's main function: Herald's monitor, which runs the gateway as its
//! worker and restarts it when it dies (with `--no-supervise`, the gateway alone — registrations made
//! before the service hosted the monitor; `install` repairs them). The SCM's failure actions restart the
//! service when the monitor itself fails. The status the SCM is shown, the controls it sends and the exit
//! code it is told are the pure [`crate::readiness::scm::ScmSession`], handed to `herald run` as its
//! [`crate::readiness::Notifier`], so they are tested on every OS.
//!
//! - **From a console** the dispatcher fails with `ERROR_FAILED_SERVICE_CONTROLLER_CONNECT` (1063):
//!   [`ServiceError::NotUnderScm`], which the binary reports with exit 2 (usage).

#[cfg(not(windows))]
#[path = "other.rs"]
mod os;
#[cfg(windows)]
#[path = "windows.rs"]
mod os;

use herald_home::ExitCode;

use crate::run::{RunError, RunOptions};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("--windows-service is the Windows Service entry point; there are no Windows Services on this OS")]
    NotWindows,
    #[error(
        "--windows-service is the entry point the Windows Service Control Manager starts; it cannot run \
         from a console (error 1063, ERROR_FAILED_SERVICE_CONTROLLER_CONNECT). To run the gateway here: \
         `herald run`; to start the installed service: `herald start` (or `sc start {service}`)"
    )]
    NotUnderScm { service: String },
    #[error("cannot run as a Windows Service: {what} failed with Win32 error {code}")]
    Os { what: &'static str, code: i32 },
}

/// Runs `herald run` (the monitor, or with `--no-supervise` the gateway alone) as the Windows Service
/// `service` until a planned stop. `Err` when the process was not started by the SCM, or cannot talk to it.
pub fn run_as_service(
    options: RunOptions,
    service: String,
) -> Result<Result<ExitCode, RunError>, ServiceError> {
    os::run_as_service(options, service)
}
