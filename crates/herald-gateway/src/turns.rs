//! The one registry of turns: it joins duplicates, bounds how many turns run at once, keeps the rest
//! in line, counts them, and drains.
//!
//! **Invariant:** one mutex guards one map from a message (session and message id) to its turn, the
//! line of turns waiting for a slot, and the drain flag, so "is this message already running?", "how
//! many turns are in flight, and how many wait?" and "may a turn start?" are answered from the same
//! state at the same instant. Consequently:
//!
//! * a message runs as at most one turn in this process at a time: a duplicate that arrives while its
//!   turn runs (or waits) is handed that turn's outcome ([`Admission::Joined`]);
//! * at most [`TurnTracker::limit`] turns hold a slot (run their agent) at once; a turn gives its slot
//!   back as soon as its agent has answered ([`TurnGuard::release_slot`]), before its reply is stored.
//!   The others wait in line ([`TurnGuard::enqueue`]): first in, first out within a session, and
//!   round-robin across sessions, so a session that posts three hundred messages delays another
//!   session's one by at most one turn per busy session. A waiting turn is a parked task, not a thread; it is durable already (the journal
//!   stored the message before the turn was registered), so a crash loses no place in line — the next
//!   start resumes every unfinished turn in the order it was stored;
//! * once [`TurnTracker::begin_drain`] has been called, no turn can start or take a slot, the turns still
//!   waiting are sent away (they were never started: they stay unfinished in the journal and run after
//!   the next start, without counting as resumed), and the set it returns is exactly the turns that had
//!   started at that instant (holding a slot, or storing their reply). That set is handed to the [`ResumeLedger`] at the same moment, and the
//!   future `begin_drain` returns completes only once the ledger has durably recorded it — *before* the
//!   caller waits for the drain — so a kill during the drain still leaves a durable list to resume.
//!   Recording it is an awaited journal write, never a blocking call on an async thread.
//!
//! A turn's entry lives as long as its [`TurnGuard`]; dropping the guard (normally or by unwinding)
//! ends the turn and hands its slot to the next in line, so a panicking turn can neither hold a drain
//! up nor leak a slot.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use herald_home::sync::MutexExt;
use tokio::sync::{oneshot, watch};

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

/// How many turns this process holds right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TurnCounts {
    /// Every turn registered: running its agent, or waiting to.
    pub in_flight: usize,
    /// Of those, the turns that have not had a slot yet (waiting in line, or their message being stored).
    pub queued: usize,
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

/// Where a turn is in its life within this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Registered (its message is being stored), not in line yet.
    Registered,
    /// Waiting in line for a slot.
    Queued,
    /// Holding a slot: its agent runs.
    Started,
    /// Its agent has answered and the slot is given back; the reply is being stored.
    Finishing,
}

#[derive(Debug)]
struct Entry {
    id: TurnId,
    text: String,
    journal_id: Option<i64>,
    stage: Stage,
    outcome: Arc<watch::Sender<Option<TurnOutcome>>>,
}

/// A turn waiting in its session's lane.
#[derive(Debug)]
struct Waiter {
    id: TurnId,
    message_id: String,
    /// Fired when the turn is given a slot; dropped (closing the channel) when a drain sends it away.
    wake: oneshot::Sender<()>,
}

#[derive(Debug)]
struct Inner {
    next_id: TurnId,
    turns: HashMap<TurnKey, Entry>,
    draining: bool,
    /// At most this many turns hold a slot at once.
    limit: usize,
    /// How many hold one now.
    started: usize,
    /// How many have not had one yet (registered or in line).
    waiting: usize,
    /// Per session, its waiting turns in arrival order.
    lanes: HashMap<SessionKey, VecDeque<Waiter>>,
    /// The sessions with a non-empty lane, each once, in the order they are next served.
    ring: VecDeque<SessionKey>,
}

impl Inner {
    fn counts(&self) -> TurnCounts {
        TurnCounts {
            in_flight: self.turns.len(),
            queued: self.waiting,
        }
    }

    /// Gives free slots to the turns next in line: the first waiter of the session at the front of the
    /// ring, which then goes to the back if it has more.
    fn dispatch(&mut self) {
        while !self.draining && self.started < self.limit {
            let Some(session) = self.ring.pop_front() else {
                return;
            };
            let Some(lane) = self.lanes.get_mut(&session) else {
                continue;
            };
            let Some(waiter) = lane.pop_front() else {
                self.lanes.remove(&session);
                continue;
            };
            if lane.is_empty() {
                self.lanes.remove(&session);
            } else {
                self.ring.push_back(session.clone());
            }
            let key = TurnKey::new(session, waiter.message_id);
            if let Some(entry) = self.turns.get_mut(&key)
                && entry.id == waiter.id
            {
                entry.stage = Stage::Started;
                self.started += 1;
                self.waiting -= 1;
                // A waiter whose task is gone cannot take it; its guard is being dropped, and ending the
                // turn gives the slot back.
                let _ = waiter.wake.send(());
            }
        }
    }

    /// Takes a waiting turn out of its lane (it ended without being given a slot).
    fn leave_lane(&mut self, session: &SessionKey, id: TurnId) {
        let Some(lane) = self.lanes.get_mut(session) else {
            return;
        };
        lane.retain(|w| w.id != id);
        if lane.is_empty() {
            self.lanes.remove(session);
            self.ring.retain(|s| s != session);
        }
    }
}

/// The registry. Shared, cheap to clone.
#[derive(Debug, Clone)]
pub struct TurnTracker {
    inner: Arc<Mutex<Inner>>,
    /// Carries the counts; waiters wake on every change instead of polling.
    counts: Arc<watch::Sender<TurnCounts>>,
    /// Turns `true` when a drain begins (adapters that pull messages stop pulling).
    drain: Arc<watch::Sender<bool>>,
}

impl Default for TurnTracker {
    fn default() -> Self {
        TurnTracker::new()
    }
}

impl TurnTracker {
    /// A registry that lets every turn run at once (tests, tools).
    pub fn new() -> TurnTracker {
        TurnTracker::with_limit(usize::MAX)
    }

    /// A registry that lets at most `limit` turns (at least one) run at once; see
    /// [`herald_home::config::AgentConfig::concurrent_turns`].
    pub fn with_limit(limit: usize) -> TurnTracker {
        TurnTracker {
            inner: Arc::new(Mutex::new(Inner {
                next_id: 0,
                turns: HashMap::new(),
                draining: false,
                limit: limit.max(1),
                started: 0,
                waiting: 0,
                lanes: HashMap::new(),
                ring: VecDeque::new(),
            })),
            counts: Arc::new(watch::Sender::new(TurnCounts::default())),
            drain: Arc::new(watch::Sender::new(false)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section keeps the map, the lanes and the counters consistent before it can
        // panic (nothing in them does): a poisoned lock holds a whole state.
        self.inner.lock_unpoisoned()
    }

    /// Publishes the counts of `inner` (called with the lock held, so they are published in order).
    fn publish_counts(&self, inner: &Inner) {
        self.counts.send_if_modified(|counts| {
            let now = inner.counts();
            let changed = *counts != now;
            *counts = now;
            changed
        });
    }

    /// Starts the turn of `key` — or, when it runs already, joins it. Refused once a drain has begun
    /// (a duplicate too: its client retries and then finds the stored reply). The turn holds no slot
    /// yet: see [`TurnGuard::enqueue`].
    pub fn begin(&self, key: TurnKey, text: &str) -> Result<Admission, Draining> {
        let mut inner = self.lock();
        if inner.draining {
            return Err(Draining);
        }
        if let Some(existing) = inner.turns.get(&key) {
            return Ok(if existing.text == text {
                Admission::Joined(existing.outcome.subscribe())
            } else {
                Admission::Conflict
            });
        }
        inner.next_id += 1;
        let id = inner.next_id;
        let outcome = Arc::new(watch::Sender::new(None));
        inner.turns.insert(
            key.clone(),
            Entry {
                id,
                text: text.to_owned(),
                journal_id: None,
                stage: Stage::Registered,
                outcome: outcome.clone(),
            },
        );
        inner.waiting += 1;
        self.publish_counts(&inner);
        Ok(Admission::New(TurnGuard {
            registry: self.clone(),
            key,
            id,
            outcome,
        }))
    }

    /// Every turn registered: running, or waiting to.
    pub fn in_flight(&self) -> usize {
        self.lock().turns.len()
    }

    /// Turns registered, and how many of them wait for a slot.
    pub fn counts(&self) -> TurnCounts {
        self.lock().counts()
    }

    /// How many turns may run at once.
    pub fn limit(&self) -> usize {
        self.lock().limit
    }

    pub fn is_draining(&self) -> bool {
        self.lock().draining
    }

    /// A receiver that changes whenever the counts do (for the state record).
    pub fn subscribe(&self) -> watch::Receiver<TurnCounts> {
        self.counts.subscribe()
    }

    /// A receiver that turns `true` when a drain begins.
    pub fn drain_signal(&self) -> watch::Receiver<bool> {
        self.drain.subscribe()
    }

    /// Refuses new turns from the moment it is called, sends the waiting ones away, takes the set of
    /// turns holding a slot at that instant, and hands it to the ledger, when given. The returned future
    /// completes with that set (oldest first) once the ledger has durably recorded it: await it before
    /// waiting for the drain. Idempotent: a second call returns the current set.
    pub fn begin_drain(
        &self,
        ledger: Option<&dyn ResumeLedger>,
    ) -> impl Future<Output = Result<Vec<TurnInfo>, JournalError>> + Send + use<> {
        let mut snapshot: Vec<TurnInfo> = {
            let mut inner = self.lock();
            inner.draining = true;
            self.drain.send_replace(true);
            // Dropping the waiters' senders tells each waiting turn it will not get a slot here.
            inner.lanes.clear();
            inner.ring.clear();
            inner
                .turns
                .iter()
                .filter(|(_, entry)| matches!(entry.stage, Stage::Started | Stage::Finishing))
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
        let mut rx = self.counts.subscribe();
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
        let live: HashSet<TurnId> = self.lock().turns.values().map(|e| e.id).collect();
        let cut = at_start.iter().filter(|t| live.contains(&t.id)).count();
        DrainReport {
            finished: at_start.len() - cut,
            cut,
        }
    }

    /// Tells everyone still waiting on a turn without an outcome that the gateway is stopping (after a
    /// drain cut turns short).
    pub fn interrupt_waiters(&self) {
        for entry in self.lock().turns.values() {
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

    /// Puts the turn `key`/`id` in line, or gives it a slot at once. `None` when it got one; the
    /// receiver fires when it does, and closes if a drain sends it away.
    fn enqueue(&self, key: &TurnKey, id: TurnId) -> Result<Option<oneshot::Receiver<()>>, Draining> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        if inner.draining {
            return Err(Draining);
        }
        let Some(entry) = inner.turns.get_mut(key).filter(|e| e.id == id) else {
            // Not registered (cannot happen while its guard lives): never run it unaccounted.
            return Err(Draining);
        };
        if matches!(entry.stage, Stage::Started | Stage::Finishing) {
            return Ok(None);
        }
        if entry.stage == Stage::Registered && inner.lanes.is_empty() && inner.started < inner.limit {
            entry.stage = Stage::Started;
            inner.started += 1;
            inner.waiting -= 1;
            self.publish_counts(inner);
            return Ok(None);
        }
        entry.stage = Stage::Queued;
        let (wake, woken) = oneshot::channel();
        let lane = inner.lanes.entry(key.session.clone()).or_default();
        if lane.is_empty() {
            inner.ring.push_back(key.session.clone());
        }
        lane.retain(|w| w.id != id);
        lane.push_back(Waiter {
            id,
            message_id: key.message_id.clone(),
            wake,
        });
        Ok(Some(woken))
    }

    fn end(&self, key: &TurnKey, id: TurnId) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        if inner.turns.get(key).is_some_and(|entry| entry.id == id)
            && let Some(entry) = inner.turns.remove(key)
        {
            match entry.stage {
                Stage::Started => {
                    inner.started -= 1;
                    inner.dispatch();
                }
                Stage::Finishing => {}
                Stage::Queued => {
                    inner.waiting -= 1;
                    inner.leave_lane(&key.session, id);
                }
                Stage::Registered => inner.waiting -= 1,
            }
        }
        self.publish_counts(inner);
    }
}

/// A registered turn. Dropping it (normally or by unwinding) ends the turn and frees its slot; waiters
/// that have no outcome by then see the turn as interrupted.
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
        if let Some(entry) = self.registry.lock().turns.get_mut(&self.key)
            && entry.id == self.id
        {
            entry.journal_id = Some(journal_id);
        }
    }

    /// Gives the slot back once the agent has answered (storing the reply needs none): the next turn in
    /// line may start its agent while this one's reply is committed. The turn stays registered.
    pub fn release_slot(&self) {
        let mut inner = self.registry.lock();
        let inner = &mut *inner;
        if let Some(entry) = inner.turns.get_mut(&self.key)
            && entry.id == self.id
            && entry.stage == Stage::Started
        {
            entry.stage = Stage::Finishing;
            inner.started -= 1;
            inner.dispatch();
            self.registry.publish_counts(inner);
        }
    }

    /// Puts the turn in line for a slot to run its agent in, now: the order of `enqueue` calls is the
    /// order in line (per session). Await [`QueuedTurn::slot`] for the slot.
    pub fn enqueue(self) -> QueuedTurn {
        let place = self.registry.enqueue(&self.key, self.id);
        QueuedTurn { guard: self, place }
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

/// A turn in line for a slot (see [`TurnGuard::enqueue`]).
#[derive(Debug)]
pub struct QueuedTurn {
    guard: TurnGuard,
    place: Result<Option<oneshot::Receiver<()>>, Draining>,
}

impl QueuedTurn {
    /// Waits for the slot. The guard comes back either way; `Err(Draining)` means a drain sent the turn
    /// away before it got one (it stays unfinished in the journal, for the next start).
    pub async fn slot(self) -> (TurnGuard, Result<(), Draining>) {
        let QueuedTurn { guard, place } = self;
        let granted = match place {
            Ok(None) => Ok(()),
            Ok(Some(woken)) => woken.await.map_err(|_| Draining),
            Err(Draining) => Err(Draining),
        };
        (guard, granted)
    }
}

/// Why a turn in line did not get its slot (see [`QueuedTurn::slot_unless`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSlot {
    /// A drain sent it away: it stays unfinished in the journal, for the next start.
    Draining,
    /// It was stopped (`/stop`) while it waited.
    Stopped,
}

impl QueuedTurn {
    /// As [`QueuedTurn::slot`], but gives up waiting once `stop` completes. Leaving the line is safe at
    /// any moment: a slot granted meanwhile goes back when the guard is dropped.
    pub async fn slot_unless(self, stop: impl Future<Output = ()>) -> (TurnGuard, Result<(), NoSlot>) {
        let QueuedTurn { guard, place } = self;
        let granted = match place {
            Ok(None) => Ok(()),
            Ok(Some(woken)) => tokio::select! {
                biased;
                granted = woken => granted.map_err(|_| NoSlot::Draining),
                () = stop => Err(NoSlot::Stopped),
            },
            Err(Draining) => Err(NoSlot::Draining),
        };
        (guard, granted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Completion;

    fn key(name: &str) -> TurnKey {
        TurnKey::new(SessionKey::new("test", name), "m1")
    }

    /// Registers a turn and gives it a slot (the tracker must have one free).
    fn begin(tracker: &TurnTracker, name: &str) -> TurnGuard {
        let queued = register(tracker, TurnKey::new(SessionKey::new("test", name), "m1")).enqueue();
        assert!(matches!(queued.place, Ok(None)), "expected a free slot");
        queued.guard
    }

    fn register(tracker: &TurnTracker, key: TurnKey) -> TurnGuard {
        match tracker.begin(key, "hello") {
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
        let reply = Reply::text("hi", false);
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
        assert_eq!(
            *count.borrow(),
            TurnCounts {
                in_flight: 1,
                queued: 0
            }
        );
        drop(a);
        assert_eq!(*count.borrow(), TurnCounts::default());
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

    /// Registers `message` of `session` and puts it in line.
    fn queue(tracker: &TurnTracker, session: &str, message: &str) -> QueuedTurn {
        register(tracker, TurnKey::new(SessionKey::new("test", session), message)).enqueue()
    }

    /// Whether the queued turn has been given its slot (without waiting).
    fn granted(turn: &mut QueuedTurn) -> bool {
        match &mut turn.place {
            Ok(None) => true,
            Ok(Some(woken)) => match woken.try_recv() {
                Ok(()) => {
                    turn.place = Ok(None);
                    true
                }
                Err(_) => false,
            },
            Err(Draining) => false,
        }
    }

    #[tokio::test]
    async fn no_more_than_the_limit_run_and_the_rest_wait_in_line() {
        let tracker = TurnTracker::with_limit(2);
        let mut turns: Vec<QueuedTurn> = (0..5).map(|i| queue(&tracker, "s", &format!("m{i}"))).collect();
        let granted_now: Vec<bool> = turns.iter_mut().map(granted).collect();
        assert_eq!(granted_now, [true, true, false, false, false]);
        assert_eq!(
            tracker.counts(),
            TurnCounts {
                in_flight: 5,
                queued: 3
            }
        );
        assert_eq!(
            *tracker.subscribe().borrow(),
            TurnCounts {
                in_flight: 5,
                queued: 3
            }
        );

        // Ending a running turn hands its slot to the first in line, and only to it.
        let mut turns = turns.into_iter();
        drop(turns.next());
        let mut rest: Vec<QueuedTurn> = turns.collect();
        let granted_now: Vec<bool> = rest.iter_mut().map(granted).collect();
        assert_eq!(granted_now, [true, true, false, false]);
        assert_eq!(
            tracker.counts(),
            TurnCounts {
                in_flight: 4,
                queued: 2
            }
        );
        rest.clear();
        assert_eq!(tracker.counts(), TurnCounts::default());
    }

    #[tokio::test]
    async fn the_line_is_first_in_first_out_per_session_and_round_robin_across_sessions() {
        let tracker = TurnTracker::with_limit(1);
        let first = queue(&tracker, "busy", "b0");
        // A session floods the line, then two others each post one message.
        let mut waiting: Vec<(String, QueuedTurn)> = Vec::new();
        for i in 1..=4 {
            waiting.push((format!("busy/b{i}"), queue(&tracker, "busy", &format!("b{i}"))));
        }
        waiting.push(("quiet/q0".into(), queue(&tracker, "quiet", "q0")));
        waiting.push(("other/o0".into(), queue(&tracker, "other", "o0")));
        let mut order = Vec::new();
        let mut running = first;
        loop {
            drop(running);
            let Some(next) = waiting.iter_mut().position(|(_, turn)| granted(turn)) else {
                break;
            };
            let (name, turn) = waiting.remove(next);
            assert!(
                !waiting.iter_mut().any(|(_, turn)| granted(turn)),
                "one slot, one turn"
            );
            order.push(name);
            running = turn;
        }
        assert_eq!(
            order,
            ["busy/b1", "quiet/q0", "other/o0", "busy/b2", "busy/b3", "busy/b4"]
        );
    }

    #[tokio::test]
    async fn a_drain_sends_the_waiting_turns_away_and_waits_only_for_the_running_ones() {
        let tracker = TurnTracker::with_limit(1);
        let running = queue(&tracker, "a", "m0");
        let waiting = queue(&tracker, "b", "m1");
        let ledger = Recorder::default();
        let set = tracker.begin_drain(Some(&ledger)).await.unwrap();
        let (running, slot) = running.slot().await;
        assert_eq!(slot, Ok(()));
        assert_eq!(set.iter().map(|t| t.id).collect::<Vec<_>>(), vec![running.id()]);
        assert_eq!(*ledger.marked.lock().unwrap(), vec![running.id()]);
        let (waiting, slot) = waiting.slot().await;
        assert_eq!(slot, Err(Draining));
        drop(waiting);
        // The slot freed by the running turn goes to no one.
        drop(running);
        assert_eq!(tracker.counts(), TurnCounts::default());
        assert!(matches!(tracker.begin(key("c"), "hello"), Err(Draining)));
    }

    #[tokio::test]
    async fn a_waiting_turn_that_goes_away_leaves_the_line_and_loses_no_slot() {
        let tracker = TurnTracker::with_limit(1);
        let running = queue(&tracker, "a", "m0");
        let gone = queue(&tracker, "b", "m1");
        let mut next = queue(&tracker, "c", "m2");
        drop(gone);
        assert_eq!(
            tracker.counts(),
            TurnCounts {
                in_flight: 2,
                queued: 1
            }
        );
        drop(running);
        assert!(granted(&mut next));
        drop(next);
        // A waiter whose task vanished after it was given the slot frees it when its guard goes.
        let running = queue(&tracker, "a", "m3");
        let QueuedTurn { guard, place } = queue(&tracker, "b", "m4");
        drop(place);
        let mut last = queue(&tracker, "c", "m5");
        drop(running);
        assert!(!granted(&mut last), "the slot went to m4");
        drop(guard);
        assert!(granted(&mut last));
    }

    #[test]
    fn a_panicking_turn_gives_its_slot_back() {
        let tracker = TurnTracker::with_limit(1);
        let t2 = tracker.clone();
        let _ = std::thread::spawn(move || {
            let _running = queue(&t2, "boom", "m0");
            panic!("turn failed");
        })
        .join();
        let mut next = queue(&tracker, "after", "m1");
        assert!(granted(&mut next));
    }

    #[tokio::test]
    async fn a_turn_whose_agent_answered_gives_its_slot_to_the_next_while_it_stores() {
        let tracker = TurnTracker::with_limit(1);
        let first = queue(&tracker, "a", "m0");
        let mut next = queue(&tracker, "b", "m1");
        assert!(!granted(&mut next));
        let (first, slot) = first.slot().await;
        assert_eq!(slot, Ok(()));
        first.release_slot();
        assert!(granted(&mut next));
        assert_eq!(
            tracker.counts(),
            TurnCounts {
                in_flight: 2,
                queued: 0
            }
        );
        // Still a turn in flight: a drain waits for it.
        let set = tracker.begin_drain(None).await.unwrap();
        assert_eq!(set.len(), 2);
        drop(first);
        drop(next);
        assert_eq!(tracker.counts(), TurnCounts::default());
    }
}
