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
