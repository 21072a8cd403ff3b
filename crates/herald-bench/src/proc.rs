//! Child processes with precise exit instants and bounded waits.
//!
//! A benchmark needs to know *when* a process exited, not when we next happened to look. On Unix a watcher
//! thread blocks in `waitid(WEXITED | WNOWAIT)` and timestamps the exit the moment the kernel reports it;
//! `WNOWAIT` leaves the child unreaped, so its pid cannot be recycled and only the owning [`Proc`] ever
//! reaps it (which also makes the last-resort kill race-free). Elsewhere we poll `try_wait` every 200 µs.
//! Every wait takes a deadline; nothing here blocks forever.

use std::io;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// How often the portable fallback polls for exit.
#[cfg(not(unix))]
const POLL: Duration = Duration::from_micros(200);

/// A spawned child, its spawn instant and (once observed) its exit instant.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    started: Instant,
    exit: Option<(Instant, ExitStatus)>,
    #[cfg(unix)]
    watcher: std::sync::mpsc::Receiver<io::Result<Instant>>,
}

impl Proc {
    /// Spawns `cmd`; the start instant is taken immediately before `Command::spawn`.
    pub fn spawn(cmd: &mut Command) -> io::Result<Proc> {
        let started = Instant::now();
        let child = cmd.spawn()?;
        #[cfg(unix)]
        let watcher = watch_exit(child.id());
        Ok(Proc {
            child,
            started,
            exit: None,
            #[cfg(unix)]
            watcher,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// The exit instant and status if the child has exited, without blocking.
    pub fn exited(&mut self) -> io::Result<Option<(Instant, ExitStatus)>> {
        if self.exit.is_none() {
            self.observe(None)?;
        }
        Ok(self.exit)
    }

    /// Waits until the child exits or `deadline` passes (`Ok(None)`: still running).
    pub fn wait_until(&mut self, deadline: Instant) -> io::Result<Option<(Instant, ExitStatus)>> {
        if self.exit.is_none() {
            self.observe(Some(deadline))?;
        }
        Ok(self.exit)
    }

    /// Kills the child (SIGKILL / TerminateProcess) and reaps it. Returns whether it was still running.
    pub fn kill(&mut self) -> io::Result<bool> {
        if self.exited()?.is_some() {
            return Ok(false);
        }
        self.child.kill()?;
        let status = self.child.wait()?;
        self.exit = Some((Instant::now(), status));
        Ok(true)
    }

    /// Checks for exit, blocking until `deadline` if one is given.
    #[cfg(unix)]
    fn observe(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
        let message = match deadline {
            None => match self.watcher.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Disconnected) => return Err(io::Error::other("exit watcher vanished")),
            },
            Some(deadline) => {
                match self
                    .watcher
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => return Ok(()),
                    Err(RecvTimeoutError::Disconnected) => {
                        return Err(io::Error::other("exit watcher vanished"));
                    }
                }
            }
        };
        let at = message?;
        // The watcher saw the exit without reaping; this reap is immediate.
        let status = self.child.wait()?;
        self.exit = Some((at, status));
        Ok(())
    }

    #[cfg(not(unix))]
    fn observe(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.exit = Some((Instant::now(), status));
                return Ok(());
            }
            match deadline {
                Some(d) if Instant::now() < d => std::thread::sleep(POLL),
                _ => return Ok(()),
            }
        }
    }
}

impl Drop for Proc {
    /// Safety net: never leave a child behind, whatever path we leave by.
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Starts a thread that reports the instant `pid` exits, leaving it unreaped.
#[cfg(unix)]
fn watch_exit(pid: u32) -> std::sync::mpsc::Receiver<io::Result<Instant>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("exit-watch-{pid}"))
        .spawn(move || {
            let result = loop {
                // SAFETY: siginfo_t is a plain C struct for which all-zero bytes is a valid value.
                let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
                // SAFETY: `info` is a valid, writable siginfo_t; waitid only writes into it. WNOWAIT leaves
                // the child waitable, so the owning `Proc` still reaps it with `Child::wait`.
                let rc = unsafe {
                    libc::waitid(
                        libc::P_PID,
                        pid as libc::id_t,
                        &mut info,
                        libc::WEXITED | libc::WNOWAIT,
                    )
                };
                if rc == 0 {
                    break Ok(Instant::now());
                }
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    break Err(err);
                }
            };
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        let (tx, failed) = std::sync::mpsc::channel();
        let _ = tx.send(Err(e));
        return failed;
    }
    rx
}

/// A finished command: how long it took from spawn to exit, and its exit status.
#[derive(Debug)]
pub struct Finished {
    pub elapsed: Duration,
    pub status: ExitStatus,
}

/// Runs `cmd` to completion within `timeout`, killing it (and failing) if it takes longer.
pub fn run_bounded(cmd: &mut Command, timeout: Duration, what: &str) -> anyhow::Result<Finished> {
    let mut proc = Proc::spawn(cmd).map_err(|e| anyhow::anyhow!("cannot start {what}: {e}"))?;
    let deadline = proc.started() + timeout;
    match proc.wait_until(deadline)? {
        Some((at, status)) => Ok(Finished {
            elapsed: at.duration_since(proc.started()),
            status,
        }),
        None => {
            proc.kill()?;
            anyhow::bail!("{what} did not finish within {timeout:?}; killed it")
        }
    }
}
