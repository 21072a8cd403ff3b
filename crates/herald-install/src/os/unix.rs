//! Unix leaf of the install code: user ids and output decoding. Same signatures as `windows.rs`.

use std::process::Command;

/// Nothing to hide on Unix: commands have no console window.
pub(crate) fn no_window(_command: &mut Command) {}

/// Service-manager output on Unix is UTF-8 by convention; anything else is replaced, never an error.
pub(crate) fn decode_output(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The effective user id (0 = root).
pub(crate) fn effective_uid() -> Option<u32> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    Some(unsafe { libc::geteuid() })
}

/// The real user id, which names the launchd `gui/<uid>` domain.
pub(crate) fn real_uid() -> Option<u32> {
    // SAFETY: getuid has no preconditions and cannot fail.
    Some(unsafe { libc::getuid() })
}

/// Sets the file's permission bits (units and plists are 0644: service managers read them).
pub(crate) fn set_mode(path: &std::path::Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// The account named `name` (`getpwnam_r`) with its groups (`getgrouplist`).
pub(crate) fn account(name: &str) -> crate::access::AccountLookup {
    use crate::access::{Account, AccountLookup};
    let Ok(c_name) = std::ffi::CString::new(name) else {
        return AccountLookup::Missing;
    };
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: passwd is plain data; getpwnam_r fills it (pointing into `buf`) or leaves `found` null.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and `buf.len()` is its real length.
    let rc = unsafe {
        libc::getpwnam_r(
            c_name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 {
        return AccountLookup::Unknown;
    }
    if found.is_null() {
        return AccountLookup::Missing;
    }
    let uid = pwd.pw_uid;
    let gid = pwd.pw_gid;
    let mut groups: Vec<libc::gid_t> = vec![0; 256];
    let mut count: libc::c_int = 256;
    // SAFETY: `groups` has room for `count` entries; gid_t and the platform's group type have one size
    // (macOS declares the list as c_int), so the casts only restate the element type.
    let rc = unsafe { libc::getgrouplist(c_name.as_ptr(), gid as _, groups.as_mut_ptr().cast(), &mut count) };
    let mut gids = vec![gid];
    if rc >= 0 {
        groups.truncate(usize::try_from(count).unwrap_or(0));
        gids.extend(groups);
    }
    AccountLookup::Found(Account {
        name: name.to_owned(),
        uid,
        gids,
    })
}

/// The directory's owner, group and mode; `None` when it cannot be read (it does not exist yet, say).
pub(crate) fn dir_facts(path: &std::path::Path) -> Option<crate::access::DirFacts> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(crate::access::DirFacts {
        uid: meta.uid(),
        gid: meta.gid(),
        mode: meta.mode(),
    })
}
