//! Windows leaf of [`crate::ownership`]: who owns a file and who may write or read it, read from its
//! security descriptor; a DACL for a file only its user may read; and who this process runs as — each
//! SID as `S-1-…` text, the form the pure judge takes.
//!
//! Every buffer the system allocates for us (a security descriptor, a SID string) lives in an RAII
//! newtype freed with `LocalFree`, once.

use std::ffi::c_void;
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::path::Path;
use std::ptr;

use windows_sys::Win32::Foundation::{
    CloseHandle, GENERIC_READ, GENERIC_WRITE, HANDLE, INVALID_HANDLE_VALUE, LocalFree,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW, GetNamedSecurityInfoW,
    SDDL_REVISION_1, SE_FILE_OBJECT,
};
use windows_sys::Win32::Security::{
    ACCESS_ALLOWED_ACE, ACE_HEADER, ACL, DACL_SECURITY_INFORMATION, GetAce, GetTokenInformation,
    OWNER_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID, SECURITY_ATTRIBUTES, TOKEN_QUERY, TOKEN_USER,
    TokenUser,
};
use windows_sys::Win32::Storage::FileSystem::{
    CREATE_NEW, CreateFileW, FILE_ATTRIBUTE_NORMAL, FILE_FLAG_OPEN_REPARSE_POINT,
};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

use super::AclFacts;

/// `ACCESS_ALLOWED_ACE_TYPE` (winnt.h): the only ACE type that grants anything.
const ACCESS_ALLOWED_ACE_TYPE: u8 = 0;

/// The access rights that let a trustee plant or replace what the gateway trusts: write or append data
/// (for a directory: add a file or a subdirectory), delete a child, delete, change the DACL or the
/// owner, and the generic rights that include them.
const WRITE_RIGHTS: u32 = 0x0002 // FILE_WRITE_DATA / FILE_ADD_FILE
    | 0x0004 // FILE_APPEND_DATA / FILE_ADD_SUBDIRECTORY
    | 0x0040 // FILE_DELETE_CHILD
    | 0x0001_0000 // DELETE
    | 0x0004_0000 // WRITE_DAC
    | 0x0008_0000 // WRITE_OWNER
    | 0x1000_0000 // GENERIC_ALL
    | 0x4000_0000; // GENERIC_WRITE

/// The access rights that let a trustee read a file's data: read data, and the generic rights that
/// include it.
const READ_RIGHTS: u32 = 0x0001 // FILE_READ_DATA
    | 0x1000_0000 // GENERIC_ALL
    | 0x8000_0000; // GENERIC_READ

/// A block allocated by the system for us, freed with `LocalFree` on drop.
struct LocalBlock(*mut c_void);

impl Drop for LocalBlock {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the block came from an API documenting LocalFree as its deallocator (the callers'
            // contract) and is freed exactly once.
            unsafe { LocalFree(self.0) };
        }
    }
}

/// A security descriptor built from SDDL text (`ConvertStringSecurityDescriptorToSecurityDescriptorW`),
/// freed with `LocalFree` on drop: the DACLs Herald gives its private files and its control pipe.
#[derive(Debug)]
pub struct SecurityDescriptor(PSECURITY_DESCRIPTOR);

// SAFETY: the descriptor is an immutable heap block after creation; it is only read (by the APIs that
// create files and pipes with it).
unsafe impl Send for SecurityDescriptor {}
// SAFETY: as above, shared read-only access is sound.
unsafe impl Sync for SecurityDescriptor {}

impl SecurityDescriptor {
    /// Parses `sddl` (`D:P(A;;FA;;;S-1-…)`, …).
    pub fn from_sddl(sddl: &str) -> io::Result<SecurityDescriptor> {
        let wide: Vec<u16> = sddl.encode_utf16().chain(std::iter::once(0)).collect();
        let mut descriptor: PSECURITY_DESCRIPTOR = ptr::null_mut();
        // SAFETY: `wide` is a NUL-terminated UTF-16 string; `descriptor` is a valid out pointer; the size
        // out pointer is optional.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                wide.as_ptr(),
                SDDL_REVISION_1,
                &mut descriptor,
                ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(SecurityDescriptor(descriptor))
    }

    /// The descriptor, for a `SECURITY_ATTRIBUTES` (valid while `self` lives).
    pub fn as_ptr(&self) -> PSECURITY_DESCRIPTOR {
        self.0
    }
}

impl Drop for SecurityDescriptor {
    fn drop(&mut self) {
        // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW, which documents
        // LocalFree as the deallocator; freed exactly once.
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

/// The owner of `path` and the trustees its DACL lets write (see [`WRITE_RIGHTS`]), inherit-only entries
/// included: on a directory they are what the files created in it get.
pub(super) fn acl_facts(path: &Path) -> io::Result<AclFacts> {
    let wide: Vec<u16> = path.as_os_str().encode_wide().chain(std::iter::once(0)).collect();
    let mut owner: PSID = ptr::null_mut();
    let mut dacl: *mut ACL = ptr::null_mut();
    let mut descriptor: PSECURITY_DESCRIPTOR = ptr::null_mut();
    // SAFETY: `wide` is a NUL-terminated UTF-16 path; the owner, DACL and descriptor out pointers are
    // valid; the group and SACL out pointers are optional (null) since they are not asked for.
    let rc = unsafe {
        GetNamedSecurityInfoW(
            wide.as_ptr(),
            SE_FILE_OBJECT,
            OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION,
            &mut owner,
            ptr::null_mut(),
            &mut dacl,
            ptr::null_mut(),
            &mut descriptor,
        )
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc as i32));
    }
    // The owner SID and the DACL point into the descriptor, which lives until the end of this function.
    let _descriptor = LocalBlock(descriptor);
    let owner = sid_string(owner)?;
    if dacl.is_null() {
        // No DACL at all: everyone has every right.
        return Ok(AclFacts {
            owner,
            writers: Vec::new(),
            readers: Vec::new(),
            null_dacl: true,
        });
    }
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    // SAFETY: `dacl` is a valid ACL inside the live descriptor.
    let count = u32::from(unsafe { (*dacl).AceCount });
    for index in 0..count {
        let mut ace: *mut c_void = ptr::null_mut();
        // SAFETY: `dacl` is valid and `index` is below its ACE count; `ace` is a valid out pointer.
        if unsafe { GetAce(dacl, index, &mut ace) } == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: every ACE starts with an ACE_HEADER.
        let header = unsafe { &*ace.cast::<ACE_HEADER>() };
        if header.AceType != ACCESS_ALLOWED_ACE_TYPE {
            continue;
        }
        // SAFETY: an ACCESS_ALLOWED_ACE: its mask follows the header and its SID starts at `SidStart`.
        let allowed = unsafe { &*ace.cast::<ACCESS_ALLOWED_ACE>() };
        if allowed.Mask & (WRITE_RIGHTS | READ_RIGHTS) == 0 {
            continue;
        }
        let sid: PSID = (&raw const allowed.SidStart).cast_mut().cast();
        let sid = sid_string(sid)?;
        if allowed.Mask & READ_RIGHTS != 0 {
            readers.push(sid.clone());
        }
        if allowed.Mask & WRITE_RIGHTS != 0 {
            writers.push(sid);
        }
    }
    Ok(AclFacts {
        owner,
        writers,
        readers,
        null_dacl: false,
    })
}

/// Creates a new file (never an existing one) whose protected DACL (nothing inherited) grants full
/// access to this user, `SYSTEM` and `Administrators` only — the machine's principals can read every
/// file anyway, and `SYSTEM` is the account of a Windows Service serving this home. The descriptor is
/// given at creation, so there is no moment in which the file has the directory's permissions.
pub(super) fn create_private_new(path: &Path) -> io::Result<std::fs::File> {
    use std::os::windows::io::FromRawHandle;
    let me = current_user_sid()?;
    let descriptor = SecurityDescriptor::from_sddl(&format!("D:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;FA;;;{me})"))?;
    let attributes = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: descriptor.as_ptr(),
        bInheritHandle: 0,
    };
    let wide: Vec<u16> = path.as_os_str().encode_wide().chain(std::iter::once(0)).collect();
    // SAFETY: `wide` is a NUL-terminated path; `attributes` points at the live descriptor; no template.
    let handle = unsafe {
        CreateFileW(
            wide.as_ptr(),
            GENERIC_READ | GENERIC_WRITE,
            0,
            &attributes,
            CREATE_NEW,
            FILE_ATTRIBUTE_NORMAL | FILE_FLAG_OPEN_REPARSE_POINT,
            ptr::null_mut(),
        )
    };
    if handle == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `handle` is a file handle just opened and owned by nobody else; File closes it once.
    Ok(unsafe { std::fs::File::from_raw_handle(handle) })
}

/// The owner of the file or directory at `path`, as `S-1-…` text.
pub(super) fn owner_sid(path: &Path) -> io::Result<String> {
    acl_facts(path).map(|facts| facts.owner)
}

/// A SID as `S-1-…` text.
fn sid_string(sid: PSID) -> io::Result<String> {
    let mut text: *mut u16 = ptr::null_mut();
    // SAFETY: `sid` is a valid SID (the callers' contract); `text` is a valid out pointer.
    if unsafe { ConvertSidToStringSidW(sid, &mut text) } == 0 {
        return Err(io::Error::last_os_error());
    }
    let _block = LocalBlock(text.cast());
    // SAFETY: on success `text` is a NUL-terminated UTF-16 string, alive until `_block` drops.
    let result = unsafe {
        let len = (0..).take_while(|&i| *text.add(i) != 0).count();
        String::from_utf16_lossy(std::slice::from_raw_parts(text, len))
    };
    Ok(result)
}

/// The current process user's SID as `S-1-…` text.
pub(super) fn current_user_sid() -> io::Result<String> {
    let mut token: HANDLE = ptr::null_mut();
    // SAFETY: GetCurrentProcess returns a pseudo-handle; `token` is a valid out pointer.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
        return Err(io::Error::last_os_error());
    }
    let token = OwnedToken(token);
    let mut needed = 0u32;
    // SAFETY: a size query: a null buffer with length 0 is the documented way to learn the needed size.
    unsafe { GetTokenInformation(token.0, TokenUser, ptr::null_mut(), 0, &mut needed) };
    if needed == 0 {
        return Err(io::Error::last_os_error());
    }
    // u64 storage keeps the buffer aligned for TOKEN_USER.
    let mut buffer = vec![0u64; (needed as usize).div_ceil(8)];
    // SAFETY: `buffer` has at least `needed` bytes and is 8-byte aligned.
    let ok = unsafe {
        GetTokenInformation(
            token.0,
            TokenUser,
            buffer.as_mut_ptr().cast(),
            needed,
            &mut needed,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success the buffer starts with a TOKEN_USER whose SID pointer points into the buffer,
    // which lives until the end of this function.
    let sid = unsafe { (*buffer.as_ptr().cast::<TOKEN_USER>()).User.Sid };
    sid_string(sid)
}
