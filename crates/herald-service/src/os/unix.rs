//! Unix leaf: signals via `kill(2)`.

use std::io;

pub(crate) fn request_terminate(pid: u32) -> io::Result<()> {
    send(pid, libc::SIGTERM)
}

pub(crate) fn force_kill(pid: u32) -> io::Result<()> {
    send(pid, libc::SIGKILL)
}

fn send(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: `kill` has no memory-safety preconditions; `pid` is a positive pid (never 0 or -1, which
    // would address a process group or every process).
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub(crate) fn spawn_detached(
    build: impl Fn() -> io::Result<std::process::Command>,
) -> io::Result<crate::spawn::Detached> {
    use std::os::unix::process::CommandExt;
    let mut cmd = build()?;
    // SAFETY: the closure runs in the forked child before exec and only calls setsid(2), which is
    // async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(crate::spawn::Detached {
        child: cmd.spawn()?,
        broke_away: true,
    })
}
