//! The elevation leaf on Windows: the token check (`GetTokenInformation(TokenElevation)`) and the
//! elevated relaunch (`ShellExecuteExW` with the `runas` verb and `SEE_MASK_NOCLOSEPROCESS`, a wait on the
//! process handle, `GetExitCodeProcess`). Handles are owned by [`Handle`], closed when dropped; COM is
//! initialised for the call, as `ShellExecuteExW` asks, by [`ComScope`]. Same signatures as `other.rs`.

use std::os::windows::ffi::OsStrExt;
use std::path::Path;

use windows_sys::Win32::Foundation::{CloseHandle, GetLastError, HANDLE, WAIT_OBJECT_0};
use windows_sys::Win32::Security::{GetTokenInformation, TOKEN_ELEVATION, TOKEN_QUERY, TokenElevation};
use windows_sys::Win32::System::Com::{
    COINIT_APARTMENTTHREADED, COINIT_DISABLE_OLE1DDE, CoInitializeEx, CoUninitialize,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetExitCodeProcess, INFINITE, OpenProcessToken, WaitForSingleObject,
};
use windows_sys::Win32::UI::Shell::{
    SEE_MASK_NOASYNC, SEE_MASK_NOCLOSEPROCESS, SHELLEXECUTEINFOW, ShellExecuteExW,
};
use windows_sys::Win32::UI::WindowsAndMessaging::SW_HIDE;

use super::{ElevateError, launch_error};

/// A kernel handle this module owns.
struct Handle(HANDLE);

impl Drop for Handle {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the handle is owned by this value and closed exactly once, here.
            unsafe { CloseHandle(self.0) };
        }
    }
}

/// COM initialised on this thread for the lifetime of the value (only if this call initialised it).
struct ComScope(bool);

impl ComScope {
    fn enter() -> ComScope {
        // SAFETY: no pointers are passed; a failure (another apartment model already chosen) is fine
        // and means we must not uninitialise.
        let hr = unsafe {
            CoInitializeEx(
                std::ptr::null(),
                (COINIT_APARTMENTTHREADED | COINIT_DISABLE_OLE1DDE) as u32,
            )
        };
        ComScope(hr >= 0)
    }
}

impl Drop for ComScope {
    fn drop(&mut self) {
        if self.0 {
            // SAFETY: balances the successful CoInitializeEx of `enter` on this thread.
            unsafe { CoUninitialize() };
        }
    }
}

fn wide(s: &std::ffi::OsStr) -> Vec<u16> {
    s.encode_wide().chain(std::iter::once(0)).collect()
}

fn last_error() -> u32 {
    // SAFETY: no preconditions.
    unsafe { GetLastError() }
}

pub(crate) fn token_elevated() -> Result<bool, ElevateError> {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: the pseudo-handle of the current process needs no closing; `token` receives a handle
    // that `Handle` then owns.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
        return Err(ElevateError::Token { code: last_error() });
    }
    let token = Handle(token);
    let mut elevation = TOKEN_ELEVATION { TokenIsElevated: 0 };
    let mut returned = 0u32;
    // SAFETY: `elevation` is a TOKEN_ELEVATION of the size passed; `returned` outlives the call.
    let ok = unsafe {
        GetTokenInformation(
            token.0,
            TokenElevation,
            (&mut elevation as *mut TOKEN_ELEVATION).cast(),
            std::mem::size_of::<TOKEN_ELEVATION>() as u32,
            &mut returned,
        )
    };
    if ok == 0 {
        return Err(ElevateError::Token { code: last_error() });
    }
    Ok(elevation.TokenIsElevated != 0)
}

pub(crate) fn run_elevated(program: &Path, parameters: &str, directory: &Path) -> Result<u32, ElevateError> {
    let _com = ComScope::enter();
    let verb = wide("runas".as_ref());
    let file = wide(program.as_os_str());
    let params = wide(parameters.as_ref());
    let dir = wide(directory.as_os_str());
    // SAFETY: SHELLEXECUTEINFOW is plain data for which all-zero is the documented "unset" state.
    let mut info: SHELLEXECUTEINFOW = unsafe { std::mem::zeroed() };
    info.cbSize = std::mem::size_of::<SHELLEXECUTEINFOW>() as u32;
    info.fMask = SEE_MASK_NOCLOSEPROCESS | SEE_MASK_NOASYNC;
    info.lpVerb = verb.as_ptr();
    info.lpFile = file.as_ptr();
    info.lpParameters = params.as_ptr();
    info.lpDirectory = dir.as_ptr();
    info.nShow = SW_HIDE;
    // SAFETY: every string in `info` is NUL-terminated and outlives the call; `info.cbSize` is its size.
    if unsafe { ShellExecuteExW(&mut info) } == 0 {
        return Err(launch_error(last_error()));
    }
    let process = Handle(info.hProcess);
    if process.0.is_null() {
        // SEE_MASK_NOCLOSEPROCESS with an executable always yields a process; without one there is
        // nothing to wait for or to read an exit code from.
        return Err(ElevateError::Launch { code: 0 });
    }
    // SAFETY: `process` is a valid process handle owned by this function.
    if unsafe { WaitForSingleObject(process.0, INFINITE) } != WAIT_OBJECT_0 {
        return Err(ElevateError::Wait { code: last_error() });
    }
    let mut code = 0u32;
    // SAFETY: as above; `code` outlives the call.
    if unsafe { GetExitCodeProcess(process.0, &mut code) } == 0 {
        return Err(ElevateError::Wait { code: last_error() });
    }
    Ok(code)
}
