//! Turns in flight, and the drain that waits for them.
//!
//! **Invariant:** once [`TurnTracker::begin_drain`] returns, no new turn can start, and the set it
//! returned is exactly the turns that were running at that instant. The ledger hook is called with that
//! set *before* the drain waits, so a kill during the drain still leaves a durable list to resume.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

/// Identifies a turn within one process.
pub type TurnId = u64;

/// What the tracker knows about a running turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnInfo {
    pub id: TurnId,
    /// A label for logs: adapter and session, e.g. `http:alice`.
    pub label: String,
    /// The journal's id for the turn, once it is stored (see [`TurnGuard::bind`]).
    pub journal_id: Option<i64>,
}

#[derive(Debug)]
struct Running {
    label: String,
    journal_id: Option<i64>,
}

/// Returned by [`TurnTracker::begin`] once draining: the caller should tell its client to retry later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the gateway is draining and accepts no new turns")]
pub struct Draining;

/// Where in-flight turns are recorded for resumption before a drain. The session journal implements it;
/// without a journal there is nothing durable to mark.
pub trait ResumeLedger: Send + Sync {
    fn mark_for_resume(&self, turns: &[TurnInfo]) -> std::io::Result<()>;
}

/// The outcome of a drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DrainReport {
    /// Turns in flight at drain start that finished within the budget.
    pub finished: usize,
    /// Turns still running when the budget ran out (left for resume).
    pub cut: usize,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: TurnId,
    running: BTreeMap<TurnId, Running>,
    draining: bool,
}

/// Shared, cheap to clone.
#[derive(Debug, Clone)]
pub struct TurnTracker {
    inner: Arc<Mutex<Inner>>,
    /// Carries the in-flight count; waiters wake on every change instead of polling.
    count: Arc<watch::Sender<usize>>,
    /// Turns `true` when a drain begins (adapters that pull messages stop pulling).
    drain: Arc<watch::Sender<bool>>,
}

impl Default for TurnTracker {
    fn default() -> Self {
        TurnTracker::new()
    }
}

impl TurnTracker {
    pub fn new() -> TurnTracker {
        TurnTracker {
            inner: Arc::default(),
            count: Arc::new(watch::Sender::new(0)),
            drain: Arc::new(watch::Sender::new(false)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave `Inner` inconsistent (every update is one statement).
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts a turn; the guard ends it when dropped.
    pub fn begin(&self, label: impl Into<String>) -> Result<TurnGuard, Draining> {
        let mut inner = self.lock();
        if inner.draining {
            return Err(Draining);
        }
        inner.next_id += 1;
        let id = inner.next_id;
        inner.running.insert(
            id,
            Running {
                label: label.into(),
                journal_id: None,
            },
        );
        self.count.send_replace(inner.running.len());
        Ok(TurnGuard {
            tracker: self.clone(),
            id,
        })
    }

    pub fn in_flight(&self) -> usize {
        self.lock().running.len()
    }

    pub fn is_draining(&self) -> bool {
        self.lock().draining
    }

    /// A receiver that changes whenever the in-flight count does (for the state record).
    pub fn subscribe(&self) -> watch::Receiver<usize> {
        self.count.subscribe()
    }

    /// A receiver that turns `true` when a drain begins.
    pub fn drain_signal(&self) -> watch::Receiver<bool> {
        self.drain.subscribe()
    }

    /// Refuses new turns from now on and returns the turns in flight at this instant. The ledger, when
    /// given, records them before this returns. Idempotent: a second call returns the current set.
    pub fn begin_drain(&self, ledger: Option<&dyn ResumeLedger>) -> std::io::Result<Vec<TurnInfo>> {
        let snapshot: Vec<TurnInfo> = {
            let mut inner = self.lock();
            inner.draining = true;
            self.drain.send_replace(true);
            inner
                .running
                .iter()
                .map(|(id, running)| TurnInfo {
                    id: *id,
                    label: running.label.clone(),
                    journal_id: running.journal_id,
                })
                .collect()
        };
        if let Some(ledger) = ledger {
            ledger.mark_for_resume(&snapshot)?;
        }
        Ok(snapshot)
    }

    /// Waits until the turns of `at_start` have finished, or `budget` runs out.
    pub async fn finish_drain(&self, at_start: &[TurnInfo], budget: Duration) -> DrainReport {
        let mut rx = self.count.subscribe();
        let wait = async {
            while self.report(at_start).cut > 0 {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(budget, wait).await;
        self.report(at_start)
    }

    /// How many of `at_start` have finished and how many still run, right now (a drain cut short).
    pub fn report(&self, at_start: &[TurnInfo]) -> DrainReport {
        let inner = self.lock();
        let cut = at_start
            .iter()
            .filter(|t| inner.running.contains_key(&t.id))
            .count();
        DrainReport {
            finished: at_start.len() - cut,
            cut,
        }
    }

    fn end(&self, id: TurnId) {
        let mut inner = self.lock();
        inner.running.remove(&id);
        self.count.send_replace(inner.running.len());
    }
}

/// A running turn. Dropping it (normally or by unwinding) ends the turn.
#[derive(Debug)]
pub struct TurnGuard {
    tracker: TurnTracker,
    id: TurnId,
}

impl TurnGuard {
    pub fn id(&self) -> TurnId {
        self.id
    }

    /// Records the journal's id for this turn, so a drain can mark it for resume.
    pub fn bind(&self, journal_id: i64) {
        if let Some(running) = self.tracker.lock().running.get_mut(&self.id) {
            running.journal_id = Some(journal_id);
        }
    }
}

impl Drop for TurnGuard {
    fn drop(&mut self) {
        self.tracker.end(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Recorder(Mutex<Vec<TurnId>>);
    impl ResumeLedger for Recorder {
        fn mark_for_resume(&self, turns: &[TurnInfo]) -> std::io::Result<()> {
            self.0.lock().unwrap().extend(turns.iter().map(|t| t.id));
            Ok(())
        }
    }

    #[tokio::test]
    async fn idle_drain_is_immediate() {
        let tracker = TurnTracker::new();
        let set = tracker.begin_drain(None).unwrap();
        let report = tracker.finish_drain(&set, Duration::from_secs(30)).await;
        assert_eq!(report, DrainReport::default());
    }

    #[tokio::test]
    async fn drain_refuses_new_turns_and_records_the_in_flight_set_first() {
        let tracker = TurnTracker::new();
        let a = tracker.begin("a").unwrap();
        let b = tracker.begin("b").unwrap();
        let ledger = Recorder(Mutex::new(Vec::new()));
        let set = tracker.begin_drain(Some(&ledger)).unwrap();
        assert_eq!(*ledger.0.lock().unwrap(), vec![a.id(), b.id()]);
        assert_eq!(tracker.begin("c").unwrap_err(), Draining);

        let finisher = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(a);
        });
        let report = tracker.finish_drain(&set, Duration::from_millis(300)).await;
        finisher.await.unwrap();
        assert_eq!(report, DrainReport { finished: 1, cut: 1 });
        drop(b);
        assert_eq!(tracker.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn drain_returns_as_soon_as_the_last_turn_ends() {
        let tracker = TurnTracker::new();
        let a = tracker.begin("a").unwrap();
        let set = tracker.begin_drain(None).unwrap();
        let t = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            drop(a);
        });
        let start = tokio::time::Instant::now();
        let report = tracker.finish_drain(&set, Duration::from_secs(30)).await;
        t.await.unwrap();
        assert_eq!(report, DrainReport { finished: 1, cut: 0 });
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[test]
    fn a_panicking_turn_still_ends() {
        let tracker = TurnTracker::new();
        let t2 = tracker.clone();
        let _ = std::thread::spawn(move || {
            let _guard = t2.begin("boom").unwrap();
            panic!("turn failed");
        })
        .join();
        assert_eq!(tracker.in_flight(), 0);
    }
}
