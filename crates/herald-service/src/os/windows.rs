//! Windows leaf: `OpenProcess` + `TerminateProcess`, with the handle in an RAII guard.

use std::io;

use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
use windows_sys::Win32::System::Threading::{OpenProcess, PROCESS_TERMINATE, TerminateProcess};

/// Exit code given to a force-killed gateway: "unexpected failure" in the exit-code contract.
const FORCE_KILL_EXIT_CODE: u32 = 1;

pub(crate) fn request_terminate(_pid: u32) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "Windows has no graceful terminate signal for a detached process",
    ))
}

pub(crate) fn force_kill(pid: u32) -> io::Result<()> {
    let process = OwnedProcess::open(pid, PROCESS_TERMINATE)?;
    // SAFETY: `process.0` is a valid process handle opened with PROCESS_TERMINATE and owned by the guard.
    let ok = unsafe { TerminateProcess(process.0, FORCE_KILL_EXIT_CODE) };
    if ok == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// An open process handle, closed on drop.
struct OwnedProcess(HANDLE);

impl OwnedProcess {
    fn open(pid: u32, access: u32) -> io::Result<OwnedProcess> {
        // SAFETY: OpenProcess has no pointer arguments; a null return is handled below.
        let handle = unsafe { OpenProcess(access, 0, pid) };
        if handle.is_null() {
            Err(io::Error::last_os_error())
        } else {
            Ok(OwnedProcess(handle))
        }
    }
}

impl Drop for OwnedProcess {
    fn drop(&mut self) {
        // SAFETY: the handle was returned by OpenProcess and is closed exactly once, here.
        unsafe { CloseHandle(self.0) };
    }
}

pub(crate) fn spawn_detached(
    build: impl Fn() -> io::Result<std::process::Command>,
) -> io::Result<crate::spawn::Detached> {
    use std::os::windows::process::CommandExt;
    use windows_sys::Win32::Foundation::ERROR_ACCESS_DENIED;
    use windows_sys::Win32::System::Threading::{
        CREATE_BREAKAWAY_FROM_JOB, CREATE_NEW_PROCESS_GROUP, CREATE_NO_WINDOW, DETACHED_PROCESS,
    };
    let base = DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW;
    let mut cmd = build()?;
    cmd.creation_flags(base | CREATE_BREAKAWAY_FROM_JOB);
    match cmd.spawn() {
        Ok(child) => Ok(crate::spawn::Detached {
            child,
            broke_away: true,
        }),
        // The parent's job does not allow breakaway: start inside it rather than not at all.
        Err(e) if e.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) => {
            let mut cmd = build()?;
            cmd.creation_flags(base);
            Ok(crate::spawn::Detached {
                child: cmd.spawn()?,
                broke_away: false,
            })
        }
        Err(e) => Err(e),
    }
}

/// Blocks on the process handle until it exits or the timeout passes. `None` if it cannot be opened.
pub(crate) fn wait_for_exit(pid: u32, timeout: std::time::Duration) -> Option<bool> {
    use windows_sys::Win32::Foundation::WAIT_OBJECT_0;
    use windows_sys::Win32::System::Threading::{PROCESS_SYNCHRONIZE, WaitForSingleObject};
    let process = OwnedProcess::open(pid, PROCESS_SYNCHRONIZE).ok()?;
    let millis = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX - 1);
    // SAFETY: `process.0` is a valid handle opened with PROCESS_SYNCHRONIZE and owned by the guard.
    let rc = unsafe { WaitForSingleObject(process.0, millis) };
    Some(rc == WAIT_OBJECT_0)
}
