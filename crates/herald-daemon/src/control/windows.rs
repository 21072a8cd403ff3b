//! Windows leaf of the control channel's server: a named pipe whose DACL grants access to the current user's SID
//! only — and to the home directory's owner when that is another account (a Windows Service running as
//! LocalSystem on a user's home: the owner can already write every file of the home, stop markers
//! included, so this grants nothing new, and `status --deep` can ping) — created as the first instance
//! (so a squatter that created the name first makes us fail loudly rather than serve through its pipe)
//! and rejecting remote clients.

use std::ffi::c_void;
use std::io;
use std::ptr;

use herald_home::Home;
use tokio::net::windows::named_pipe::{NamedPipeServer, ServerOptions};
use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, LocalFree};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW, GetNamedSecurityInfoW,
    SDDL_REVISION_1, SE_FILE_OBJECT,
};
use windows_sys::Win32::Security::{
    GetTokenInformation, OWNER_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID, SECURITY_ATTRIBUTES,
    TOKEN_QUERY, TOKEN_USER, TokenUser,
};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

#[derive(Debug)]
pub(super) struct Listener {
    name: String,
    descriptor: OwnedSecurityDescriptor,
    next: NamedPipeServer,
}

impl Listener {
    pub(super) fn bind(home: &Home) -> io::Result<Listener> {
        let name = home.control_pipe_name();
        let descriptor = OwnedSecurityDescriptor::for_home(home.root())?;
        let next = create(&name, &descriptor, true)?;
        Ok(Listener {
            name,
            descriptor,
            next,
        })
    }

    pub(super) async fn accept(&mut self) -> io::Result<NamedPipeServer> {
        self.next.connect().await?;
        let fresh = create(&self.name, &self.descriptor, false)?;
        Ok(std::mem::replace(&mut self.next, fresh))
    }
}

fn create(name: &str, descriptor: &OwnedSecurityDescriptor, first: bool) -> io::Result<NamedPipeServer> {
    let mut attributes = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: descriptor.0,
        bInheritHandle: 0,
    };
    let mut options = ServerOptions::new();
    options.first_pipe_instance(first).reject_remote_clients(true);
    // SAFETY: `attributes` is a valid SECURITY_ATTRIBUTES whose descriptor is owned by `descriptor`, which
    // outlives this call; the pipe keeps its own copy of the security information.
    unsafe { options.create_with_security_attributes_raw(name, (&raw mut attributes).cast::<c_void>()) }
}

pub(super) fn cleanup(_home: &Home) {
    // A named pipe disappears with its last handle.
}

/// A security descriptor allocated by `ConvertStringSecurityDescriptorToSecurityDescriptorW`, freed with
/// `LocalFree` on drop.
#[derive(Debug)]
struct OwnedSecurityDescriptor(PSECURITY_DESCRIPTOR);

// SAFETY: the descriptor is an immutable heap block after creation; it is only read (by CreateNamedPipe).
unsafe impl Send for OwnedSecurityDescriptor {}
// SAFETY: as above, shared read-only access is sound.
unsafe impl Sync for OwnedSecurityDescriptor {}

impl OwnedSecurityDescriptor {
    /// `D:P(A;;GA;;;<current user SID>)`: a protected DACL with full access for this user, plus the same
    /// entry for the owner of `home` when that is another account (unknown owner: this user only).
    fn for_home(home: &std::path::Path) -> io::Result<OwnedSecurityDescriptor> {
        let sid = current_user_sid_string()?;
        let mut sddl = format!("D:P(A;;GA;;;{sid})");
        match owner_sid_string(home) {
            Ok(owner) if owner != sid => sddl.push_str(&format!("(A;;GA;;;{owner})")),
            Ok(_) => {}
            Err(e) => tracing::debug!("cannot read the owner of {}: {e}", home.display()),
        }
        let sddl: Vec<u16> = sddl.encode_utf16().chain(std::iter::once(0)).collect();
        let mut descriptor: PSECURITY_DESCRIPTOR = ptr::null_mut();
        // SAFETY: `sddl` is a NUL-terminated UTF-16 string; `descriptor` is a valid out pointer; the size
        // out-parameter is optional (null).
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                sddl.as_ptr(),
                SDDL_REVISION_1,
                &mut descriptor,
                ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnedSecurityDescriptor(descriptor))
    }
}

impl Drop for OwnedSecurityDescriptor {
    fn drop(&mut self) {
        // SAFETY: the block was allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW or
        // GetNamedSecurityInfoW, which both document LocalFree as the deallocator; freed exactly once.
        unsafe { LocalFree(self.0) };
    }
}

/// A token handle closed on drop.
struct OwnedToken(HANDLE);

impl Drop for OwnedToken {
    fn drop(&mut self) {
        // SAFETY: the handle came from OpenProcessToken and is closed exactly once.
        unsafe { CloseHandle(self.0) };
    }
}

/// The owner of the file or directory at `path`, as `S-1-5-…` text.
fn owner_sid_string(path: &std::path::Path) -> io::Result<String> {
    use std::os::windows::ffi::OsStrExt;
    let wide: Vec<u16> = path.as_os_str().encode_wide().chain(std::iter::once(0)).collect();
    let mut owner: PSID = ptr::null_mut();
    let mut descriptor: PSECURITY_DESCRIPTOR = ptr::null_mut();
    // SAFETY: `wide` is a NUL-terminated UTF-16 path; the owner and descriptor out pointers are valid; the
    // group, DACL and SACL out pointers are optional (null) since only the owner is asked for.
    let rc = unsafe {
        GetNamedSecurityInfoW(
            wide.as_ptr(),
            SE_FILE_OBJECT,
            OWNER_SECURITY_INFORMATION,
            &mut owner,
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            &mut descriptor,
        )
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc as i32));
    }
    let descriptor = OwnedSecurityDescriptor(descriptor);
    // The owner SID points into the descriptor, which lives until the end of this function.
    let text = sid_string(owner);
    drop(descriptor);
    text
}

/// A SID as `S-1-5-…` text.
fn sid_string(sid: PSID) -> io::Result<String> {
    let mut text: *mut u16 = ptr::null_mut();
    // SAFETY: `sid` is a valid SID (the callers' contract); `text` is a valid out pointer.
    if unsafe { ConvertSidToStringSidW(sid, &mut text) } == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success `text` is a NUL-terminated UTF-16 string allocated with LocalAlloc.
    let result = unsafe {
        let len = (0..).take_while(|&i| *text.add(i) != 0).count();
        String::from_utf16_lossy(std::slice::from_raw_parts(text, len))
    };
    // SAFETY: `text` was allocated by ConvertSidToStringSidW, to be freed with LocalFree, once.
    unsafe { LocalFree(text.cast()) };
    Ok(result)
}

/// The current process user's SID as `S-1-5-…` text.
fn current_user_sid_string() -> io::Result<String> {
    let mut token: HANDLE = ptr::null_mut();
    // SAFETY: GetCurrentProcess returns a pseudo-handle; `token` is a valid out pointer.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
        return Err(io::Error::last_os_error());
    }
    let token = OwnedToken(token);
    let mut needed = 0u32;
    // SAFETY: a size query: null buffer with length 0 is the documented way to learn the needed size.
    unsafe { GetTokenInformation(token.0, TokenUser, ptr::null_mut(), 0, &mut needed) };
    if needed == 0 {
        return Err(io::Error::last_os_error());
    }
    // u64 storage keeps the buffer aligned for TOKEN_USER.
    let mut buffer = vec![0u64; (needed as usize).div_ceil(8)];
    // SAFETY: `buffer` has at least `needed` bytes and is 8-byte aligned.
    if unsafe {
        GetTokenInformation(
            token.0,
            TokenUser,
            buffer.as_mut_ptr().cast(),
            needed,
            &mut needed,
        )
    } == 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success the buffer starts with a TOKEN_USER whose SID pointer points into the buffer,
    // which lives until the end of this function.
    let sid = unsafe { (*buffer.as_ptr().cast::<TOKEN_USER>()).User.Sid };
    sid_string(sid)
}
