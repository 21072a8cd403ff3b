//! Windows leaf: `OpenProcess` + `TerminateProcess`, with the handle in an RAII guard; the standard
//! handles of a process started without any.

use std::io;

use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, INVALID_HANDLE_VALUE};
use windows_sys::Win32::Storage::FileSystem::{FILE_TYPE_CHAR, FILE_TYPE_DISK, FILE_TYPE_PIPE, GetFileType};
use windows_sys::Win32::System::Console::{
    GetConsoleMode, GetStdHandle, STD_ERROR_HANDLE, STD_OUTPUT_HANDLE, SetStdHandle,
};
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
) -> io::Result<(std::process::Child, bool)> {
    use std::os::windows::process::CommandExt;
    use windows_sys::Win32::Foundation::ERROR_ACCESS_DENIED;
    use windows_sys::Win32::System::Threading::{
        CREATE_BREAKAWAY_FROM_JOB, CREATE_NEW_PROCESS_GROUP, CREATE_NO_WINDOW, DETACHED_PROCESS,
    };
    let base = DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW;
    stop_leaking_std_handles();
    let mut cmd = build()?;
    cmd.creation_flags(base | CREATE_BREAKAWAY_FROM_JOB);
    match cmd.spawn() {
        Ok(child) => Ok((child, true)),
        // The parent's job does not allow breakaway: start inside it rather than not at all.
        Err(e) if e.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) => {
            let mut cmd = build()?;
            cmd.creation_flags(base);
            Ok((cmd.spawn()?, false))
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

/// CreateProcess (as std calls it) hands every inheritable handle of ours to the child. Our own stdio
/// handles are inheritable when our parent gave them to us — a pipe from a terminal, a test harness or a
/// GUI — and a detached gateway holding them would keep that pipe open for its whole life (the caller
/// would wait forever for end-of-file). Clear the flag first; the child gets its log file as stdio anyway.
fn stop_leaking_std_handles() {
    use windows_sys::Win32::Foundation::{HANDLE_FLAG_INHERIT, INVALID_HANDLE_VALUE, SetHandleInformation};
    use windows_sys::Win32::System::Console::{
        GetStdHandle, STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
    };
    for which in [STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE] {
        // SAFETY: GetStdHandle has no preconditions; it returns null or INVALID_HANDLE_VALUE when unset.
        let handle = unsafe { GetStdHandle(which) };
        if !handle.is_null() && handle != INVALID_HANDLE_VALUE {
            // SAFETY: `handle` is this process's standard handle; clearing its inherit flag affects only
            // which handles future children receive.
            unsafe { SetHandleInformation(handle, HANDLE_FLAG_INHERIT, 0) };
        }
    }
}

/// No stderr handle, or one that leads nowhere: the `NUL` device, or a console handle with no console
/// behind it (a launcher's that has closed). A file, a pipe or a live console is somewhere.
pub(crate) fn stderr_goes_nowhere() -> bool {
    // SAFETY: no pointer arguments; the result is checked below.
    let handle = unsafe { GetStdHandle(STD_ERROR_HANDLE) };
    if handle.is_null() || handle == INVALID_HANDLE_VALUE {
        return true;
    }
    // SAFETY: `handle` is this process's standard handle (not owned here, not closed).
    match unsafe { GetFileType(handle) } {
        FILE_TYPE_DISK | FILE_TYPE_PIPE => false,
        FILE_TYPE_CHAR => {
            let mut mode = 0;
            // SAFETY: `mode` outlives the call; failure means the character device is not a console.
            unsafe { GetConsoleMode(handle, &mut mode) == 0 }
        }
        _ => true,
    }
}

/// Makes `file` this process's stdout and stderr for the rest of its life (the handle is deliberately
/// never closed). Rust's standard streams look the handle up on every write, and children spawned with
/// inherited stdio get it too.
pub(crate) fn send_stdio_to(file: std::fs::File) -> io::Result<()> {
    use std::os::windows::io::IntoRawHandle;
    let handle = file.into_raw_handle() as HANDLE;
    for which in [STD_OUTPUT_HANDLE, STD_ERROR_HANDLE] {
        // SAFETY: `handle` is an open file handle this process owns and never closes.
        if unsafe { SetStdHandle(which, handle) } == 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Windows has no per-process descriptor limit for sockets and files (handles are bounded by memory).
pub(crate) fn raise_descriptor_limit() -> Option<u64> {
    None
}

/// Bytes this user may still write on the volume holding `path` (`GetDiskFreeSpaceExW`, quotas
/// included).
pub(crate) fn free_space(path: &std::path::Path) -> io::Result<u64> {
    use std::os::windows::ffi::OsStrExt;
    use windows_sys::Win32::Storage::FileSystem::GetDiskFreeSpaceExW;
    let wide: Vec<u16> = path.as_os_str().encode_wide().chain(std::iter::once(0)).collect();
    let mut available = 0u64;
    // SAFETY: `wide` is a NUL-terminated path; `available` is a valid out pointer; the total and free
    // counts are optional (null).
    let ok = unsafe {
        GetDiskFreeSpaceExW(
            wide.as_ptr(),
            &mut available,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(available)
}
