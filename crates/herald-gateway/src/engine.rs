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
//!
//! **Conversations.** An agent is shown, as history, only the earlier turns of its turn's conversation
//! ([`HistoryStore::context`](crate::journal::HistoryStore::context)): never the gateway's own failure
//! notices, and nothing from before the session's last [`Engine::reset`].
//!
//! **Logs.** Every turn this process runs ends with one info line — adapter, session, the turn's number
//! in its session, agent backend, outcome (`done`, `failed`, `interrupted`, `gave_up`) and milliseconds —
//! whichever way it ends, since the line is written when the turn's task lets go of it (a stop that
//! drops the task included). Message and reply texts are in it only with
//! [`EngineOptions::log_message_text`]: conversations are the user's, logs are often shared.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::watch;

use herald_home::sync::MutexExt;
use herald_home::time::now_ms;

use crate::agent::{Agent, Attachment, Draft, TurnRequest};
use crate::backoff::{Backoff, Jitter};
use crate::cluster::Cluster;
use crate::journal::{
    CHECK_ADAPTER, Conversation, Delivery, FailedDelivery, HistoryPage, HistoryQuery, Inbound, Journal,
    JournalError, JournalErrorKind, Pending, Reply, SessionKey, SessionSummary, StoredMessage,
};
use crate::reply_order::ReplyOrder;
pub use crate::turns::TurnOutcome;
use crate::turns::{
    Admission, Draining, NoSlot, OutcomeReceiver, ResumeLedger, TurnGuard, TurnInfo, TurnKey, TurnTracker,
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

/// The notice stored as the reply of a turn stopped by `/stop` (never sent: the command answers).
pub const STOPPED_REPLY: &str = "Stopped with /stop before it was answered.";

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

    /// Called when a streaming agent starts answering a turn of this adapter's sessions: `text` grows
    /// with the answer so far, for the chat to see as a draft. The draft is only for show — the reply
    /// still comes through [`Outbox::deliver`], which should turn the draft into it. Must not block. The
    /// default shows nothing.
    fn drafting(&self, drafting: Drafting) {
        let _ = drafting;
    }
}

/// A turn's answer being written (see [`Outbox::drafting`]).
#[derive(Debug)]
pub struct Drafting {
    pub turn_id: i64,
    pub session: SessionKey,
    /// The question's message id.
    pub message_id: String,
    /// The answer so far.
    pub text: watch::Receiver<String>,
    /// The chat message an earlier run of this turn showed its draft in (a resumed turn).
    pub earlier: Option<String>,
}

/// What [`Engine::resume`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResumeSummary {
    pub resumed: usize,
    pub gave_up: usize,
}

/// How the engine behaves beyond its parts (`[gateway]` in `herald.toml`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineOptions {
    /// Put each turn's message and reply texts in its log line (`[gateway] log_message_text`; off by
    /// default).
    pub log_message_text: bool,
}

/// A stored turn, as the engine runs it.
#[derive(Debug)]
struct Plan {
    turn_id: i64,
    /// Its number within the session.
    number: u64,
    text: String,
    /// The draft message an earlier run made (a resumed turn).
    draft: Option<String>,
    attachments: Vec<Attachment>,
}

/// Shared by every adapter (`Arc<Engine>`).
#[derive(Debug)]
pub struct Engine {
    journal: Arc<dyn Journal>,
    /// The replicas sharing the journal, when it is shared (see [`crate::cluster`]).
    cluster: Option<Arc<dyn Cluster>>,
    /// The journal's database outage, for a journal on a server: a gateway whose database does not
    /// answer is not ready, even before a write fails.
    outage: Option<watch::Receiver<Option<herald_home::records::JournalOutage>>>,
    /// One adoption at a time (the periodic one and a push adapter's takeover may ask together): a
    /// turn adopted twice over would count two resumes.
    adopting: tokio::sync::Mutex<()>,
    agent: Arc<dyn Agent>,
    turns: TurnTracker,
    options: EngineOptions,
    serving: AtomicBool,
    /// Whether the journal's last write went through: a gateway whose journal refuses writes (a full
    /// disk, a read-only file) is alive but not ready — every message would fail.
    storing: AtomicBool,
    ids: IdSource,
    outboxes: Mutex<HashMap<String, Arc<dyn Outbox>>>,
    /// The stop switch of every turn this process runs or has in line, by journal id.
    switches: Mutex<HashMap<i64, Arc<StopSwitch>>>,
    /// When the gateway started serving (0 before).
    serving_since_ms: AtomicU64,
    /// Hands each session's committed replies to its outbox in turn order (see [`crate::reply_order`]).
    reply_order: Mutex<ReplyOrder<Delivery>>,
    /// Messages whose client takes the reply in its response (see [`Engine::submit_answered_inline`]):
    /// their replies are marked delivered, not handed to an outbox.
    inline: Mutex<std::collections::HashSet<TurnKey>>,
}

/// What [`Engine::stop_session`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StopReport {
    /// Turns stopped: their agent was cancelled (or never started) and they are closed as cancelled.
    pub stopped: usize,
    /// Turns whose agent had already answered: their reply is being stored and sent.
    pub answering: usize,
}

/// A chat's turns in this process, for `/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionActivity {
    /// Turns whose agent is at work (or waiting in line for a slot).
    pub open: usize,
}

/// The stop switch of one turn: `/stop` and the agent's answer race for it, and exactly one wins, so a
/// stopped turn never sends a late reply and an answered one is never reported stopped.
#[derive(Debug)]
struct StopSwitch {
    session: SessionKey,
    state: Mutex<SwitchState>,
    stopped: watch::Sender<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SwitchState {
    Open,
    Stopped,
    Answered,
}

impl StopSwitch {
    fn new(session: SessionKey) -> StopSwitch {
        StopSwitch {
            session,
            state: Mutex::new(SwitchState::Open),
            stopped: watch::Sender::new(false),
        }
    }

    /// Stops the turn, unless its agent answered first; `Err` carries the state that won.
    fn stop(&self) -> Result<(), SwitchState> {
        let mut state = self.state.lock_unpoisoned();
        if *state != SwitchState::Open {
            return Err(*state);
        }
        *state = SwitchState::Stopped;
        self.stopped.send_replace(true);
        Ok(())
    }

    /// Claims the turn for its answer; `false` when it was stopped first (the answer is dropped).
    fn answer(&self) -> bool {
        let mut state = self.state.lock_unpoisoned();
        if *state == SwitchState::Open {
            *state = SwitchState::Answered;
        }
        *state == SwitchState::Answered
    }

    fn is_stopped(&self) -> bool {
        *self.state.lock_unpoisoned() == SwitchState::Stopped
    }

    /// Completes once the turn is stopped.
    async fn wait_stopped(&self) {
        let mut stopped = self.stopped.subscribe();
        let _ = stopped.wait_for(|s| *s).await;
    }
}

/// Removes a turn's switch when its task ends, however it ends.
struct Switched {
    engine: Arc<Engine>,
    turn_id: i64,
}

impl Drop for Switched {
    fn drop(&mut self) {
        self.engine.switches.lock_unpoisoned().remove(&self.turn_id);
    }
}

impl Engine {
    pub fn new(journal: Arc<dyn Journal>, agent: Arc<dyn Agent>, turns: TurnTracker) -> Arc<Engine> {
        Engine::with_options(journal, agent, turns, EngineOptions::default())
    }

    pub fn with_options(
        journal: Arc<dyn Journal>,
        agent: Arc<dyn Agent>,
        turns: TurnTracker,
        options: EngineOptions,
    ) -> Arc<Engine> {
        Arc::new(Engine {
            cluster: journal.cluster(),
            outage: journal.outages(),
            adopting: tokio::sync::Mutex::new(()),
            journal,
            agent,
            turns,
            options,
            serving: AtomicBool::new(false),
            storing: AtomicBool::new(true),
            ids: IdSource::new(),
            outboxes: Mutex::new(HashMap::new()),
            switches: Mutex::new(HashMap::new()),
            serving_since_ms: AtomicU64::new(0),
            reply_order: Mutex::new(ReplyOrder::default()),
            inline: Mutex::new(std::collections::HashSet::new()),
        })
    }

    /// The replicas sharing the journal, when it is shared.
    pub fn cluster(&self) -> Option<&Arc<dyn Cluster>> {
        self.cluster.as_ref()
    }

    pub fn turns(&self) -> &TurnTracker {
        &self.turns
    }

    pub fn agent_name(&self) -> &'static str {
        self.agent.name()
    }

    /// Ready for traffic: started, not draining, and the journal storing (its last write went through;
    /// on a database server, the server answers).
    pub fn is_ready(&self) -> bool {
        self.serving.load(Ordering::Acquire) && !self.turns.is_draining() && self.is_storing()
    }

    /// Whether the journal's last write went through, and its database (a journal on a server) answers
    /// (see [`Engine::is_ready`]).
    pub fn is_storing(&self) -> bool {
        self.storing.load(Ordering::Acquire)
            && self
                .outage
                .as_ref()
                .is_none_or(|outage| outage.borrow().is_none())
    }

    /// Records how a journal write went, for readiness.
    fn stored<T>(&self, result: &Result<T, JournalError>) {
        match result {
            Ok(_) => self.storing.store(true, Ordering::Release),
            // A refused input says nothing about the store's health.
            Err(e)
                if !matches!(
                    e.kind,
                    JournalErrorKind::Closed | JournalErrorKind::Unstorable | JournalErrorKind::Fenced
                ) =>
            {
                self.storing.store(false, Ordering::Release)
            }
            Err(_) => {}
        }
    }

    /// Called by the daemon once the gateway runs (`true`) and when it stops (`false`).
    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::Release);
        if serving {
            self.serving_since_ms.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// When the gateway started serving (`None` before it did).
    pub fn serving_since_ms(&self) -> Option<u64> {
        Some(self.serving_since_ms.load(Ordering::Relaxed)).filter(|ms| *ms > 0)
    }

    /// Stops every turn of `session` whose agent has not answered yet (`/stop`): each is closed in the
    /// journal as cancelled before this returns, its agent future is dropped (a `command` agent's process
    /// tree is killed, an HTTP request to a model is dropped), and no reply is ever sent for it. Turns
    /// waiting in line are stopped too. A turn whose agent answered first is left to finish.
    pub async fn stop_session(&self, session: &SessionKey) -> Result<StopReport, JournalError> {
        let mut switches: Vec<(i64, Arc<StopSwitch>)> = self
            .switches
            .lock_unpoisoned()
            .iter()
            .filter(|(_, switch)| switch.session == *session)
            .map(|(id, switch)| (*id, switch.clone()))
            .collect();
        switches.sort_by_key(|(id, _)| *id);
        let mut report = StopReport::default();
        for (turn_id, switch) in switches {
            match switch.stop() {
                Ok(()) => {
                    let cancelled = self.journal.cancel(turn_id, STOPPED_REPLY, now_ms()).await;
                    self.stored(&cancelled);
                    cancelled?;
                    report.stopped += 1;
                }
                Err(SwitchState::Answered) => report.answering += 1,
                Err(_) => {}
            }
        }
        if report.stopped > 0 {
            tracing::info!(adapter = %session.adapter, session = %session.chat_id, stopped = report.stopped, "turns stopped");
        }
        Ok(report)
    }

    /// The turns of `session` this process has open (for `/status`).
    pub fn session_activity(&self, session: &SessionKey) -> SessionActivity {
        let open = self
            .switches
            .lock_unpoisoned()
            .values()
            .filter(|s| s.session == *session && !s.is_stopped())
            .count();
        SessionActivity { open }
    }

    /// Records that the command in `message_id` ran, once (see
    /// [`HistoryStore::claim_command`](crate::journal::HistoryStore::claim_command)).
    pub async fn claim_command(
        &self,
        session: &SessionKey,
        message_id: &str,
        command: &str,
        reset: bool,
    ) -> Result<crate::journal::CommandClaim, JournalError> {
        let claim = self
            .journal
            .claim_command(session, message_id, command, reset, now_ms())
            .await;
        self.stored(&claim);
        claim
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
    fn push(&self, turn_id: i64, key: &TurnKey, reply: &Reply, draft: Option<String>) {
        self.hand_over(Delivery {
            turn_id,
            session: key.session.clone(),
            message_id: key.message_id.clone(),
            reply: reply.clone(),
            draft,
            at_ms: now_ms(),
        });
    }

    fn hand_over(&self, delivery: Delivery) {
        let outbox = self
            .outboxes
            .lock_unpoisoned()
            .get(&delivery.session.adapter)
            .cloned();
        if let Some(outbox) = outbox {
            outbox.deliver(delivery);
        }
    }

    /// A fresh message id, unique within this journal (for a message that came without one).
    pub fn new_message_id(&self) -> String {
        self.ids.next()
    }

    /// Stores a message (durably, before returning) and starts its turn. `message_id` is the client's
    /// idempotency key; without one a fresh id is made.
    pub async fn submit(
        self: &Arc<Self>,
        session: SessionKey,
        message_id: Option<String>,
        text: String,
    ) -> Result<Ticket, SubmitError> {
        self.submit_with(session, message_id, text, Vec::new()).await
    }

    /// As [`Engine::submit`], for a client that takes the reply in its response (a webhook posted with
    /// `?wait=true`): the reply is marked delivered when stored instead of going to the adapter's
    /// outbox (no callback besides the response). A client that goes away before its answer gets it by
    /// asking again with the same id.
    pub async fn submit_answered_inline(
        self: &Arc<Self>,
        session: SessionKey,
        message_id: String,
        text: String,
    ) -> Result<Ticket, SubmitError> {
        let key = TurnKey::new(session.clone(), message_id.clone());
        self.inline.lock_unpoisoned().insert(key.clone());
        let ticket = self.submit(session, Some(message_id), text).await;
        if !ticket.as_ref().is_ok_and(|t| t.new) {
            // Not a new turn of this process: nothing of it will be stored by this call.
            self.inline.lock_unpoisoned().remove(&key);
        }
        ticket
    }

    /// As [`Engine::submit`], for a message that came with files (already in the media store).
    pub async fn submit_with(
        self: &Arc<Self>,
        session: SessionKey,
        message_id: Option<String>,
        text: String,
        attachments: Vec<Attachment>,
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
            attachments: attachments.clone(),
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
        let plan = Plan {
            turn_id: accepted.turn_id,
            number: accepted.number,
            text,
            draft: None,
            attachments,
        };
        self.spawn_turn(plan, guard);
        Ok(Ticket {
            message_id,
            new: true,
            outcome: receiver,
        })
    }

    /// Puts the turn in line (now, so call order is line order) and runs it in a task of its own once it
    /// has a slot; the guard publishes its outcome and ends it. A turn a drain sends away before it got a
    /// slot was never started: it stays unfinished in the journal and runs after the next start.
    fn spawn_turn(self: &Arc<Self>, plan: Plan, guard: TurnGuard) {
        let engine = self.clone();
        let mut log = TurnLog::new(self, &guard.key().session, plan.number, &plan.text);
        let switch = Arc::new(StopSwitch::new(guard.key().session.clone()));
        self.switches
            .lock_unpoisoned()
            .insert(plan.turn_id, switch.clone());
        let switched = Switched {
            engine: self.clone(),
            turn_id: plan.turn_id,
        };
        let queued = guard.enqueue();
        tokio::spawn(async move {
            let _switched = switched;
            let (guard, slot) = queued.slot_unless(switch.wait_stopped()).await;
            let result = match slot {
                Ok(()) => engine.run_turn(plan, &guard, &switch).await,
                Err(NoSlot::Stopped) => stopped_outcome(),
                Err(NoSlot::Draining) => TurnOutcome::Interrupted,
            };
            if switch.is_stopped() {
                log.outcome("cancelled", None);
            } else {
                log.ended(&result);
            }
            engine.inline.lock_unpoisoned().remove(guard.key());
            guard.finish(result);
        });
    }

    async fn run_turn(&self, plan: Plan, guard: &TurnGuard, switch: &StopSwitch) -> TurnOutcome {
        let Plan {
            turn_id,
            number,
            text,
            draft: earlier,
            attachments,
        } = plan;
        let announced_earlier = earlier.clone();
        let key = guard.key();
        let (session, message_id) = (&key.session, &key.message_id);
        // A replica starts an agent only while its lease is current: paused past it, the turn may be
        // another replica's by now (see `crate::cluster`).
        if !self.lease_current().await {
            return TurnOutcome::Interrupted;
        }
        // Not awaited: a lost `running` mark changes nothing (see `TurnStore::start`).
        drop(self.journal.start(turn_id, now_ms()));
        let history = match self.agent.history_limit() {
            0 => Vec::new(),
            limit => match self.journal.context(turn_id, limit).await {
                Ok(history) => history,
                Err(e) => {
                    tracing::warn!(session = %session, turn = number, "cannot read history for a turn: {e}");
                    Vec::new()
                }
            },
        };
        let request = TurnRequest {
            adapter: session.adapter.clone(),
            chat_id: session.chat_id.clone(),
            turn_id,
            turn: number,
            message: text,
            history,
            attachments,
        };
        // A streaming agent's answer is shown as it grows, by the adapter whose outbox takes drafts.
        let draft = Draft::new();
        let outbox = self.outboxes.lock_unpoisoned().get(&session.adapter).cloned();
        if let Some(outbox) = outbox.filter(|_| self.agent.streams()) {
            outbox.drafting(Drafting {
                turn_id,
                session: session.clone(),
                message_id: message_id.clone(),
                text: draft.subscribe(),
                earlier: announced_earlier,
            });
        }
        // A `/stop` drops the agent's future (killing what it started); the stopper has closed the turn.
        let answer = tokio::select! {
            biased;
            () = switch.wait_stopped() => return stopped_outcome(),
            answer = self.agent.reply_drafting(&request, &draft) => answer,
        };
        if !switch.answer() {
            return stopped_outcome();
        }
        let reply = match answer {
            Ok(answer) => Reply {
                text: answer.text,
                failed: false,
                files: answer.files,
            },
            Err(e) => {
                tracing::warn!(session = %session, turn = number, "agent {}: {e}", self.agent.name());
                Reply::text(e.user_message(), true)
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
        let mut in_order = Storing::begin(self, session, turn_id);
        loop {
            let finished = self.journal.finish(turn_id, reply.clone(), now_ms()).await;
            self.stored(&finished);
            match finished {
                Ok(()) if self.inline.lock_unpoisoned().remove(key) => {
                    // Its client has it in the response: nothing to hand over.
                    in_order.end(None);
                    drop(self.journal.mark_delivered(turn_id, now_ms()));
                    return TurnOutcome::Replied(reply);
                }
                Ok(()) => {
                    in_order.stored(Delivery {
                        turn_id,
                        session: session.clone(),
                        message_id: message_id.clone(),
                        reply: reply.clone(),
                        draft: earlier.clone(),
                        at_ms: now_ms(),
                    });
                    return TurnOutcome::Replied(reply);
                }
                Err(e) if e.kind == JournalErrorKind::Closed => return TurnOutcome::Failed(e),
                Err(e) if e.kind == JournalErrorKind::Fenced => {
                    // Another replica adopted the turn while this one was cut off: its answer is theirs.
                    tracing::warn!(session = %session, turn = number, "{e}");
                    in_order.end(None);
                    return TurnOutcome::Interrupted;
                }
                Err(e) => {
                    let delay = retries.next_delay();
                    tracing::error!(
                        session = %session,
                        turn = number,
                        message = %message_id,
                        "cannot store the reply, retrying in {delay:?}: {e}"
                    );
                    guard.publish(TurnOutcome::Failed(e));
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Runs every unfinished turn again (after a restart), or closes it with [`GAVE_UP_REPLY`] once it
    /// has been resumed [`MAX_RESUMES`] times. Every resumed turn is registered before this returns,
    /// so a retry of its message joins it rather than finding it "stored".
    /// With a journal several replicas share, it adopts instead (see [`Engine::adopt`]).
    pub async fn resume(self: &Arc<Self>) -> Result<ResumeSummary, JournalError> {
        if self.cluster.is_some() {
            return self.adopt().await;
        }
        let unfinished = self.journal.unfinished().await?;
        self.run_unfinished(unfinished).await
    }

    /// For a journal several replicas share: takes the turns of the adapters this replica serves that
    /// a stopped or dead replica left, and runs them (as [`Engine::resume`]). Turns this process already
    /// runs are left alone.
    pub async fn adopt(self: &Arc<Self>) -> Result<ResumeSummary, JournalError> {
        if self.cluster.is_none() || self.turns.is_draining() {
            return Ok(ResumeSummary::default());
        }
        let _one_at_a_time = self.adopting.lock().await;
        let mut adapters = vec![crate::http::ADAPTER.to_owned(), CHECK_ADAPTER.to_owned()];
        adapters.extend(self.outboxes.lock_unpoisoned().keys().cloned());
        let owned = self.journal.adopt(&adapters).await?;
        let fresh: Vec<_> = {
            let running = self.switches.lock_unpoisoned();
            owned
                .into_iter()
                .filter(|t| !running.contains_key(&t.turn_id))
                .collect()
        };
        self.run_unfinished(fresh).await
    }

    /// Whether this replica may start an agent now: always, for a journal of one gateway; for a shared
    /// one, once its lease is known to be current (waiting for a renewal after a pause), never after it
    /// lost its turns to another replica.
    async fn lease_current(&self) -> bool {
        let Some(cluster) = &self.cluster else {
            return true;
        };
        let lost = cluster.lost();
        loop {
            if lost.borrow().is_some() {
                return false;
            }
            if cluster.holds_lease() {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    async fn run_unfinished(
        self: &Arc<Self>,
        unfinished: Vec<crate::journal::UnfinishedTurn>,
    ) -> Result<ResumeSummary, JournalError> {
        let (gave_up, to_run): (Vec<_>, Vec<_>) = unfinished
            .into_iter()
            .partition(|t| t.resume_count >= MAX_RESUMES);
        let mut summary = ResumeSummary::default();
        for turn in &gave_up {
            let reply = Reply::text(GAVE_UP_REPLY, true);
            self.journal.finish(turn.turn_id, reply.clone(), now_ms()).await?;
            self.push(
                turn.turn_id,
                &TurnKey::new(turn.session.clone(), turn.message_id.clone()),
                &reply,
                turn.draft.clone(),
            );
            tracing::warn!(session = %turn.session, turn = turn.number, "gave up after {MAX_RESUMES} resumes");
            let mut log = TurnLog::new(self, &turn.session, turn.number, &turn.text);
            log.outcome("gave_up", Some(&reply.text));
            summary.gave_up += 1;
        }
        if to_run.is_empty() {
            return Ok(summary);
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
            let plan = Plan {
                turn_id: turn.turn_id,
                number: turn.number,
                text: turn.text,
                draft: turn.draft,
                attachments: turn.attachments,
            };
            self.spawn_turn(plan, guard);
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

    /// One synthetic turn through the journal, start to end: a message stored, answered, marked
    /// delivered, and read back — what `herald upgrade` asks a new gateway for before it trusts it.
    /// It lives in the [`CHECK_ADAPTER`] session, listed nowhere, and does not call the agent: an
    /// agent backend that is down for its own reasons must not roll back a good upgrade (`status
    /// --deep` reports the agent). Refused while the gateway is not ready (starting, draining).
    pub async fn check_turn(&self) -> Result<(), JournalError> {
        if !self.is_ready() {
            return Err(JournalError::new(
                JournalErrorKind::Closed,
                "the gateway is not taking turns (starting or stopping)",
            ));
        }
        let session = SessionKey::new(CHECK_ADAPTER, "upgrade");
        let message_id = self.ids.next();
        let accepted = self
            .journal
            .accept(Inbound {
                session: session.clone(),
                message_id: message_id.clone(),
                text: "health check".into(),
                at_ms: now_ms(),
                attachments: Vec::new(),
            })
            .await?;
        self.journal
            .finish(accepted.turn_id, Reply::text("ok", false), now_ms())
            .await?;
        self.journal.mark_delivered(accepted.turn_id, now_ms()).await?;
        let back = self.journal.history(&session, 2).await?;
        let answered = back
            .iter()
            .any(|m| m.message_id == message_id && m.role == crate::agent::Role::Assistant && m.text == "ok");
        if answered {
            Ok(())
        } else {
            Err(JournalError::new(
                JournalErrorKind::Storage,
                "the check turn's reply was not read back from the journal",
            ))
        }
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

    /// Replies of `adapter` (one every replica runs) that nobody else is sending: see
    /// [`crate::journal::AdapterStore::claim_undelivered`].
    pub async fn claim_undelivered(
        &self,
        adapter: &str,
        limit: usize,
    ) -> Result<Vec<Delivery>, JournalError> {
        self.journal.claim_undelivered(adapter, limit).await
    }

    /// Records (durably) that a turn's reply reached its chat.
    pub async fn mark_delivered(&self, turn_id: i64) -> Result<(), JournalError> {
        self.journal.mark_delivered(turn_id, now_ms()).await
    }

    /// Sets a reply aside as undeliverable (see [`crate::journal::AdapterStore::fail_delivery`]).
    pub async fn fail_delivery(&self, turn_id: i64, error: &str) -> Result<(), JournalError> {
        self.journal.fail_delivery(turn_id, error, now_ms()).await
    }

    /// Replies set aside as undeliverable, oldest first.
    pub async fn failed_deliveries(&self, limit: usize) -> Result<Vec<FailedDelivery>, JournalError> {
        self.journal.failed_deliveries(limit).await
    }

    /// Takes a reply set aside back into delivery and hands it to its outbox now, with a fresh retry
    /// window (it counts from now); `false` when turn `turn_id` has no reply set aside.
    pub async fn retry_delivery(&self, turn_id: i64) -> Result<bool, JournalError> {
        match self.journal.retry_delivery(turn_id).await? {
            Some(mut delivery) => {
                delivery.at_ms = now_ms();
                self.hand_over(delivery);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Records (durably) the chat message showing a turn's answer as it is written (see
    /// [`Outbox::drafting`]).
    pub async fn set_draft(&self, turn_id: i64, draft: &str) -> Result<(), JournalError> {
        self.journal.set_draft(turn_id, draft, now_ms()).await
    }

    /// The first update id `adapter` has not durably handled, if it ever recorded one.
    pub async fn adapter_offset(&self, adapter: &str) -> Result<Option<i64>, JournalError> {
        self.journal.adapter_offset(adapter).await
    }

    /// Records (durably) that every update of `adapter` below `offset` is handled.
    pub async fn set_adapter_offset(&self, adapter: &str, offset: i64) -> Result<(), JournalError> {
        self.journal.set_adapter_offset(adapter, offset, now_ms()).await
    }

    /// An adapter's stored opaque position (see [`crate::journal::AdapterStore::adapter_cursor`]).
    pub async fn adapter_cursor(&self, adapter: &str) -> Result<Option<String>, JournalError> {
        self.journal.adapter_cursor(adapter).await
    }

    /// Commits an adapter's opaque position (see [`crate::journal::AdapterStore::set_adapter_cursor`]).
    pub async fn set_adapter_cursor(&self, adapter: &str, cursor: &str) -> Result<(), JournalError> {
        self.journal.set_adapter_cursor(adapter, cursor, now_ms()).await
    }

    /// Starts a new conversation of `session` (durably, before returning): the turns stored from now on
    /// are shown to the agent without anything from before. Nothing is deleted; a session whose current
    /// conversation has no turn yet is left as it is.
    pub async fn reset(&self, session: &SessionKey) -> Result<Conversation, JournalError> {
        let reset = self.journal.reset(session, now_ms()).await;
        self.stored(&reset);
        let conversation = reset?;
        if conversation.started {
            tracing::info!(
                adapter = %session.adapter,
                session = %session.chat_id,
                conversation = conversation.number,
                "conversation reset"
            );
        }
        Ok(conversation)
    }

    /// Sessions, most recently active first.
    pub async fn sessions(&self, limit: usize) -> Result<Vec<SessionSummary>, JournalError> {
        self.journal.sessions(limit).await
    }
}

/// The one log line of a turn, written once: when the turn ends ([`TurnLog::ended`]), or — if its task
/// is dropped first (a stop, a panic) — when this is dropped, as `interrupted`.
#[derive(Debug)]
struct TurnLog {
    session: SessionKey,
    number: u64,
    agent: &'static str,
    /// The message text, only when the options allow logging it.
    text: Option<String>,
    began: Instant,
    written: bool,
}

impl TurnLog {
    fn new(engine: &Engine, session: &SessionKey, number: u64, text: &str) -> TurnLog {
        TurnLog {
            session: session.clone(),
            number,
            agent: engine.agent.name(),
            text: engine.options.log_message_text.then(|| text.to_owned()),
            began: Instant::now(),
            written: false,
        }
    }

    fn ended(&mut self, outcome: &TurnOutcome) {
        match outcome {
            TurnOutcome::Replied(reply) => {
                let word = if reply.failed { "failed" } else { "done" };
                self.outcome(word, Some(&reply.text));
            }
            // A reply the journal could not take (it closed): the turn runs again after the next start.
            TurnOutcome::Interrupted | TurnOutcome::Failed(_) | TurnOutcome::Stored => {
                self.outcome("interrupted", None)
            }
        }
    }

    fn outcome(&mut self, outcome: &str, reply: Option<&str>) {
        if std::mem::replace(&mut self.written, true) {
            return;
        }
        let ms = u64::try_from(self.began.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (adapter, session) = (&self.session.adapter, &self.session.chat_id);
        match &self.text {
            None => tracing::info!(
                adapter = %adapter,
                session = %session,
                turn = self.number,
                agent = %self.agent,
                outcome = %outcome,
                ms,
                "turn ended"
            ),
            Some(text) => tracing::info!(
                adapter = %adapter,
                session = %session,
                turn = self.number,
                agent = %self.agent,
                outcome = %outcome,
                ms,
                text = ?text,
                reply = ?reply.unwrap_or_default(),
                "turn ended"
            ),
        }
    }
}

impl Drop for TurnLog {
    fn drop(&mut self) {
        self.outcome("interrupted", None);
    }
}

/// A turn storing its reply, in its session's [`ReplyOrder`]. Dropped without [`Storing::stored`] (the
/// journal is closed, or the task is cut by a stop), it ends without a reply, releasing later turns.
struct Storing<'a> {
    engine: &'a Engine,
    session: &'a SessionKey,
    turn_id: i64,
    ended: bool,
}

impl<'a> Storing<'a> {
    fn begin(engine: &'a Engine, session: &'a SessionKey, turn_id: i64) -> Storing<'a> {
        engine.reply_order.lock_unpoisoned().begin(session, turn_id);
        Storing {
            engine,
            session,
            turn_id,
            ended: false,
        }
    }

    /// The reply is committed: hands it (and any later ones it held) to the outbox, in order.
    fn stored(&mut self, delivery: Delivery) {
        self.end(Some(delivery));
    }

    fn end(&mut self, delivery: Option<Delivery>) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let ready = self
            .engine
            .reply_order
            .lock_unpoisoned()
            .end(self.session, self.turn_id, delivery);
        for delivery in ready {
            self.engine.hand_over(delivery);
        }
    }
}

impl Drop for Storing<'_> {
    fn drop(&mut self) {
        self.end(None);
    }
}

/// What the waiters of a stopped turn are told (the journal holds the same notice).
fn stopped_outcome() -> TurnOutcome {
    TurnOutcome::Replied(Reply::text(STOPPED_REPLY, true))
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
