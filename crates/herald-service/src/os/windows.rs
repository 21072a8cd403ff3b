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
