//! This process's own executable image, for starting another process of the same build (the monitor's
//! worker).
//!
//! **Invariant:** the copy runs *this* image, even when the file it was started from has been replaced
//! since — by `herald upgrade`, or a package manager renaming a new file over it. On Linux
//! `current_exe()` then names a path that the kernel marks " (deleted)" (or that now holds another
//! build), while `/proc/self/exe` still opens the image this process runs; so the worker is started from
//! there, with the original path as its `argv[0]` (what `ps`, the PID record and identity checks show).
//! Elsewhere `current_exe()` already names this image: macOS keeps the path it was started from, Windows
//! the path the running `.exe` was renamed to.

use std::io;
use std::path::PathBuf;

/// What to start to run this image again, and the `argv[0]` to give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnImage {
    pub program: PathBuf,
    pub arg0: PathBuf,
}

/// See the module documentation.
pub fn own_image() -> io::Result<OwnImage> {
    let exe = std::env::current_exe()?;
    let arg0 = strip_deleted(exe);
    if cfg!(target_os = "linux") && std::path::Path::new("/proc/self/exe").exists() {
        return Ok(OwnImage {
            program: PathBuf::from("/proc/self/exe"),
            arg0,
        });
    }
    Ok(OwnImage {
        program: arg0.clone(),
        arg0,
    })
}

/// The path without the " (deleted)" the Linux kernel appends to a replaced executable's link.
fn strip_deleted(path: PathBuf) -> PathBuf {
    match path.to_str().and_then(|p| p.strip_suffix(" (deleted)")) {
        Some(original) => PathBuf::from(original),
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_executable_keeps_its_original_name() {
        assert_eq!(
            strip_deleted(PathBuf::from("/opt/herald/herald (deleted)")),
            PathBuf::from("/opt/herald/herald")
        );
        assert_eq!(
            strip_deleted(PathBuf::from("/opt/herald/herald")),
            PathBuf::from("/opt/herald/herald")
        );
        let image = own_image().unwrap();
        assert!(image.program.exists(), "{image:?}");
    }
}
