//! Unix leaf of `beat`: a non-blocking descriptor for stdout (a duplicate: fd 1 itself stays as it is
//! for anyone who writes there, but the pipe's open file description is shared, so both are
//! non-blocking — the monitor made this pipe for the beats alone).

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd};

#[derive(Debug)]
pub(super) struct BeatPipe(std::fs::File);

impl BeatPipe {
    pub(super) fn on_stdout() -> io::Result<BeatPipe> {
        let fd = io::stdout().as_fd().try_clone_to_owned()?;
        let raw = fd.as_raw_fd();
        // SAFETY: fcntl(F_GETFL) on a descriptor we own; it reads the status flags and touches no memory.
        let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fcntl(F_SETFL) on a descriptor we own, adding O_NONBLOCK to the flags just read.
        if unsafe { libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(BeatPipe(std::fs::File::from(fd)))
    }

    /// One write(2); a full pipe is `WouldBlock` at once, and the beat is dropped.
    pub(super) fn send(&self, beat: u8) -> io::Result<()> {
        (&self.0).write(&[beat]).map(drop)
    }
}
