//! Unix leaf of the monitor: the worker gets its own process group (a terminal's Ctrl+C reaches only the
//! monitor, which forwards one SIGTERM — so the drain is not cut short by a second signal), and stops are
//! forwarded as SIGTERM.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use herald_home::Home;
use tokio::process::{Child, Command};

pub(super) fn spawn_worker(mut cmd: Command) -> std::io::Result<Child> {
    cmd.process_group(0);
    cmd.spawn()
}

pub(super) async fn forward_stop(child: &mut Child, _home: &Home) {
    if let Some(pid) = child.id().and_then(|p| libc::pid_t::try_from(p).ok()) {
        // SAFETY: kill(2) on our own unreaped child: the pid cannot have been recycled.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
}

pub(super) fn exit_signal(status: &ExitStatus) -> Option<i32> {
    status.signal()
}
