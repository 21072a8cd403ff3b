//! The gateway's stdio log (`logs/stdio.log`): opened by `herald start` for a detached gateway, and by a
//! gateway whose stderr goes nowhere; moved aside past [`ROTATE_AT_BYTES`] when opened.
//!
//! **Invariant:** a console, a pipe or a file given as stderr is always kept; only a process whose
//! stderr goes nowhere takes the home's `logs/stdio.log` (the file `herald start` gives a detached
//! gateway), appending, for its stdout and stderr — which a supervised worker then inherits.
//!
//! *Why:* on Windows, a gateway started by a logon task or a Run value (the GUI-subsystem
//! `heraldw.exe`) or by the SCM has no usable standard handles: no handle at all, the `NUL` device, or
//! the console of a launcher that has already closed. Its log lines (adapter errors, warnings, a
//! worker's last words) would be lost and `herald logs` would have nothing to show. On Unix every way
//! Herald is started gives a usable stderr (a terminal, the journal, launchd's `StandardErrorPath`, the
//! detached spawn's file), so nothing changes there.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// Past this size the log is moved aside (to `<log>.1`, replacing the one before) when a gateway opens
/// it, so a long life of restarts keeps at most about twice this on disk.
pub const ROTATE_AT_BYTES: u64 = 8 * 1024 * 1024;

/// Opens the stdio log for appending (created 0600, with its directory), first moving a log past
/// [`ROTATE_AT_BYTES`] aside. The move is best effort: if it fails (another process holds the file
/// without sharing), the gateway appends to the old log rather than losing its output.
pub fn open_log(log: &Path) -> io::Result<File> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if std::fs::metadata(log).is_ok_and(|m| m.len() > ROTATE_AT_BYTES) {
        let _ = std::fs::rename(log, rotated(log));
    }
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    herald_home::ownership::no_follow(&mut options);
    options.open(log)
}

/// `<log>.1`.
pub fn rotated(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// If this process's stderr goes nowhere, sends its stdout and stderr to `log` (created 0600 if needed,
/// appended to). Returns whether it did.
pub fn adopt_log_when_orphaned(log: &Path) -> io::Result<bool> {
    if !crate::os::stderr_goes_nowhere() {
        return Ok(false);
    }
    crate::os::send_stdio_to(open_log(log)?)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_log_is_moved_aside_when_opened_and_a_small_one_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("logs").join("stdio.log");
        std::io::Write::write_all(&mut open_log(&log).unwrap(), b"first\n").unwrap();
        std::io::Write::write_all(&mut open_log(&log).unwrap(), b"second\n").unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "first\nsecond\n");
        assert!(!rotated(&log).exists());

        std::fs::write(&log, vec![b'x'; usize::try_from(ROTATE_AT_BYTES).unwrap() + 1]).unwrap();
        std::io::Write::write_all(&mut open_log(&log).unwrap(), b"fresh\n").unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "fresh\n");
        assert_eq!(
            std::fs::metadata(rotated(&log)).unwrap().len(),
            ROTATE_AT_BYTES + 1
        );
    }
}
