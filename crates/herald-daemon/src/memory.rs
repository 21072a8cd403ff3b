//! Giving memory the gateway has freed back to the OS.
//!
//! glibc's allocator keeps what a thread frees in that thread's arena for reuse, and returns it to the
//! OS only when the top of the main heap is free. A burst — eight clients paging through a 65 MB
//! session, 1 MiB per page — leaves the worker holding tens of megabytes it no longer uses, for good.
//! [`release_free_memory`], called on every heartbeat, hands free pages back (`malloc_trim`), so the
//! worker returns to its idle footprint within a heartbeat of a burst. It costs a walk over the arenas,
//! a fraction of a millisecond when there is nothing to release. Other allocators (macOS, Windows, musl)
//! return memory on their own schedule; there it does nothing.

/// Returns free heap pages to the OS (glibc); does nothing elsewhere.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_free_memory() {
    // SAFETY: malloc_trim only releases memory the allocator holds free; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Returns free heap pages to the OS (glibc); does nothing elsewhere.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() {}
