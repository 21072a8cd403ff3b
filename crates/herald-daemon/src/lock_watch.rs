//! Keeping the instance lock where it can be seen, for as long as the gateway holds it.
//!
//! The lock is an OS lock on an open file, which the gateway holds for its whole life; a probe takes the
//! lock on the file *at the path*. Delete or replace that file under a running gateway and the probe
//! finds nothing held: `status` says not running, and a second gateway would start beside the first. A
//! start already refuses to serve beside a verified gateway (see `startup`), but the home should not read
//! as free in the first place. So the process holding the instance lock (a standalone gateway, or the
//! monitor) watches `run/` for changes to the lock file's name (file notifications: no wake-up while
//! nothing happens), and when the path no longer names its file, locks the file now there as well and
//! records a `lock_replaced` event. Where notifications are unavailable it checks every
//! [`POLL_FALLBACK`] instead.
//!
//! **Invariant:** the watcher never keeps the lock alive: it holds only a weak reference, so the lock is
//! released exactly when its owner drops it, as before. A worker runs no watcher (it holds no
//! file-notification descriptor; see ARCHITECTURE.md).

use std::sync::mpsc;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use herald_home::Home;
use herald_home::lifecycle::{EventKind, LifecycleEvent, LifecycleLog};
use herald_home::lock::{InstanceLock, LockPlace};
use herald_home::sync::MutexExt;
use notify::{RecursiveMode, Watcher};

/// How often the lock's path is checked when file notifications are unavailable.
pub const POLL_FALLBACK: Duration = Duration::from_secs(5);

/// Shares `lock` with a watcher thread that keeps it in place; drop the returned handle to release the
/// lock (the watcher then ends at its next wake-up).
pub fn watch(home: &Home, lock: InstanceLock, role: &'static str) -> Arc<Mutex<InstanceLock>> {
    if !cfg!(unix) {
        // A file held open cannot lose its name on Windows (see `InstanceLock::keep_in_place`).
        return unwatched(lock);
    }
    let lock = Arc::new(Mutex::new(lock));
    let weak = Arc::downgrade(&lock);
    let log = LifecycleLog::new(home.lifecycle_log());
    let (wake, woken) = mpsc::channel::<()>();
    let name = home.lock_file().file_name().map(ToOwned::to_owned);
    let notifications = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            Ok(event) => event.paths.iter().any(|p| p.file_name() == name.as_deref()),
            Err(_) => true,
        };
        if relevant {
            let _ = wake.send(());
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
            None
        }
    };
    let spawned = std::thread::Builder::new()
        .name("herald-lock-watch".into())
        .spawn(move || {
            // Kept alive as long as the thread: dropping it ends the notifications.
            let _notifications = notifications.as_ref();
            let wait = if notifications.is_some() {
                None
            } else {
                Some(POLL_FALLBACK)
            };
            check_until_released(&weak, &woken, wait, &log, role);
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot watch the instance lock: {e}");
    }
    lock
}

/// The same shape as [`watch`], for a lock nobody watches (a worker's own lock).
pub fn unwatched(lock: InstanceLock) -> Arc<Mutex<InstanceLock>> {
    Arc::new(Mutex::new(lock))
}

/// Checks the lock each time `woken` fires (or every `poll`, when given), until it is released.
fn check_until_released(
    lock: &Weak<Mutex<InstanceLock>>,
    woken: &mpsc::Receiver<()>,
    poll: Option<Duration>,
    log: &LifecycleLog,
    role: &str,
) {
    loop {
        match poll {
            Some(every) => match woken.recv_timeout(every) {
                Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(every),
            },
            None => {
                if woken.recv().is_err() {
                    return;
                }
            }
        }
        let Some(lock) = lock.upgrade() else {
            return;
        };
        let (checked, path) = {
            let mut held = lock.lock_unpoisoned();
            (held.keep_in_place(), held.path().display().to_string())
        };
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
