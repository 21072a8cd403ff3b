//! Detached spawn: start a process that outlives its parent — the terminal that ran `herald start`, a GUI
//! app's job object, an updater — with no console window and its output in a log file.
//!
//! Unix: a new session (`setsid`), so no controlling terminal and no SIGHUP when the shell exits.
//! Windows: `DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW | CREATE_BREAKAWAY_FROM_JOB`;
//! when the parent's job forbids breakaway (access denied), the spawn is retried without it and the
//! caller is told, so it can be recorded.

use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A detached child.
#[derive(Debug)]
pub struct Detached {
    pub child: Child,
    /// Windows: whether the child broke away from the parent's job (always true elsewhere).
    pub broke_away: bool,
}

/// Starts `program args…` detached, appending its stdout and stderr to `log`.
pub fn spawn_detached(program: &Path, args: &[OsString], log: &Path) -> io::Result<Detached> {
    let build = || -> io::Result<Command> {
        let out = crate::stdio::open_log(log)?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
        Ok(cmd)
    };
    let (child, broke_away) = crate::os::spawn_detached(build)?;
    Ok(Detached { child, broke_away })
}
