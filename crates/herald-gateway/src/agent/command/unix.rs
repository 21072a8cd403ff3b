//! Unix leaf of the `command` agent: the program leads a new process group, and the group is what is
//! killed.
//!
//! The group id is the leader's pid, so a `killpg` is only sound while that pid cannot belong to anyone
//! else, i.e. until the leader is reaped. A waiter thread therefore waits with `WNOWAIT` (the leader stays
//! a zombie), kills the group, and only then reaps; [`Tree::kill`] signals only while a shared flag says
//! the leader has not been reaped, under the same lock.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use herald_home::sync::MutexExt;
use tokio::sync::oneshot;

/// A started program: its pipes, the tree guard and the exit of the program itself.
pub(super) struct Spawned {
    /// Kills the whole tree when dropped.
    pub(super) tree: Tree,
    pub(super) stdin: ChildStdin,
    pub(super) stdout: ChildStdout,
    pub(super) stderr: ChildStderr,
    /// Resolves once the program has exited and what it left running has been killed.
    pub(super) exited: oneshot::Receiver<io::Result<ExitStatus>>,
}

/// The program's process tree. Dropping it kills every process still in it.
#[derive(Debug)]
pub(super) struct Tree {
    group: Arc<Group>,
}

#[derive(Debug)]
struct Group {
    /// The process group id, which is the leader's pid.
    pgid: libc::pid_t,
    /// True once the leader has been reaped (or lost): from then on its pid may name another process.
    reaped: Mutex<bool>,
}

impl Group {
    /// Sends SIGKILL to the group unless the leader has been reaped.
    fn kill(&self) {
        let reaped = self.reaped.lock_unpoisoned();
        if !*reaped {
            kill_group(self.pgid);
        }
    }
}

impl Tree {
    /// Kills every process of the tree (idempotent).
    pub(super) fn kill(&self) {
        self.group.kill();
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `program args…` in a new process group with piped stdio.
pub(super) fn spawn(program: &OsStr, args: &[OsString]) -> io::Result<Spawned> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    let pgid = libc::pid_t::try_from(child.id()).map_err(io::Error::other)?;
    let group = Arc::new(Group {
        pgid,
        reaped: Mutex::new(false),
    });
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        unreachable!("all three pipes were requested");
    };
    let (sender, exited) = oneshot::channel();
    let waiter_group = Arc::clone(&group);
    let spawned = std::thread::Builder::new()
        .name("herald-command-wait".to_owned())
        .spawn(move || wait_kill_reap(child, &waiter_group, sender));
    if let Err(e) = spawned {
        // The child went with the closure, unreaped (std's `Child` neither kills nor reaps on drop), so
        // the group id is still ours to signal. The zombie leader stays until Herald exits; a system that
        // cannot start a thread has bigger problems.
        kill_group(pgid);
        return Err(e);
    }
    Ok(Spawned {
        tree: Tree { group },
        stdin,
        stdout,
        stderr,
        exited,
    })
}

/// Waits for the leader to exit without reaping it, kills the rest of its group, then reaps it.
fn wait_kill_reap(mut child: Child, group: &Group, sender: oneshot::Sender<io::Result<ExitStatus>>) {
    let Ok(pid) = libc::id_t::try_from(group.pgid) else {
        return;
    };
    loop {
        // SAFETY: an all-zero `siginfo_t` is a valid value of this plain C struct.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t; `pid` is our own unreaped child, and WNOWAIT
        // leaves it unreaped.
        let rc = unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc == 0 {
            break;
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            // Someone else reaped it: the group id can no longer be vouched for, so never signal it.
            *group.reaped.lock_unpoisoned() = true;
            let _ = sender.send(Err(error));
            return;
        }
    }
    let mut reaped = group.reaped.lock_unpoisoned();
    kill_group(group.pgid);
    let status = child.wait();
    *reaped = true;
    drop(reaped);
    let _ = sender.send(status);
}

fn kill_group(pgid: libc::pid_t) {
    // SAFETY: killpg has no memory-safety preconditions. The callers guarantee `pgid` is the group of an
    // unreaped child of ours, so no other process can hold that id.
    unsafe { libc::killpg(pgid, libc::SIGKILL) };
}

/// Whether a spawn error means "this file is not something the OS can run".
pub(super) fn is_bad_executable(error: &io::Error) -> bool {
    error.raw_os_error() == Some(libc::ENOEXEC)
}
