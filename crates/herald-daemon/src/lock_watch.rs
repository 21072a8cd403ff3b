//! Keeping the instance lock where it can be seen, for as long as the gateway holds it.
//!
//! The lock is an OS lock on an open file, which the gateway holds for its whole life; a probe takes the
//! lock on the file *at the path*. Delete or replace that file under a running gateway and the probe
//! finds nothing held: `status` says not running, and a second gateway would start beside the first. A
//! start already refuses to serve beside a verified gateway (see `startup`), but the home should not read
//! as free in the first place. So the process holding the lock (a standalone gateway, or the monitor)
//! checks every [`CHECK_EVERY`] that the path still names its file, and when it does not, locks the file
//! now at the path as well and records a `lock_replaced` event.
//!
//! **Invariant:** the watcher never keeps the lock alive: it holds only a weak reference, so the lock is
//! released exactly when its owner drops it, as before.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use herald_home::Home;
use herald_home::lifecycle::{EventKind, LifecycleEvent, LifecycleLog};
use herald_home::lock::{InstanceLock, LockPlace};
use herald_home::sync::MutexExt;

/// How often the lock's path is checked: a `stat` per check, so cheap, yet rare enough not to wake a
/// sleeping laptop often.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Shares `lock` with a watcher thread that checks it every `every`; drop the returned handle to release
/// the lock (the watcher then stops at its next check).
pub fn watch(
    home: &Home,
    lock: InstanceLock,
    role: &'static str,
    every: Duration,
) -> Arc<Mutex<InstanceLock>> {
    let lock = Arc::new(Mutex::new(lock));
    let weak = Arc::downgrade(&lock);
    let log = LifecycleLog::new(home.lifecycle_log());
    let spawned = std::thread::Builder::new()
        .name("herald-lock-watch".into())
        .spawn(move || check_until_released(&weak, &log, role, every));
    if let Err(e) = spawned {
        tracing::warn!("cannot watch the instance lock: {e}");
    }
    lock
}

fn check_until_released(lock: &Weak<Mutex<InstanceLock>>, log: &LifecycleLog, role: &str, every: Duration) {
    loop {
        std::thread::sleep(every);
        let Some(lock) = lock.upgrade() else {
            return;
        };
        let checked = lock.lock_unpoisoned().keep_in_place();
        let path = lock.lock_unpoisoned().path().display().to_string();
        drop(lock);
        let outcome = match checked {
            Ok(LockPlace::Intact) => continue,
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
                continue;
            }
        };
        let event = LifecycleEvent::new(EventKind::LockReplaced, std::process::id())
            .with("role", role)
            .with("path", path.as_str())
            .with("outcome", outcome);
        if let Err(e) = log.append(&event) {
            tracing::warn!("{e}");
        }
    }
}
