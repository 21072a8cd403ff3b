//! The one registry of running turns: it joins duplicates, counts turns in flight, and drains.
//!
//! **Invariant:** one mutex guards one map from a message (session and message id) to its running
//! turn, so "is this message already running?", "how many turns are in flight?" and "may a new turn
//! start?" are answered from the same state at the same instant. Consequently:
//!
//! * a message runs as at most one turn in this process at a time: a duplicate that arrives while its
//!   turn runs is handed that turn's outcome ([`Admission::Joined`]);
//! * once [`TurnTracker::begin_drain`] has been called, no new turn can start, and the set it returns is
//!   exactly the turns that were running at that instant. That set is handed to the [`ResumeLedger`]
//!   at the same moment, and the future `begin_drain` returns completes only once the ledger has
//!   durably recorded it — *before* the caller waits for the drain — so a kill during the drain still
//!   leaves a durable list to resume. Recording it is an awaited journal write, never a blocking call
//!   on an async thread.
//!
//! A turn's entry lives as long as its [`TurnGuard`]; dropping the guard (normally or by unwinding)
//! ends the turn, so a panicking turn cannot hold a drain up.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use herald_home::sync::MutexExt;
use tokio::sync::watch;

use crate::journal::{JournalError, Pending, Reply, SessionKey};

/// Identifies a turn within one process.
pub type TurnId = u64;

/// A message within its session: duplicates of it are joined, never run twice.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TurnKey {
    pub session: SessionKey,
    /// The client's idempotency key.
    pub message_id: String,
}

impl TurnKey {
    pub fn new(session: SessionKey, message_id: impl Into<String>) -> TurnKey {
        TurnKey {
            session,
            message_id: message_id.into(),
        }
    }
}

/// How a turn ended, as its waiters see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnOutcome {
    /// The reply is stored (an answer, or an explanation of a failure).
    Replied(Reply),
    /// The message is stored but its turn is not running in this process yet (it will be resumed).
    Stored,
    /// The gateway stopped before the turn finished; it is resumed after the next start.
    Interrupted,
    /// The journal failed; the turn is left to be resumed.
    Failed(JournalError),
}

/// Where waiters of a turn receive its outcome (`None` until there is one; closed if the turn's task
/// vanished without publishing).
pub type OutcomeReceiver = watch::Receiver<Option<TurnOutcome>>;

/// What the registry knows about a running turn, as a drain reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnInfo {
    pub id: TurnId,
    /// A label for logs: adapter and session, e.g. `http:alice`.
    pub label: String,
    /// The journal's id for the turn, once it is stored (see [`TurnGuard::bind`]).
    pub journal_id: Option<i64>,
}

/// Returned by [`TurnTracker::begin`] once draining: the caller should tell its client to retry later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the gateway is draining and accepts no new turns")]
pub struct Draining;

/// What [`TurnTracker::begin`] made of a message.
#[derive(Debug)]
pub enum Admission {
    /// No turn of this message is running: the caller runs it, and ends it through the guard.
    New(TurnGuard),
    /// The same message (same text) is running already: its outcome arrives here.
    Joined(OutcomeReceiver),
    /// The message id is running already with a different text.
    Conflict,
}

/// Where in-flight turns are recorded for resumption before a drain waits. The engine implements it
/// over the journal; without a journal there is nothing durable to mark.
pub trait ResumeLedger: Send + Sync {
    /// Records `turns` as cut (to be resumed after the next start); completes once that is durable.
    fn mark_for_resume(&self, turns: &[TurnInfo]) -> Pending<()>;
}

/// The outcome of a drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DrainReport {
    /// Turns in flight at drain start that finished within the budget.
    pub finished: usize,
    /// Turns still running when the budget ran out (left for resume).
    pub cut: usize,
}

#[derive(Debug)]
struct Entry {
    id: TurnId,
    text: String,
    journal_id: Option<i64>,
    outcome: Arc<watch::Sender<Option<TurnOutcome>>>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: TurnId,
    running: HashMap<TurnKey, Entry>,
    draining: bool,
}

/// The registry. Shared, cheap to clone.
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
        // Every critical section is one map operation or one flag: a panic cannot leave it half-updated.
        self.inner.lock_unpoisoned()
    }

    /// Starts the turn of `key` — or, when it runs already, joins it. Refused once a drain has begun
    /// (a duplicate too: its client retries and then finds the stored reply).
    pub fn begin(&self, key: TurnKey, text: &str) -> Result<Admission, Draining> {
        let mut inner = self.lock();
        if inner.draining {
            return Err(Draining);
        }
        if let Some(existing) = inner.running.get(&key) {
            return Ok(if existing.text == text {
                Admission::Joined(existing.outcome.subscribe())
            } else {
                Admission::Conflict
            });
        }
        inner.next_id += 1;
        let id = inner.next_id;
        let outcome = Arc::new(watch::Sender::new(None));
        inner.running.insert(
            key.clone(),
            Entry {
                id,
                text: text.to_owned(),
                journal_id: None,
                outcome: outcome.clone(),
            },
        );
        self.count.send_replace(inner.running.len());
        Ok(Admission::New(TurnGuard {
            registry: self.clone(),
            key,
            id,
            outcome,
        }))
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

    /// Refuses new turns from the moment it is called, takes the set of turns in flight at that
    /// instant, and hands it to the ledger, when given. The returned future completes with that set
    /// (oldest first) once the ledger has durably recorded it: await it before waiting for the drain.
    /// Idempotent: a second call returns the current set.
    pub fn begin_drain(
        &self,
        ledger: Option<&dyn ResumeLedger>,
    ) -> impl Future<Output = Result<Vec<TurnInfo>, JournalError>> + Send + use<> {
        let mut snapshot: Vec<TurnInfo> = {
            let mut inner = self.lock();
            inner.draining = true;
            self.drain.send_replace(true);
            inner
                .running
                .iter()
                .map(|(key, entry)| TurnInfo {
                    id: entry.id,
                    label: key.session.to_string(),
                    journal_id: entry.journal_id,
                })
                .collect()
        };
        snapshot.sort_by_key(|t| t.id);
        let marked = ledger.map(|ledger| ledger.mark_for_resume(&snapshot));
        async move {
            if let Some(marked) = marked {
                marked.await?;
            }
            Ok(snapshot)
        }
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
        let live: HashSet<TurnId> = self.lock().running.values().map(|e| e.id).collect();
        let cut = at_start.iter().filter(|t| live.contains(&t.id)).count();
        DrainReport {
            finished: at_start.len() - cut,
            cut,
        }
    }

    /// Tells everyone still waiting on a turn without an outcome that the gateway is stopping (after a
    /// drain cut turns short).
    pub fn interrupt_waiters(&self) {
        for entry in self.lock().running.values() {
            entry.outcome.send_if_modified(|outcome| {
                if outcome.is_none() {
                    *outcome = Some(TurnOutcome::Interrupted);
                    true
                } else {
                    false
                }
            });
        }
    }

    fn end(&self, key: &TurnKey, id: TurnId) {
        let mut inner = self.lock();
        if inner.running.get(key).is_some_and(|entry| entry.id == id) {
            inner.running.remove(key);
        }
        self.count.send_replace(inner.running.len());
    }
}

/// A running turn. Dropping it (normally or by unwinding) ends the turn; waiters that have no outcome
/// by then see the turn as interrupted.
#[derive(Debug)]
pub struct TurnGuard {
    registry: TurnTracker,
    key: TurnKey,
    id: TurnId,
    outcome: Arc<watch::Sender<Option<TurnOutcome>>>,
}

impl TurnGuard {
    pub fn id(&self) -> TurnId {
        self.id
    }

    pub fn key(&self) -> &TurnKey {
        &self.key
    }

    /// Records the journal's id for this turn, so a drain can mark it for resume.
    pub fn bind(&self, journal_id: i64) {
        if let Some(entry) = self.registry.lock().running.get_mut(&self.key)
            && entry.id == self.id
        {
            entry.journal_id = Some(journal_id);
        }
    }

    /// A receiver of this turn's outcome.
    pub fn subscribe(&self) -> OutcomeReceiver {
        self.outcome.subscribe()
    }

    /// Tells the waiters an outcome now, while the turn stays registered (a reply that could not be
    /// stored yet and is being retried, say).
    pub fn publish(&self, outcome: TurnOutcome) {
        self.outcome.send_replace(Some(outcome));
    }

    /// Publishes the final outcome, then ends the turn. In that order: a duplicate either joins the
    /// entry (and sees this outcome) or, once it is gone, finds the stored reply in the journal.
    pub fn finish(self, outcome: TurnOutcome) {
        self.publish(outcome);
    }
}

impl Drop for TurnGuard {
    fn drop(&mut self) {
        self.registry.end(&self.key, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Completion;

    fn key(name: &str) -> TurnKey {
        TurnKey::new(SessionKey::new("test", name), "m1")
    }

    fn begin(tracker: &TurnTracker, name: &str) -> TurnGuard {
        match tracker.begin(key(name), "hello") {
            Ok(Admission::New(guard)) => guard,
            other => panic!("expected a new turn, got {other:?}"),
        }
    }

    /// Records what it was asked to mark; completes at once, or only when the test says so.
    #[derive(Default)]
    struct Recorder {
        marked: Mutex<Vec<TurnId>>,
        hold: Mutex<Option<Completion<()>>>,
        held: bool,
    }

    impl ResumeLedger for Recorder {
        fn mark_for_resume(&self, turns: &[TurnInfo]) -> Pending<()> {
            self.marked.lock().unwrap().extend(turns.iter().map(|t| t.id));
            if self.held {
                let (done, pending) = Pending::channel();
                *self.hold.lock().unwrap() = Some(done);
                pending
            } else {
                Pending::ready(Ok(()))
            }
        }
    }

    #[tokio::test]
    async fn idle_drain_is_immediate() {
        let tracker = TurnTracker::new();
        let set = tracker.begin_drain(None).await.unwrap();
        let report = tracker.finish_drain(&set, Duration::from_secs(30)).await;
        assert_eq!(report, DrainReport::default());
    }

    #[tokio::test]
    async fn drain_refuses_new_turns_and_records_the_in_flight_set_first() {
        let tracker = TurnTracker::new();
        let a = begin(&tracker, "a");
        let b = begin(&tracker, "b");
        let ledger = Recorder::default();
        let set = tracker.begin_drain(Some(&ledger)).await.unwrap();
        assert_eq!(*ledger.marked.lock().unwrap(), vec![a.id(), b.id()]);
        assert_eq!(tracker.begin(key("c"), "hello").unwrap_err(), Draining);

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

    #[tokio::test]
    async fn begin_drain_closes_the_door_at_once_and_completes_only_once_the_marks_are_durable() {
        let tracker = TurnTracker::new();
        let a = begin(&tracker, "a");
        a.bind(41);
        let ledger = Recorder {
            held: true,
            ..Recorder::default()
        };
        let mut marking = std::pin::pin!(tracker.begin_drain(Some(&ledger)));
        // Called, not yet awaited: no new turn (nor a duplicate) can start, and the marks are queued.
        assert!(tracker.is_draining());
        assert!(*tracker.drain_signal().borrow());
        assert_eq!(tracker.begin(key("b"), "hello").unwrap_err(), Draining);
        assert_eq!(tracker.begin(key("a"), "hello").unwrap_err(), Draining);
        assert_eq!(*ledger.marked.lock().unwrap(), vec![a.id()]);
        // Not complete while the ledger has not made the marks durable.
        assert!(
            tokio::time::timeout(Duration::from_millis(30), &mut marking)
                .await
                .is_err()
        );
        ledger.hold.lock().unwrap().take().unwrap().complete(Ok(()));
        let set = marking.await.unwrap();
        assert_eq!(
            set,
            vec![TurnInfo {
                id: a.id(),
                label: "test:a".into(),
                journal_id: Some(41),
            }]
        );
    }

    #[tokio::test]
    async fn a_failed_mark_is_reported() {
        let tracker = TurnTracker::new();
        let _a = begin(&tracker, "a");
        let ledger = Recorder {
            held: true,
            ..Recorder::default()
        };
        let marking = tracker.begin_drain(Some(&ledger));
        let full = JournalError::new(crate::journal::JournalErrorKind::Full, "disk full");
        ledger
            .hold
            .lock()
            .unwrap()
            .take()
            .unwrap()
            .complete(Err(full.clone()));
        assert_eq!(marking.await.unwrap_err(), full);
        assert!(tracker.is_draining());
    }

    #[tokio::test]
    async fn a_duplicate_joins_the_running_turn_and_a_reused_id_conflicts() {
        let tracker = TurnTracker::new();
        let guard = begin(&tracker, "a");
        let mut joined = match tracker.begin(key("a"), "hello").unwrap() {
            Admission::Joined(outcome) => outcome,
            other => panic!("expected to join, got {other:?}"),
        };
        assert!(matches!(
            tracker.begin(key("a"), "another text").unwrap(),
            Admission::Conflict
        ));
        // Joining makes no second turn.
        assert_eq!(tracker.in_flight(), 1);
        let reply = Reply {
            text: "hi".into(),
            failed: false,
        };
        guard.finish(TurnOutcome::Replied(reply.clone()));
        let seen = joined.wait_for(Option::is_some).await.unwrap().clone();
        assert_eq!(seen, Some(TurnOutcome::Replied(reply)));
        assert_eq!(tracker.in_flight(), 0);
        // Once ended, the same message starts a new turn (the caller then finds it in the journal).
        let again = begin(&tracker, "a");
        assert_eq!(tracker.in_flight(), 1);
        drop(again);
    }

    #[tokio::test]
    async fn waiters_of_a_dropped_turn_are_not_left_hanging() {
        let tracker = TurnTracker::new();
        let a = begin(&tracker, "a");
        let mut of_a = a.subscribe();
        drop(a);
        assert!(of_a.wait_for(Option::is_some).await.is_err());
        assert_eq!(tracker.in_flight(), 0);
    }

    #[tokio::test]
    async fn interrupt_reaches_only_waiters_without_an_outcome() {
        let tracker = TurnTracker::new();
        let a = begin(&tracker, "a");
        let of_a = a.subscribe();
        let b = begin(&tracker, "b");
        let of_b = b.subscribe();
        let failed = TurnOutcome::Failed(JournalError::closed());
        b.publish(failed.clone());
        tracker.interrupt_waiters();
        assert_eq!(*of_a.borrow(), Some(TurnOutcome::Interrupted));
        assert_eq!(*of_b.borrow(), Some(failed));
        assert_eq!(tracker.in_flight(), 2);
    }

    #[tokio::test]
    async fn the_in_flight_count_is_published() {
        let tracker = TurnTracker::new();
        let count = tracker.subscribe();
        let a = begin(&tracker, "a");
        assert_eq!(*count.borrow(), 1);
        drop(a);
        assert_eq!(*count.borrow(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn drain_returns_as_soon_as_the_last_turn_ends() {
        let tracker = TurnTracker::new();
        let a = begin(&tracker, "a");
        let set = tracker.begin_drain(None).await.unwrap();
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
            let _guard = begin(&t2, "boom");
            panic!("turn failed");
        })
        .join();
        assert_eq!(tracker.in_flight(), 0);
    }
}
