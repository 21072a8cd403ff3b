//! Keeping the instance lock where it can be seen, for as long as the gateway holds it.
//!
//! The lock is an OS lock on an open file, which the gateway holds for its whole life; a probe takes the
//! lock on the file *at the path*. Delete or replace that file under a running gateway and the probe
//! finds nothing held: `status` says not running, and a second gateway would start beside the first. A
//! start already refuses to serve beside a verified gateway (see `startup`), but the home should not read
//! as free in the first place. So the process holding the instance lock (a standalone gateway, or the
//! monitor) watches `run/` for changes to the lock file's name (file notifications: no wake-up while
//! nothing happens, and the check runs on the notification thread itself), and when the path no longer
//! names its file, locks the file now there as well and records a `lock_replaced` event. Where
//! notifications are unavailable a thread checks every [`POLL_FALLBACK`] instead.
//!
//! **Invariant:** the watcher never keeps the lock alive: it holds only a weak reference, so the lock is
//! released exactly when its owner drops the [`HeldLock`], as before. A worker runs no watcher (it holds
//! no file-notification descriptor; see ARCHITECTURE.md), and neither does Windows, where a file held
//! open cannot lose its name.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use herald_home::Home;
use herald_home::lifecycle::{EventKind, LifecycleEvent, LifecycleLog};
use herald_home::lock::{InstanceLock, LockPlace};
use herald_home::sync::MutexExt;
use notify::{RecommendedWatcher, RecursiveMode, Watcher};

/// How often the lock's path is checked when file notifications are unavailable.
pub const POLL_FALLBACK: Duration = Duration::from_secs(5);

/// A held lock, and what keeps it in place. Dropping it releases the lock.
#[derive(Debug)]
pub struct HeldLock {
    _lock: Arc<Mutex<InstanceLock>>,
    _notifications: Option<RecommendedWatcher>,
}

/// Holds `lock` without watching it (a worker's own lock).
pub fn unwatched(lock: InstanceLock) -> HeldLock {
    HeldLock {
        _lock: Arc::new(Mutex::new(lock)),
        _notifications: None,
    }
}

/// Holds `lock` and keeps it in place (see the module documentation).
pub fn watch(home: &Home, lock: InstanceLock, role: &'static str) -> HeldLock {
    if !cfg!(unix) {
        return unwatched(lock);
    }
    let lock = Arc::new(Mutex::new(lock));
    let keeper = Keeper {
        lock: Arc::downgrade(&lock),
        log: LifecycleLog::new(home.lifecycle_log()),
        role,
    };
    let name = home.lock_file().file_name().map(ToOwned::to_owned);
    let on_event = keeper.clone();
    let notifications = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            Ok(event) => event.paths.iter().any(|p| p.file_name() == name.as_deref()),
            Err(_) => true,
        };
        if relevant {
            on_event.check();
        }
    })
    .and_then(|mut watcher| {
        watcher.watch(&home.run_dir(), RecursiveMode::NonRecursive)?;
        Ok(watcher)
    });
    let notifications = match notifications {
        Ok(watcher) => Some(watcher),
        Err(e) => {
            tracing::warn!(
                "file notifications unavailable ({e}); checking the instance lock every {}s",
                POLL_FALLBACK.as_secs()
            );
            let spawned = std::thread::Builder::new()
                .name("herald-lock-watch".into())
                .spawn(move || {
                    while keeper.lock.strong_count() > 0 {
                        std::thread::sleep(POLL_FALLBACK);
                        keeper.check();
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!("cannot watch the instance lock: {e}");
            }
            None
        }
    };
    HeldLock {
        _lock: lock,
        _notifications: notifications,
    }
}

/// What a check needs: the lock (weakly), where to record, and who records.
#[derive(Debug, Clone)]
struct Keeper {
    lock: Weak<Mutex<InstanceLock>>,
    log: LifecycleLog,
    role: &'static str,
}

impl Keeper {
    /// Keeps the lock in place, and records (and logs) when it had to.
    fn check(&self) {
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
