//! Windows leaf of `sd_notify`: there is no systemd; nothing to send.

use std::ffi::OsStr;
use std::io;

pub(super) fn send(_socket: &OsStr, _message: &[u8]) -> io::Result<()> {
    Ok(())
}
