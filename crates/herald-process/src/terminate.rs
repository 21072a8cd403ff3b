//! Ending another process, only ever the one a record names.
//!
//! **Invariant:** every kill re-checks identity immediately before acting, so a pid recycled since the
//! record was written (an unrelated program, or a system process) is never signalled. The remaining
//! window between the check and the call is a few microseconds, against pid reuse that needs the whole
//! pid space to wrap around.

use std::io;

use herald_home::records::ProcessKey;

use crate::identity::{self, Identity};

#[derive(Debug, thiserror::Error)]
pub enum TerminateError {
    #[error("refusing to signal pid {pid}: {}", identity.describe())]
    NotTheRecordedProcess { pid: u32, identity: Identity },
    #[error("a graceful terminate request does not exist on this OS")]
    Unsupported,
    #[error("cannot signal pid {pid}: {source}")]
    Os { pid: u32, source: io::Error },
}

/// Asks the process to stop gracefully (SIGTERM). Unsupported on Windows, where the only OS-level way to
/// end another process without a console is `TerminateProcess`; use the control channel or marker there.
pub fn request_terminate_verified(
    key: ProcessKey,
    argv: &[String],
    exe: Option<&str>,
) -> Result<(), TerminateError> {
    check(key, argv, exe)?;
    crate::os::request_terminate(key.pid).map_err(|source| match source.kind() {
        io::ErrorKind::Unsupported => TerminateError::Unsupported,
        _ => TerminateError::Os { pid: key.pid, source },
    })
}

/// Ends the process at once (SIGKILL, `TerminateProcess`).
pub fn force_kill_verified(
    key: ProcessKey,
    argv: &[String],
    exe: Option<&str>,
) -> Result<(), TerminateError> {
    check(key, argv, exe)?;
    crate::os::force_kill(key.pid).map_err(|source| TerminateError::Os { pid: key.pid, source })
}

fn check(key: ProcessKey, argv: &[String], exe: Option<&str>) -> Result<(), TerminateError> {
    let identity = identity::verify(key, argv, exe, &identity::probe(key.pid));
    if identity.is_verified() {
        Ok(())
    } else {
        Err(TerminateError::NotTheRecordedProcess {
            pid: key.pid,
            identity,
        })
    }
}
