//! Unix leaf of the monitor: the worker gets its own process group (a terminal's Ctrl+C reaches only the
//! monitor, which forwards it once, as the same signal — so the drain is not cut short by a second signal), and stops are
//! forwarded as SIGTERM.
//!
//! On Linux the monitor is also the *subreaper* of everything below it: when a worker dies (SIGKILL, an
//! OOM kill), the agent process trees it started are handed to the monitor instead of init, and the
//! monitor ends them before it starts the next worker — so a resumed turn never runs beside the agent of
//! its previous attempt. (Elsewhere the orphans go to init; the note in ARCHITECTURE.md says so.)

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use herald_home::Home;
use tokio::process::{Child, Command};

use crate::signals::StopSource;

pub(super) fn spawn_worker(mut cmd: Command) -> std::io::Result<Child> {
    cmd.process_group(0);
    cmd.spawn()
}

/// Forwards a stop as the signal the monitor itself received (a terminal's SIGINT stays SIGINT), so the
/// worker's lifecycle events name what really happened; SIGTERM for any other source (a stop marker).
/// SIGHUP is no stop: the monitor passes it on as a `reload` call.
pub(super) async fn forward_stop(child: &mut Child, _home: &Home, source: StopSource) {
    let signal = match source {
        StopSource::Signal("SIGINT") => libc::SIGINT,
        _ => libc::SIGTERM,
    };
    if let Some(pid) = child.id().and_then(|p| libc::pid_t::try_from(p).ok()) {
        // SAFETY: kill(2) on our own unreaped child: the pid cannot have been recycled.
        unsafe { libc::kill(pid, signal) };
    }
}

pub(super) fn exit_signal(status: &ExitStatus) -> Option<i32> {
    status.signal()
}

/// Linux: become the reaper of orphaned descendants (`PR_SET_CHILD_SUBREAPER`). Best effort.
pub(super) fn adopt_orphans() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes one integer argument and touches no memory.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        if rc != 0 {
            tracing::warn!(
                "cannot become the subreaper of the worker's agents: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Ends every process the monitor has come to parent — with no worker running, these can only be what a
/// dead worker left behind — with its process group, and reaps them. Returns how many there were.
pub(super) fn end_orphans() -> usize {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getpid and getpgrp have no preconditions.
        let (me, my_group) = unsafe { (libc::getpid(), libc::getpgrp()) };
        let mut ended = 0;
        let until = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            // The common case, no child at all, costs one system call: waitpid fails with ECHILD.
            if !has_children() {
                return ended;
            }
            let orphans = children_of(me);
            if orphans.is_empty() || std::time::Instant::now() >= until {
                return ended;
            }
            for (pid, group) in orphans {
                if group > 1 && group != my_group {
                    // SAFETY: kill(2) of a process group our own orphaned children lead or belong to.
                    unsafe { libc::kill(-group, libc::SIGKILL) };
                }
                // SAFETY: kill(2) of our own (unreaped) child: its pid cannot have been recycled.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                ended += 1;
            }
            // Reap them (and whatever they left to us in turn): no worker is alive at this moment.
            loop {
                // SAFETY: waitpid with a null status pointer only reaps.
                let reaped = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
                if reaped <= 0 {
                    break;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// SIGCHLD, for reaping what the agents of a *running* worker leave to the monitor (a background process
/// whose parent exited): they are the monitor's children now, and would stay zombies.
pub(super) struct Orphans(Option<tokio::signal::unix::Signal>);

impl Orphans {
    pub(super) fn watch() -> Orphans {
        Orphans(tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()).ok())
    }

    /// Waits for SIGCHLD, then reaps every exited child but `worker`.
    pub(super) async fn reap(&mut self, worker: u32) {
        match &mut self.0 {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
        #[cfg(target_os = "linux")]
        {
            // SAFETY: getpid has no preconditions.
            let me = unsafe { libc::getpid() };
            for (pid, _) in children_of(me) {
                if u32::try_from(pid).ok() != Some(worker) {
                    // SAFETY: waitpid on our own child, without blocking: reaps it only if it has exited.
                    unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = worker;
    }
}

/// Whether this process has any child (reaping those that have exited on the way).
#[cfg(target_os = "linux")]
fn has_children() -> bool {
    loop {
        // SAFETY: waitpid with a null status pointer only reaps (WNOHANG: never blocks).
        match unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } {
            0 => return true,
            reaped if reaped > 0 => continue,
            _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => continue,
            _ => return false,
        }
    }
}

/// The (pid, process group) of every process whose parent is `parent`, from `/proc/*/stat`.
#[cfg(target_os = "linux")]
fn children_of(parent: libc::pid_t) -> Vec<(libc::pid_t, libc::pid_t)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: libc::pid_t = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses: split after the last ')'.
            let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
            let _state = fields.next()?;
            let ppid: libc::pid_t = fields.next()?.parse().ok()?;
            let pgrp: libc::pid_t = fields.next()?.parse().ok()?;
            (ppid == parent).then_some((pid, pgrp))
        })
        .collect()
}
