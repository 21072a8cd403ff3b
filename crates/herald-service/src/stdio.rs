//! Where a gateway's own output goes when whoever started it gave it nowhere to go.
//!
//! **Invariant:** a console, a pipe or a file given as stderr is always kept; only a process whose
//! stderr goes nowhere takes the home's `logs/stdio.log` (the file `herald start` gives a detached
//! gateway), appending, for its stdout and stderr — which a supervised worker then inherits.
//!
//! *Why:* on Windows, a gateway started by a logon task or a Startup launcher (the GUI-subsystem
//! `heraldw.exe`) or by the SCM has no usable standard handles: no handle at all, the `NUL` device, or
//! the console of a launcher that has already closed. Its log lines (adapter errors, warnings, a
//! worker's last words) would be lost and `herald logs` would have nothing to show. On Unix every way
//! Herald is started gives a usable stderr (a terminal, the journal, launchd's `StandardErrorPath`, the
//! detached spawn's file), so nothing changes there.

use std::fs::OpenOptions;
use std::io;
use std::path::Path;

/// If this process's stderr goes nowhere, sends its stdout and stderr to `log` (created 0600 if needed,
/// appended to). Returns whether it did.
pub fn adopt_log_when_orphaned(log: &Path) -> io::Result<bool> {
    if !crate::os::stderr_goes_nowhere() {
        return Ok(false);
    }
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    crate::os::send_stdio_to(options.open(log)?)?;
    Ok(true)
}
