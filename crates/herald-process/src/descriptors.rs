//! How many files and sockets this process may have open: the budget the listeners are sized against.
//!
//! A flood of connections must never take the descriptors the gateway needs for itself — its control
//! channel, record and log writes, the journal, agent pipes. So the gateway raises its soft limit to the
//! hard one at start-up (a login shell's 1024 is far below what the kernel allows) and sizes its HTTP
//! connection cap to leave [`RESERVED`] descriptors for everything else.
//!
//! **Invariant:** on systems without a per-process descriptor limit (Windows: sockets are kernel handles,
//! limited only by memory) the budget is `None` and nothing is clamped.

/// Descriptors kept for the gateway's own files, sockets and children, beyond the HTTP connections.
pub const RESERVED: u64 = 128;

/// Raises the soft descriptor limit to the hard one and returns the (new) soft limit; `None` where there
/// is no such limit or it cannot be read.
pub fn raise_limit() -> Option<u64> {
    crate::os::raise_descriptor_limit()
}

/// The HTTP connection cap that fits in `limit` descriptors: `wanted`, or less so that [`RESERVED`]
/// remain (and at least 1).
pub fn connection_cap(wanted: usize, limit: Option<u64>) -> usize {
    match limit {
        None => wanted,
        Some(limit) => {
            let room = usize::try_from(limit.saturating_sub(RESERVED)).unwrap_or(usize::MAX);
            wanted.min(room).max(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_the_reserve() {
        assert_eq!(connection_cap(256, None), 256);
        assert_eq!(connection_cap(256, Some(1_048_576)), 256);
        assert_eq!(connection_cap(256, Some(256)), 128);
        assert_eq!(connection_cap(256, Some(100)), 1);
    }

    #[test]
    fn raising_never_lowers_the_limit() {
        if let Some(limit) = raise_limit() {
            assert!(limit >= 1);
            assert_eq!(raise_limit(), Some(limit), "raising twice changes nothing");
        }
    }
}
