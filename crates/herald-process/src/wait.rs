//! Waiting for another process to exit, by identity.
//!
//! Linux: a pidfd, polled — woken by the kernel at the exit. Windows: a process handle and
//! `WaitForSingleObject`. Elsewhere, a check every 100 ms. In every case the process must still carry the
//! recorded start time when the wait begins, so a recycled pid is treated as "already exited".

use std::time::{Duration, Instant};

use herald_home::records::ProcessKey;

use crate::identity::{ProcessProbe, probe};

/// Waits until `key` has exited or `timeout` passes. Returns whether it exited.
pub fn wait_for_exit(key: ProcessKey, timeout: Duration) -> bool {
    match probe(key.pid) {
        ProcessProbe::Gone => return true,
        ProcessProbe::Alive(info) if info.key != key => return true,
        // Alive and ours — or a zombie, which may still have threads finishing (a process whose main
        // thread has exited reads as a zombie while, say, a file-notification thread still closes its
        // descriptor). A zombie's pid cannot be reused, so it still names our process: wait for it too.
        ProcessProbe::Alive(_) | ProcessProbe::Zombie => {}
    }
    if let Some(exited) = crate::os::wait_for_exit(key.pid, timeout) {
        return exited || !is_alive(key);
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !is_alive(key) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    !is_alive(key)
}

/// Whether the process with exactly this identity is alive (not gone, not a zombie, not recycled).
pub fn is_alive(key: ProcessKey) -> bool {
    matches!(probe(key.pid), ProcessProbe::Alive(info) if info.key == key)
}
