//! The turn engine: from an adapter's message to a stored reply, exactly once.
//!
//! **Invariant:** a turn is run by at most one task in this process at a time, and its reply is
//! published to waiters only after the journal has committed it. Every turn the engine runs is an entry
//! of the one registry of running turns ([`TurnTracker`], keyed by session and message id); a duplicate
//! message that arrives while the turn runs joins that entry instead of reaching the journal as a second
//! turn, and one that arrives later finds the stored reply in the journal. After a restart,
//! [`Engine::resume`] runs every unfinished turn once more (counting each resume); a turn resumed
//! [`MAX_RESUMES`] times is closed with an explanation instead of looping forever.
//!
//! Turns run in tasks of their own, never in an adapter's request: a client that hangs up does not
//! cancel the turn it started. A stored turn waits in the registry's line until it gets one of the
//! `[agent] max_concurrent_turns` slots (see [`crate::turns`]); waiting costs a parked task, not a
//! thread or a process.
//!
//! **Push adapters.** The HTTP adapter answers a waiting client, and a client that left reads the reply
//! later; a chat adapter (Telegram) has to *send* every reply, including those of turns nobody waits
//! for — resumed after a restart, or given up. Such an adapter registers an [`Outbox`] under its name;
//! the engine hands it every reply of that adapter's sessions right after the journal committed it.
//! Replies committed while no outbox was registered (or whose delivery a crash cut) stay unmarked in the
//! journal ([`AdapterStore::undelivered`](crate::journal::AdapterStore::undelivered)), and the adapter
//! sends those when it starts.
//!
//! The engine only awaits the journal (every journal call returns a future); it never blocks an async
//! thread on storage, whatever store is behind the [`Journal`] trait.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use herald_home::sync::MutexExt;
use herald_home::time::now_ms;

use crate::agent::{Agent, HistoryMessage, TurnRequest};
use crate::backoff::{Backoff, Jitter};
use crate::journal::{
    Delivery, HistoryPage, HistoryQuery, Inbound, Journal, JournalError, JournalErrorKind, Pending, Reply,
    SessionKey, SessionSummary, StoredMessage,
};
pub use crate::turns::TurnOutcome;
use crate::turns::{
    Admission, Draining, OutcomeReceiver, ResumeLedger, TurnGuard, TurnInfo, TurnKey, TurnTracker,
};

/// How soon, and at most how rarely, a reply that could not be committed is tried again. No jitter:
/// each turn retries on its own, and a full disk is not a crowd to spread out.
const FINISH_RETRY: Backoff = Backoff {
    base: std::time::Duration::from_millis(250),
    max: std::time::Duration::from_secs(5),
    jitter: Jitter::None,
};

/// A turn interrupted this many times is answered with an apology instead of being run again.
pub const MAX_RESUMES: u32 = 3;

/// The reply stored for a turn that could not be completed after [`MAX_RESUMES`] resumes.
pub const GAVE_UP_REPLY: &str = "Sorry, I could not answer this message: the gateway was stopped while \
                                 answering it several times in a row. Please send it again.";

/// Why a message was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the gateway is draining and accepts no new messages")]
    Draining,
    #[error("message id {0:?} was already used for a different text in this session")]
    Conflict(String),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl From<Draining> for SubmitError {
    fn from(_: Draining) -> Self {
        SubmitError::Draining
    }
}

/// A stored message, and the way to its outcome.
#[derive(Debug)]
pub struct Ticket {
    pub message_id: String,
    /// `false` when the message id was already known (a retry).
    pub new: bool,
    outcome: OutcomeReceiver,
}

impl Ticket {
    /// Waits for the turn's outcome.
    pub async fn outcome(mut self) -> TurnOutcome {
        match self.outcome.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone().unwrap_or(TurnOutcome::Interrupted),
            // The running task is gone without publishing: the runtime is shutting down.
            Err(_) => TurnOutcome::Interrupted,
        }
    }
}

/// Where a push adapter receives the committed replies of its sessions.
pub trait Outbox: Send + Sync + std::fmt::Debug {
    /// Called once the reply is durably stored. Must not block: queue it and return.
    fn deliver(&self, delivery: Delivery);
}

/// What [`Engine::resume`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResumeSummary {
    pub resumed: usize,
    pub gave_up: usize,
}

/// Shared by every adapter (`Arc<Engine>`).
#[derive(Debug)]
pub struct Engine {
    journal: Arc<dyn Journal>,
    agent: Arc<dyn Agent>,
    turns: TurnTracker,
    serving: AtomicBool,
    /// Whether the journal's last write went through: a gateway whose journal refuses writes (a full
    /// disk, a read-only file) is alive but not ready — every message would fail.
    storing: AtomicBool,
    ids: IdSource,
    outboxes: Mutex<HashMap<String, Arc<dyn Outbox>>>,
}

impl Engine {
    pub fn new(journal: Arc<dyn Journal>, agent: Arc<dyn Agent>, turns: TurnTracker) -> Arc<Engine> {
        Arc::new(Engine {
            journal,
            agent,
            turns,
            serving: AtomicBool::new(false),
            storing: AtomicBool::new(true),
            ids: IdSource::new(),
            outboxes: Mutex::new(HashMap::new()),
        })
    }

    pub fn turns(&self) -> &TurnTracker {
        &self.turns
    }

    pub fn agent_name(&self) -> &'static str {
        self.agent.name()
    }

    /// Ready for traffic: started, not draining, and the journal's last write went through.
    pub fn is_ready(&self) -> bool {
        self.serving.load(Ordering::Acquire) && !self.turns.is_draining() && self.is_storing()
    }

    /// Whether the journal's last write went through (see [`Engine::is_ready`]).
    pub fn is_storing(&self) -> bool {
        self.storing.load(Ordering::Acquire)
    }

    /// Records how a journal write went, for readiness.
    fn stored<T>(&self, result: &Result<T, JournalError>) {
        match result {
            Ok(_) => self.storing.store(true, Ordering::Release),
            Err(e) if e.kind != JournalErrorKind::Closed => self.storing.store(false, Ordering::Release),
            Err(_) => {}
        }
    }

    /// Called by the daemon once the gateway runs (`true`) and when it stops (`false`).
    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::Release);
    }

    /// The ledger a drain uses to mark the turns it may cut.
    pub fn ledger(self: &Arc<Self>) -> impl ResumeLedger + use<> {
        JournalLedger(self.journal.clone())
    }

    /// Registers the outbox of the push adapter `adapter` (replacing any earlier one). Register before
    /// [`Engine::resume`] so no resumed reply goes past it.
    pub fn register_outbox(&self, adapter: &str, outbox: Arc<dyn Outbox>) {
        self.outboxes.lock_unpoisoned().insert(adapter.to_owned(), outbox);
    }

    /// Hands a committed reply to its adapter's outbox, if it has one.
    fn push(&self, turn_id: i64, key: &TurnKey, reply: &Reply) {
        let outbox = self.outboxes.lock_unpoisoned().get(&key.session.adapter).cloned();
        if let Some(outbox) = outbox {
            outbox.deliver(Delivery {
                turn_id,
                session: key.session.clone(),
                message_id: key.message_id.clone(),
                reply: reply.clone(),
            });
        }
    }

    /// Stores a message (durably, before returning) and starts its turn. `message_id` is the client's
    /// idempotency key; without one a fresh id is made.
    pub async fn submit(
        self: &Arc<Self>,
        session: SessionKey,
        message_id: Option<String>,
        text: String,
    ) -> Result<Ticket, SubmitError> {
        let message_id = message_id.unwrap_or_else(|| self.ids.next());
        let key = TurnKey::new(session.clone(), message_id.clone());
        let guard = match self.turns.begin(key, &text)? {
            Admission::New(guard) => guard,
            Admission::Joined(outcome) => {
                return Ok(Ticket {
                    message_id,
                    new: false,
                    outcome,
                });
            }
            Admission::Conflict => return Err(SubmitError::Conflict(message_id)),
        };
        let inbound = Inbound {
            session,
            message_id: message_id.clone(),
            text: text.clone(),
            at_ms: now_ms(),
        };
        let accepted = self.journal.accept(inbound).await;
        self.stored(&accepted);
        let accepted = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                guard.finish(TurnOutcome::Failed(e.clone()));
                return Err(e.into());
            }
        };
        let receiver = guard.subscribe();
        if !accepted.new {
            // Known from before this entry existed: a finished turn, or one left for resume.
            let settled = if accepted.text != text {
                guard.finish(TurnOutcome::Failed(conflict_error(&message_id)));
                return Err(SubmitError::Conflict(message_id));
            } else if let Some(reply) = accepted.reply {
                TurnOutcome::Replied(reply)
            } else {
                TurnOutcome::Stored
            };
            guard.finish(settled);
            return Ok(Ticket {
                message_id,
                new: false,
                outcome: receiver,
            });
        }
        guard.bind(accepted.turn_id);
        self.spawn_turn(accepted.turn_id, text, guard);
        Ok(Ticket {
            message_id,
            new: true,
            outcome: receiver,
        })
    }

    /// Puts the turn in line (now, so call order is line order) and runs it in a task of its own once it
    /// has a slot; the guard publishes its outcome and ends it. A turn a drain sends away before it got a
    /// slot was never started: it stays unfinished in the journal and runs after the next start.
    fn spawn_turn(self: &Arc<Self>, turn_id: i64, text: String, guard: TurnGuard) {
        let engine = self.clone();
        let queued = guard.enqueue();
        tokio::spawn(async move {
            let (guard, slot) = queued.slot().await;
            let result = match slot {
                Ok(()) => engine.run_turn(turn_id, text, &guard).await,
                Err(Draining) => TurnOutcome::Interrupted,
            };
            guard.finish(result);
        });
    }

    async fn run_turn(&self, turn_id: i64, text: String, guard: &TurnGuard) -> TurnOutcome {
        let key = guard.key();
        let (session, message_id) = (&key.session, &key.message_id);
        // Not awaited: a lost `running` mark changes nothing (see `TurnStore::start`).
        drop(self.journal.start(turn_id, now_ms()));
        let history = match self.agent.history_limit() {
            0 => Vec::new(),
            limit => self.history_before(session, turn_id, limit).await,
        };
        let request = TurnRequest {
            adapter: session.adapter.clone(),
            chat_id: session.chat_id.clone(),
            turn_id,
            message: text,
            history,
        };
        let reply = match self.agent.reply(&request).await {
            Ok(text) => Reply { text, failed: false },
            Err(e) => {
                tracing::warn!(turn = turn_id, session = %session, "agent {}: {e}", self.agent.name());
                Reply {
                    text: e.user_message(),
                    failed: true,
                }
            }
        };
        // The agent is done: the next turn in line may start its own while this reply is stored (commits
        // of many turns share a sync).
        guard.release_slot();
        // The reply exists only in memory until committed. If the commit fails (a full disk), waiters are
        // told at once (the client may retry with the same id), and the commit is retried in the
        // background, the turn staying registered, so the answer is not thrown away and the turn is not
        // left orphaned until the next restart. A stop drops this task; the turn is then resumed.
        let mut retries = FINISH_RETRY.retries();
        loop {
            let finished = self.journal.finish(turn_id, reply.clone(), now_ms()).await;
            self.stored(&finished);
            match finished {
                Ok(()) => {
                    self.push(turn_id, key, &reply);
                    return TurnOutcome::Replied(reply);
                }
                Err(e) if e.kind == JournalErrorKind::Closed => return TurnOutcome::Failed(e),
                Err(e) => {
                    let delay = retries.next_delay();
                    tracing::error!(
                        turn = turn_id,
                        message = %message_id,
                        "cannot store the reply, retrying in {delay:?}: {e}"
                    );
                    guard.publish(TurnOutcome::Failed(e));
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Earlier messages of the session, without this turn's own.
    async fn history_before(&self, session: &SessionKey, turn_id: i64, limit: usize) -> Vec<HistoryMessage> {
        match self.history(session, limit.saturating_add(1)).await {
            Ok(messages) => {
                let mut earlier: Vec<HistoryMessage> = messages
                    .into_iter()
                    .filter(|m| m.turn_id != turn_id)
                    .map(|m| HistoryMessage {
                        role: m.role,
                        text: m.text,
                    })
                    .collect();
                let excess = earlier.len().saturating_sub(limit);
                earlier.drain(..excess);
                earlier
            }
            Err(e) => {
                tracing::warn!(session = %session, "cannot read history for a turn: {e}");
                Vec::new()
            }
        }
    }

    /// Runs every unfinished turn again (after a restart), or closes it with [`GAVE_UP_REPLY`] once it
    /// has been resumed [`MAX_RESUMES`] times. Every resumed turn is registered before this returns,
    /// so a retry of its message joins it rather than finding it "stored".
    pub async fn resume(self: &Arc<Self>) -> Result<ResumeSummary, JournalError> {
        let unfinished = self.journal.unfinished().await?;
        let (gave_up, to_run): (Vec<_>, Vec<_>) = unfinished
            .into_iter()
            .partition(|t| t.resume_count >= MAX_RESUMES);
        let mut summary = ResumeSummary::default();
        for turn in &gave_up {
            let reply = Reply {
                text: GAVE_UP_REPLY.into(),
                failed: true,
            };
            self.journal.finish(turn.turn_id, reply.clone(), now_ms()).await?;
            self.push(
                turn.turn_id,
                &TurnKey::new(turn.session.clone(), turn.message_id.clone()),
                &reply,
            );
            tracing::warn!(turn = turn.turn_id, session = %turn.session, "gave up after {MAX_RESUMES} resumes");
            summary.gave_up += 1;
        }
        let ids: Vec<i64> = to_run.iter().map(|t| t.turn_id).collect();
        self.journal.note_resumed(&ids, now_ms()).await?;
        for turn in to_run {
            let key = TurnKey::new(turn.session, turn.message_id);
            let guard = match self.turns.begin(key, &turn.text) {
                Ok(Admission::New(guard)) => guard,
                // Registered already (the journal listed a message twice): it runs once.
                Ok(Admission::Joined(_) | Admission::Conflict) => continue,
                // Draining already: the rest stay unfinished for the next start.
                Err(Draining) => break,
            };
            guard.bind(turn.turn_id);
            self.spawn_turn(turn.turn_id, turn.text, guard);
            summary.resumed += 1;
        }
        Ok(summary)
    }

    /// Tells everyone still waiting that the gateway is stopping (after a drain cut turns short).
    pub fn interrupt_waiters(&self) {
        self.turns.interrupt_waiters();
    }

    /// Closes the journal (after the drain; turns still running can no longer store replies and are
    /// resumed after the next start). Completes once the journal is released.
    pub fn close_journal(&self) -> Pending<()> {
        self.journal.close()
    }

    /// The last `limit` messages of a session.
    pub async fn history(
        &self,
        session: &SessionKey,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, JournalError> {
        self.journal.history(session, limit).await
    }

    /// A page of a session's history within a byte budget (see [`HistoryQuery`]).
    pub async fn history_page(
        &self,
        session: &SessionKey,
        query: HistoryQuery,
    ) -> Result<HistoryPage, JournalError> {
        self.journal.history_page(session, query).await
    }

    /// Replies of `adapter`'s sessions not yet handed to their chats, oldest first.
    pub async fn undelivered(&self, adapter: &str, limit: usize) -> Result<Vec<Delivery>, JournalError> {
        self.journal.undelivered(adapter, limit).await
    }

    /// Records (durably) that a turn's reply reached its chat.
    pub async fn mark_delivered(&self, turn_id: i64) -> Result<(), JournalError> {
        self.journal.mark_delivered(turn_id, now_ms()).await
    }

    /// The first update id `adapter` has not durably handled, if it ever recorded one.
    pub async fn adapter_offset(&self, adapter: &str) -> Result<Option<i64>, JournalError> {
        self.journal.adapter_offset(adapter).await
    }

    /// Records (durably) that every update of `adapter` below `offset` is handled.
    pub async fn set_adapter_offset(&self, adapter: &str, offset: i64) -> Result<(), JournalError> {
        self.journal.set_adapter_offset(adapter, offset, now_ms()).await
    }

    /// Sessions, most recently active first.
    pub async fn sessions(&self, limit: usize) -> Result<Vec<SessionSummary>, JournalError> {
        self.journal.sessions(limit).await
    }
}

fn conflict_error(message_id: &str) -> JournalError {
    JournalError::new(
        JournalErrorKind::Storage,
        format!("message id {message_id:?} was already used for a different text"),
    )
}

/// Marks the turns a drain may cut as `interrupted` in the journal.
struct JournalLedger(Arc<dyn Journal>);

impl ResumeLedger for JournalLedger {
    fn mark_for_resume(&self, turns: &[TurnInfo]) -> Pending<()> {
        let ids: Vec<i64> = turns.iter().filter_map(|t| t.journal_id).collect();
        self.0.mark_interrupted(&ids, now_ms())
    }
}

/// Message ids for messages that came without one: unique within this journal (time, process-random
/// seed, counter), so a client may use them to retry.
#[derive(Debug)]
struct IdSource {
    seed: u64,
    counter: AtomicU64,
}

impl IdSource {
    fn new() -> IdSource {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(now_ms());
        hasher.write_u32(std::process::id());
        IdSource {
            seed: hasher.finish(),
            counter: AtomicU64::new(0),
        }
    }

    fn next(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("h{:x}-{:016x}-{n:x}", now_ms(), self.seed)
    }
}
