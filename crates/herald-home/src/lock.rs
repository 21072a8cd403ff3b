//! The instance lock: the one source of truth for "is a gateway running on this home?".
//!
//! A gateway holds an exclusive OS lock on `run/instance.lock` (std's `File::try_lock`: `flock` on Unix,
//! `LockFileEx` on Windows) for its whole life. The OS drops the lock when the process dies, however it
//! dies, so unlike a PID file it can never be stale and never names a recycled pid.
//!
//! **Invariant:** only a gateway holds the lock for longer than an instant. Probes ([`InstanceLock::is_held`])
//! and waiters ([`InstanceLock::wait_released`]) take it momentarily and release it at once; a starting
//! gateway therefore retries for a short window before concluding the home is busy.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// A held instance lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct InstanceLock {
    /// The locked file now at `path` (see [`InstanceLock::keep_in_place`]).
    file: File,
    /// Files locked earlier whose name was deleted or replaced: held on, so the lock stays ours.
    _unlinked: Vec<File>,
    path: PathBuf,
}

/// What [`InstanceLock::keep_in_place`] found at the lock's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockPlace {
    /// The path names the file this lock holds.
    Intact,
    /// The file had been deleted or replaced; the file now at the path (made anew when missing) is
    /// locked too, so the home reads as locked again.
    Restored,
    /// The file had been deleted or replaced, and the file now at the path is locked by another process
    /// (one that started in between: it finds this gateway and refuses to serve).
    HeldElsewhere,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("the instance lock {0} is held by another process")]
    Held(PathBuf),
    #[error("cannot use the instance lock {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl InstanceLock {
    /// Takes the lock without waiting.
    pub fn try_acquire(path: &Path) -> Result<InstanceLock, LockError> {
        let io_err = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        crate::ownership::no_follow(&mut options);
        let file = options.open(path).map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => Ok(InstanceLock {
                file,
                _unlinked: Vec::new(),
                path: path.to_path_buf(),
            }),
            Err(TryLockError::WouldBlock) => Err(LockError::Held(path.to_path_buf())),
            Err(TryLockError::Error(e)) => Err(io_err(e)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks that the lock's path still names the file this lock holds. A lock file deleted or replaced
    /// under a running gateway would let anyone who probes the path conclude the home is free; so the
    /// file now at the path is locked as well (made anew, without following links, when missing), and
    /// the old one is held on. On Windows a file this process holds open cannot be deleted or replaced
    /// (its deletion stays pending until the handle closes), so there it is always intact.
    pub fn keep_in_place(&mut self) -> Result<LockPlace, LockError> {
        if same_file(&self.file, &self.path).map_err(|source| LockError::Io {
            path: self.path.clone(),
            source,
        })? {
            return Ok(LockPlace::Intact);
        }
        match InstanceLock::try_acquire(&self.path) {
            Ok(fresh) => {
                let old = std::mem::replace(&mut self.file, fresh.file);
                self._unlinked.push(old);
                Ok(LockPlace::Restored)
            }
            Err(LockError::Held(_)) => Ok(LockPlace::HeldElsewhere),
            Err(e) => Err(e),
        }
    }

    /// Whether some process holds the lock right now. A missing lock file means nobody does. The probe
    /// takes and releases the lock; it never creates the file.
    pub fn is_held(path: &Path) -> io::Result<bool> {
        let file = match OpenOptions::new().read(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        match file.try_lock() {
            Ok(()) => Ok(false),
            Err(TryLockError::WouldBlock) => Ok(true),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    /// Waits until nobody holds the lock, up to `timeout`. Event-driven: a helper thread blocks in the OS
    /// lock call, which returns the moment the holder exits. Returns whether the lock was released in time.
    pub fn wait_released(path: &Path, timeout: Duration) -> io::Result<bool> {
        let file = match OpenOptions::new().read(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(e),
        };
        match file.try_lock() {
            Ok(()) => return Ok(true),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => return Err(e),
        }
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("herald-lock-wait".into())
            .spawn(move || {
                let result = file.lock();
                // Release at once: this thread only witnesses the release, it must not keep the home busy.
                drop(file);
                let _ = tx.send(result);
            })?;
        match rx.recv_timeout(timeout) {
            Ok(Ok(())) => Ok(true),
            Ok(Err(e)) => Err(e),
            Err(_) => Ok(false),
        }
    }
}

/// Whether `path` names the file `file` is open on (a missing path does not).
#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let held = file.metadata()?;
    match std::fs::symlink_metadata(path) {
        Ok(named) => Ok(named.dev() == held.dev() && named.ino() == held.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// See [`InstanceLock::keep_in_place`]: a file open here cannot lose its name on Windows.
#[cfg(not(unix))]
fn same_file(_file: &File, _path: &Path) -> io::Result<bool> {
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_within_and_across_handles() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("instance.lock");
        assert!(!InstanceLock::is_held(&path).unwrap());
        let held = InstanceLock::try_acquire(&path).unwrap();
        assert!(InstanceLock::is_held(&path).unwrap());
        assert!(matches!(
            InstanceLock::try_acquire(&path),
            Err(LockError::Held(_))
        ));
        assert!(!InstanceLock::wait_released(&path, Duration::from_millis(50)).unwrap());
        drop(held);
        // The timed-out waiter above may still take the lock for an instant; it must let go at once.
        assert!(InstanceLock::wait_released(&path, Duration::from_secs(5)).unwrap());
        let again = InstanceLock::try_acquire(&path).or_else(|_| {
            std::thread::sleep(Duration::from_millis(50));
            InstanceLock::try_acquire(&path)
        });
        assert!(again.is_ok());
    }

    #[test]
    fn wait_released_wakes_when_the_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("instance.lock");
        let held = InstanceLock::try_acquire(&path).unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(held);
        });
        let start = std::time::Instant::now();
        assert!(InstanceLock::wait_released(&path, Duration::from_secs(10)).unwrap());
        assert!(start.elapsed() < Duration::from_secs(5));
        releaser.join().unwrap();
        // The waiter must not keep the lock.
        assert!(InstanceLock::try_acquire(&path).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn a_deleted_or_replaced_lock_file_is_locked_again_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("instance.lock");
        let mut lock = InstanceLock::try_acquire(&path).unwrap();
        assert_eq!(lock.keep_in_place().unwrap(), LockPlace::Intact);

        std::fs::remove_file(&path).unwrap();
        assert!(!InstanceLock::is_held(&path).unwrap(), "the hole this closes");
        assert_eq!(lock.keep_in_place().unwrap(), LockPlace::Restored);
        assert!(InstanceLock::is_held(&path).unwrap());
        assert_eq!(lock.keep_in_place().unwrap(), LockPlace::Intact);

        // Replaced by another file (a rename over it): that one is locked too.
        let other = dir.path().join("other");
        std::fs::write(&other, b"").unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert_eq!(lock.keep_in_place().unwrap(), LockPlace::Restored);
        assert!(InstanceLock::is_held(&path).unwrap());

        // Replaced by a file someone else locked first.
        std::fs::remove_file(&path).unwrap();
        let intruder = InstanceLock::try_acquire(&path).unwrap();
        assert_eq!(lock.keep_in_place().unwrap(), LockPlace::HeldElsewhere);
        drop(intruder);
        assert_eq!(lock.keep_in_place().unwrap(), LockPlace::Restored);
    }
}
