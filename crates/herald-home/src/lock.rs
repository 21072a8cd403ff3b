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
    _file: File,
    path: PathBuf,
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
                _file: file,
                path: path.to_path_buf(),
            }),
            Err(TryLockError::WouldBlock) => Err(LockError::Held(path.to_path_buf())),
            Err(TryLockError::Error(e)) => Err(io_err(e)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
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
}
