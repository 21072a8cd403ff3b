//! How much room the file system holding a path has left (for `herald doctor`: a full disk stops the
//! journal from storing turns).
//!
//! **Invariant:** one signature on every OS (the OS leaves: `statvfs`, `GetDiskFreeSpaceExW`), counting
//! what this user may still write — not the space reserved for root.

use std::io;
use std::path::Path;

/// Bytes this user may still write on the file system holding `path` (which must exist).
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    crate::os::free_space(path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_temp_dir_has_some_room() {
        let free = super::free_bytes(&std::env::temp_dir()).unwrap();
        assert!(free > 0);
        assert!(super::free_bytes(std::path::Path::new("/surely/not/here/at/all")).is_err());
    }
}
