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
) -> io::Result<(std::process::Child, bool)> {
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
    Ok((cmd.spawn()?, true))
}

/// Linux: blocks on a pidfd until the process exits or the timeout passes. `None` when pidfds are not
/// available (old kernel, other Unix): the caller falls back to checking periodically.
#[cfg(target_os = "linux")]
pub(crate) fn wait_for_exit(pid: u32, timeout: std::time::Duration) -> Option<bool> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no pointers are involved.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    let fd = libc::c_int::try_from(fd).ok()?;
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `poll` is a valid pollfd array of length 1 for the duration of the call.
    let rc = unsafe { libc::poll(&mut poll, 1, millis) };
    // SAFETY: `fd` was opened above and is closed exactly once.
    unsafe { libc::close(fd) };
    if rc < 0 { None } else { Some(rc > 0) }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn wait_for_exit(_pid: u32, _timeout: std::time::Duration) -> Option<bool> {
    None
}

/// Every way Herald starts on Unix gives a usable stderr (see [`crate::stdio`]).
pub(crate) fn stderr_goes_nowhere() -> bool {
    false
}

pub(crate) fn send_stdio_to(_file: std::fs::File) -> io::Result<()> {
    Ok(())
}

/// Raises `RLIMIT_NOFILE`'s soft limit to its hard limit (capped where the OS caps it); the soft limit.
pub(crate) fn raise_descriptor_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let mut raised = limit;
        raised.rlim_cur = limit.rlim_max;
        // macOS refuses RLIM_INFINITY (and more than OPEN_MAX) for the soft limit: keep the old one then.
        // SAFETY: `raised` is a valid rlimit; setrlimit only reads it.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    // `rlim_t` is u64 on Linux and macOS, narrower on some other Unix targets.
    #[allow(clippy::useless_conversion)]
    u64::try_from(limit.rlim_cur).ok()
}

/// Bytes an unprivileged process may still write on the file system holding `path` (`statvfs`).
pub(crate) fn free_space(path: &std::path::Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: an all-zero statvfs is a valid value for statvfs(3) to overwrite.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is NUL-terminated and `stats` is a valid, writable statvfs.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stats) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between Linux and macOS
    Ok((stats.f_bavail as u64).saturating_mul(stats.f_frsize as u64))
}
