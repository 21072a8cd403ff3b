//! Keeping the instance lock where it can be seen, for as long as the gateway holds it.
//!
//! The lock is an OS lock on an open file, which the gateway holds for its whole life; a probe takes the
//! lock on the file *at the path*. Delete or replace that file under a running gateway and the probe
//! finds nothing held: `status` says not running, and a second gateway would start beside the first. A
//! start already refuses to serve beside a verified gateway (see `startup`), but the home should not read
//! as free in the first place. So the process holding the instance lock (a standalone gateway, or the
//! monitor) has the stop-marker watch ([`crate::marker::watch`]) also watch `run/` for changes to the
//! lock file's name, and a [`LockChecker`] runs on each: when the path no longer names the held file, it
//! locks the file now there as well and records a `lock_replaced` event. One notification instance
//! serves both — a second one would cost a wake-up thread and, on Linux, slow the process's exit (closing
//! an inotify descriptor waits for the kernel) — and nothing wakes while nothing happens.
//!
//! **Invariant:** the checker never keeps the lock alive: it holds only a weak reference, so the lock is
//! released exactly when its owner drops the [`HeldLock`], as before. A worker runs no watch at all (it
//! holds no file-notification descriptor; see ARCHITECTURE.md).

use std::sync::{Arc, Mutex, Weak};

use herald_home::Home;
use herald_home::lifecycle::{EventKind, LifecycleEvent, LifecycleLog};
use herald_home::lock::{InstanceLock, LockPlace};
use herald_home::sync::MutexExt;

/// A held lock. Dropping it releases the lock.
#[derive(Debug)]
pub struct HeldLock {
    lock: Arc<Mutex<InstanceLock>>,
    log: LifecycleLog,
    role: &'static str,
}

impl HeldLock {
    /// Holds `lock` for the process playing `role`, recording into `home`'s lifecycle log.
    pub fn new(home: &Home, lock: InstanceLock, role: &'static str) -> HeldLock {
        HeldLock {
            lock: Arc::new(Mutex::new(lock)),
            log: LifecycleLog::new(home.lifecycle_log()),
            role,
        }
    }

    /// What the marker watch calls when the lock file's name changes.
    pub fn checker(&self) -> LockChecker {
        LockChecker {
            lock: Arc::downgrade(&self.lock),
            log: self.log.clone(),
            role: self.role,
        }
    }
}

/// Keeps a [`HeldLock`] in place; cheap to clone, and inert once the lock is released.
#[derive(Debug, Clone)]
pub struct LockChecker {
    lock: Weak<Mutex<InstanceLock>>,
    log: LifecycleLog,
    role: &'static str,
}

impl LockChecker {
    /// The file name the checker cares about, in `run/`.
    pub fn file_name(home: &Home) -> Option<std::ffi::OsString> {
        home.lock_file().file_name().map(ToOwned::to_owned)
    }

    /// Keeps the lock in place, and records (and logs) when it had to.
    pub fn check(&self) {
        let Some(lock) = self.lock.upgrade() else {
            return;
        };
        let (checked, path) = {
            let mut held = lock.lock_unpoisoned();
            (held.keep_in_place(), held.path().display().to_string())
        };
        drop(lock);
        let outcome = match checked {
            Ok(LockPlace::Intact) => return,
            Ok(LockPlace::Restored) => {
                tracing::warn!("the instance lock {path} was deleted or replaced; locked it again");
                "restored"
            }
            Ok(LockPlace::HeldElsewhere) => {
                tracing::warn!(
                    "the instance lock {path} was deleted or replaced, and another process locked the new \
                     file first; it must not serve beside this gateway"
                );
                "held_elsewhere"
            }
            Err(e) => {
                tracing::warn!("cannot check the instance lock: {e}");
                return;
            }
        };
        let event = LifecycleEvent::new(EventKind::LockReplaced, std::process::id())
            .with("role", self.role)
            .with("path", path.as_str())
            .with("outcome", outcome);
        if let Err(e) = self.log.append(&event) {
            tracing::warn!("{e}");
        }
    }
}
