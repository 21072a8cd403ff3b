//! The planned-stop marker: a file a stopper writes when the control channel cannot be reached.
//!
//! The gateway watches `run/stop/` with OS file notifications (inotify, FSEvents, ReadDirectoryChangesW), so a
//! marker is acted on as soon as it lands. Only when notifications are unavailable (an exhausted inotify
//! limit, say) does it fall back to checking once a second, and it says so in its log.
//!
//! **Invariant:** a marker is consumed or removed by the gateway that reads it. One addressed to another
//! process, expired, or unreadable is removed and logged — never obeyed — so a leftover can never stop a
//! successor.

use std::path::Path;
use std::time::Duration;

use herald_home::Home;
use herald_home::atomic::{RecordRead, read_record, remove_if_exists};
use herald_home::records::{MarkerVerdict, ProcessKey, StopMarker};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::lock_watch::LockChecker;

/// Keeps the watch alive; dropping it stops watching.
#[derive(Debug)]
pub enum MarkerWatch {
    Notify(#[allow(dead_code)] notify::RecommendedWatcher),
    Polling(tokio::task::JoinHandle<()>),
}

impl Drop for MarkerWatch {
    fn drop(&mut self) {
        if let MarkerWatch::Polling(task) = self {
            task.abort();
        }
    }
}

/// Starts watching `home`'s marker dir; `wake` receives a message whenever the marker may have changed.
/// With a `lock` checker, the same notifications also watch `run/` and run the checker whenever the
/// instance lock's name changes (see [`crate::lock_watch`]); the fallback poll runs it on every tick.
pub fn watch(home: &Home, wake: mpsc::UnboundedSender<()>, lock: Option<LockChecker>) -> MarkerWatch {
    let name = Home::stop_marker_name();
    let lock_name = LockChecker::file_name(home);
    let notify_wake = wake.clone();
    let notify_lock = lock.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let (marker, locked) = match &event {
            Ok(event) => (
                event
                    .paths
                    .iter()
                    .any(|p| p.file_name().is_some_and(|n| n == name)),
                event.paths.iter().any(|p| p.file_name() == lock_name.as_deref()),
            ),
            Err(_) => (true, true),
        };
        if marker {
            let _ = notify_wake.send(());
        }
        if locked && let Some(lock) = &notify_lock {
            lock.check();
        }
    })
    .and_then(|mut watcher| {
        watcher.watch(&home.marker_dir(), RecursiveMode::NonRecursive)?;
        // Windows: a file held open cannot lose its name, so there is nothing to watch for.
        if lock.is_some() && cfg!(unix) {
            watcher.watch(&home.run_dir(), RecursiveMode::NonRecursive)?;
        }
        Ok(watcher)
    });
    match watcher {
        Ok(watcher) => MarkerWatch::Notify(watcher),
        Err(e) => {
            tracing::warn!(
                "file notifications unavailable ({e}); checking for a stop marker (and the instance lock) \
                 once a second"
            );
            MarkerWatch::Polling(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    if let Some(lock) = &lock {
                        lock.check();
                    }
                    if wake.send(()).is_err() {
                        return;
                    }
                }
            }))
        }
    }
}

/// What the gateway found when it looked for a marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkerCheck {
    None,
    /// A valid marker for this process: it has been consumed; stop now.
    Stop(StopMarker),
    /// A marker that was not obeyed, and has been removed.
    Ignored {
        why: String,
    },
}

/// Reads the marker and acts on the file according to its verdict.
pub fn check(home: &Home, me: &[ProcessKey], now_ms: u64) -> MarkerCheck {
    let path = home.stop_marker();
    let result = match read_record::<StopMarker>(&path) {
        RecordRead::Missing => return MarkerCheck::None,
        RecordRead::Invalid { reason } => MarkerCheck::Ignored { why: reason },
        RecordRead::Present(marker) => match marker.verdict(me, now_ms) {
            MarkerVerdict::ForMe => MarkerCheck::Stop(marker),
            MarkerVerdict::Foreign => MarkerCheck::Ignored {
                why: format!("addressed to {}, not to this process", marker.target),
            },
            MarkerVerdict::Expired => MarkerCheck::Ignored {
                why: format!(
                    "expired at {}",
                    herald_home::time::rfc3339_ms(marker.expires_at_ms)
                ),
            },
        },
    };
    remove(&path);
    result
}

fn remove(path: &Path) {
    if let Err(e) = remove_if_exists(path) {
        tracing::warn!("cannot remove the stop marker {}: {e}", path.display());
    }
}
