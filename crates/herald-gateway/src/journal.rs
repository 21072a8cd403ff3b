//! The session journal as the gateway sees it: a durable store of sessions, turns and messages.
//!
//! **Invariant:** a message is acknowledged only after [`TurnStore::accept`] has completed, and
//! `accept` completes only once the message is durably committed. A reply is handed to the user only
//! after [`TurnStore::finish`] has committed it, and `finish` stores at most one reply per turn. Together
//! these make "no acknowledged message is lost, none is answered twice" a property of the store rather
//! than of every adapter.
//!
//! The contract is split by concern: [`TurnStore`] (the life of a turn, which the engine drives),
//! [`HistoryStore`] (reads for people and agents) and [`AdapterStore`] (what a push adapter needs:
//! its cursor into the service it polls, and which replies reached their chats). A [`Journal`] is a store
//! that does all three and can be closed.
//!
//! **Every method is asynchronous** and returns a [`Pending`] the implementation resolves, whether it
//! writes to a local file from a thread of its own or talks to a database server. Callers never block
//! and never move a call to another thread themselves; an implementation is free to batch many turns'
//! writes into one commit. The traits live here and the implementations elsewhere (`herald-journal`),
//! so this crate stays pure Rust and the engine can be tested against any store.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use crate::agent::{Attachment, HistoryMessage, Role};

/// The adapter name of the health-check turns a running gateway makes on request (`herald upgrade`'s
/// gate, see `Engine::check_turn`): journaled like any turn, never listed among the sessions, never
/// delivered anywhere.
pub const CHECK_ADAPTER: &str = "herald-check";

/// A conversation: one chat of one adapter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey {
    /// `http`, `telegram`, ...
    pub adapter: String,
    /// The adapter's own id for the conversation.
    pub chat_id: String,
}

impl SessionKey {
    pub fn new(adapter: impl Into<String>, chat_id: impl Into<String>) -> SessionKey {
        SessionKey {
            adapter: adapter.into(),
            chat_id: chat_id.into(),
        }
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.adapter, self.chat_id)
    }
}

/// Where a turn is in its life. `Done`, `Failed` and `Cancelled` are final; the other three are resumed after a
/// restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TurnState {
    /// Stored, not started.
    Pending,
    /// The agent is working on it.
    Running,
    /// Answered.
    Done,
    /// Answered with an error reply (the agent failed, or the turn could not be resumed).
    Failed,
    /// Stopped by a `/stop` before it was answered; its notice is stored but never sent.
    Cancelled,
    /// Cut by a planned stop; resumed after the next start.
    Interrupted,
}

impl TurnState {
    pub fn as_str(self) -> &'static str {
        match self {
            TurnState::Pending => "pending",
            TurnState::Running => "running",
            TurnState::Done => "done",
            TurnState::Failed => "failed",
            TurnState::Cancelled => "cancelled",
            TurnState::Interrupted => "interrupted",
        }
    }

    pub fn parse(text: &str) -> Option<TurnState> {
        Some(match text {
            "pending" => TurnState::Pending,
            "running" => TurnState::Running,
            "done" => TurnState::Done,
            "failed" => TurnState::Failed,
            "cancelled" => TurnState::Cancelled,
            "interrupted" => TurnState::Interrupted,
            _ => return None,
        })
    }

    pub fn is_final(self) -> bool {
        matches!(self, TurnState::Done | TurnState::Failed | TurnState::Cancelled)
    }
}

/// A message arriving from an adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    pub session: SessionKey,
    /// The idempotency key: the same key in the same session never makes a second turn.
    pub message_id: String,
    pub text: String,
    pub at_ms: u64,
    /// Files that came with it, already in the media store.
    pub attachments: Vec<Attachment>,
}

/// A stored reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub text: String,
    /// The reply is the gateway's notice of a failure (an apology: the agent failed, or the turn could
    /// not be resumed), not the agent's words. It is stored as such, shown to people, and never given to
    /// an agent as history (see [`HistoryStore::context`]).
    pub failed: bool,
    /// Files the agent made for the chat (in the media store), sent after the text.
    pub files: Vec<Attachment>,
}

impl Reply {
    /// A reply of text alone.
    pub fn text(text: impl Into<String>, failed: bool) -> Reply {
        Reply {
            text: text.into(),
            failed,
            files: Vec::new(),
        }
    }
}

/// What [`TurnStore::accept`] found or made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub turn_id: i64,
    /// The turn's number within its session: 1, 2, 3… in the order the session's messages were stored.
    pub number: u64,
    /// `false` when the message id was already known: no new turn was made.
    pub new: bool,
    /// The turn's state (for a duplicate, its current state).
    pub state: TurnState,
    /// For a duplicate: the text first stored under this id (to detect a reused id).
    pub text: String,
    /// For a finished duplicate: its reply.
    pub reply: Option<Reply>,
}

/// A turn left unfinished by an earlier process (or by this one, cut by a drain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnfinishedTurn {
    pub turn_id: i64,
    /// The turn's number within its session (see [`Accepted::number`]).
    pub number: u64,
    pub session: SessionKey,
    pub message_id: String,
    pub text: String,
    pub state: TurnState,
    /// How many times the turn has been resumed already.
    pub resume_count: u32,
    /// The chat message showing its answer as it was being written, if an earlier run made one
    /// ([`AdapterStore::set_draft`]).
    pub draft: Option<String>,
    /// Files that came with its message.
    pub attachments: Vec<Attachment>,
}

/// A committed reply that a push adapter has to hand to its chat (see [`AdapterStore::undelivered`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub turn_id: i64,
    pub session: SessionKey,
    /// The question's message id.
    pub message_id: String,
    pub reply: Reply,
    /// The chat message that showed the answer as it was written, to become the answer (edited) rather
    /// than stay beside it; `None` when there was none or the adapter knows it itself.
    pub draft: Option<String>,
    /// When the reply was stored (a retry window counts from it).
    pub at_ms: u64,
}

/// A reply set aside as undeliverable (see [`AdapterStore::fail_delivery`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FailedDelivery {
    pub turn_id: i64,
    pub adapter: String,
    pub chat_id: String,
    /// The question's message id.
    pub message_id: String,
    pub text: String,
    /// When the reply was stored.
    pub at_ms: u64,
    /// When it was set aside, and why.
    pub failed_ms: u64,
    pub error: String,
}

/// One message of a session's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub turn_id: i64,
    /// Its turn's number within the session (see [`Accepted::number`]).
    pub turn: u64,
    /// The conversation of the session the turn belongs to: 1 until the first reset, then 2, …
    /// (see [`HistoryStore::reset`]).
    pub conversation: u64,
    /// The turn's message id (idempotency key); a reply carries its question's id.
    pub message_id: String,
    pub role: Role,
    pub text: String,
    pub at_ms: u64,
    /// For a user message, the state of its turn; for a reply, `done` or `failed`.
    pub status: TurnState,
    /// For a reply, the files it sent (see [`Reply::files`]).
    pub files: Vec<Attachment>,
}

/// A page of a session's history, newest messages last, read within a byte budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    /// At most this many messages.
    pub limit: usize,
    /// Only messages older than this cursor (a [`HistoryPage::older`] from an earlier page).
    pub before: Option<i64>,
    /// Stop adding older messages once their texts would pass this many bytes (one message is always
    /// returned, however large, so paging always moves on).
    pub max_bytes: usize,
}

/// What [`HistoryStore::history_page`] returns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistoryPage {
    /// Oldest first.
    pub messages: Vec<StoredMessage>,
    /// The cursor for the page before this one, when older messages exist.
    pub older: Option<i64>,
    /// The session's current conversation: only its messages are an agent's context (1 for a session
    /// never reset, or unknown).
    pub conversation: u64,
}

/// One session, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    pub session: SessionKey,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub messages: u64,
    /// The session's current conversation (see [`HistoryStore::reset`]).
    pub conversation: u64,
}

/// What [`HistoryStore::reset`] left: the session's current conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conversation {
    /// 1 for a session never reset; one more for every reset that followed a turn.
    pub number: u64,
    /// Whether this call started it (`false`: the current conversation had no turn yet, so it is
    /// already fresh — a reset repeated or retried changes nothing).
    pub started: bool,
}

/// What [`HistoryStore::claim_command`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandClaim {
    /// `false`: this message ran its command before (it was handed over again); do nothing twice.
    pub first: bool,
    /// For a claim with a reset: the session's current conversation afterwards.
    pub conversation: Option<Conversation>,
}

/// Why the journal could not do something. The message is for people; `kind` is for deciding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JournalError {
    pub kind: JournalErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalErrorKind {
    /// The disk is full: nothing was stored.
    Full,
    /// The journal has shut down.
    Closed,
    /// The store cannot hold this input (PostgreSQL text cannot contain a NUL character): nothing was
    /// stored, and sending it again will not change that.
    Unstorable,
    /// The turn belongs to another replica now (this one lost its lease and the turn was adopted):
    /// nothing was stored, and this replica must leave the turn alone.
    Fenced,
    /// Any other storage failure.
    Storage,
}

impl JournalError {
    pub fn new(kind: JournalErrorKind, message: impl Into<String>) -> JournalError {
        JournalError {
            kind,
            message: message.into(),
        }
    }

    pub fn closed() -> JournalError {
        JournalError::new(JournalErrorKind::Closed, "the journal has shut down")
    }
}

/// The result of a write, once it is durable.
#[derive(Debug)]
pub struct Pending<T>(oneshot::Receiver<Result<T, JournalError>>);

/// The writer's end of a [`Pending`].
#[derive(Debug)]
pub struct Completion<T>(oneshot::Sender<Result<T, JournalError>>);

impl<T> Pending<T> {
    /// A pending write and the completion that resolves it.
    pub fn channel() -> (Completion<T>, Pending<T>) {
        let (tx, rx) = oneshot::channel();
        (Completion(tx), Pending(rx))
    }

    /// An already-resolved write (an error found before anything was queued, say).
    pub fn ready(result: Result<T, JournalError>) -> Pending<T> {
        let (done, pending) = Pending::channel();
        done.complete(result);
        pending
    }
}

impl<T> Completion<T> {
    pub fn complete(self, result: Result<T, JournalError>) {
        // The waiter may have gone (a client hung up); the write stands either way.
        let _ = self.0.send(result);
    }
}

impl<T> Future for Pending<T> {
    type Output = Result<T, JournalError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|received| received.unwrap_or_else(|_| Err(JournalError::closed())))
    }
}

impl<T> Pending<T> {
    /// Waits for the result on a thread that is not running async tasks (a test, a tool). Never call it
    /// from async code: await the `Pending` instead.
    pub fn wait(self) -> Result<T, JournalError> {
        self.0
            .blocking_recv()
            .unwrap_or_else(|_| Err(JournalError::closed()))
    }
}

/// The life of a turn: stored, started, finished — or cut by a drain and resumed after a restart.
///
/// Writes are ordered: a write issued after another one is applied after it. Each completes once it
/// is durable; a dropped [`Pending`] does not cancel its write.
pub trait TurnStore: Send + Sync + fmt::Debug {
    /// Stores an inbound message as a new `pending` turn — or, when its message id is already known in
    /// the session, finds that turn instead.
    fn accept(&self, inbound: Inbound) -> Pending<Accepted>;

    /// Marks a turn `running` (its agent was started). Callers need not await it: an unfinished turn is
    /// resumed whether pending or running; only its resume is not counted if the mark was lost (a turn
    /// that crashes the gateway takes longer than the mark's commit).
    fn start(&self, turn_id: i64, at_ms: u64) -> Pending<()>;

    /// Stores the turn's reply and its final state, once. A turn already final is left as it is.
    fn finish(&self, turn_id: i64, reply: Reply, at_ms: u64) -> Pending<()>;

    /// Marks turns cut by a drain as `interrupted`, so they are resumed after the next start.
    fn mark_interrupted(&self, turn_ids: &[i64], at_ms: u64) -> Pending<()>;

    /// Turns that are pending, running or interrupted, oldest first.
    fn unfinished(&self) -> Pending<Vec<UnfinishedTurn>>;

    /// Closes a turn stopped by `/stop` before it was answered: `cancelled`, with `notice` stored as its
    /// reply (a failure notice, shown in its history, never given to an agent) and already marked
    /// delivered, so no reply is ever sent for it. A turn already final is left as it is; the result
    /// says whether this call closed it.
    fn cancel(&self, turn_id: i64, notice: &str, at_ms: u64) -> Pending<bool>;

    /// Sets each turn back to `pending`, counting one more resume for those that had been started
    /// (`running` or `interrupted`): a turn that only waited in line for a slot was never tried.
    fn note_resumed(&self, turn_ids: &[i64], at_ms: u64) -> Pending<()>;

    /// For a journal several gateways share: takes the unfinished turns of `adapters` that no live
    /// replica owns (left by one that stopped, or whose lease ran out), and returns every unfinished
    /// turn this replica owns, oldest first. Turns of other adapters are left for a replica that serves
    /// them, so each reply reaches the adapter that delivers it. A journal only one gateway uses has
    /// nothing to adopt.
    fn adopt(&self, adapters: &[String]) -> Pending<Vec<UnfinishedTurn>> {
        let _ = adapters;
        Pending::ready(Ok(Vec::new()))
    }
}

/// Stored conversations: reads for people (the HTTP history, session listings) and for agents (a turn's
/// context), and the reset that starts a session's next conversation.
///
/// A session keeps every message it ever had. A reset does not delete anything: it starts a new
/// *conversation* of the session, and an agent's context is made only of its turn's own conversation.
pub trait HistoryStore: Send + Sync + fmt::Debug {
    /// The last `limit` messages of a session, oldest first, every conversation. Unknown session: empty.
    fn history(&self, session: &SessionKey, limit: usize) -> Pending<Vec<StoredMessage>>;

    /// What an agent is shown as the history of turn `turn_id`: the last `limit` messages of the turns
    /// before it in its session's conversation, in turn order (a question, then its answer), oldest
    /// first. Failure notices ([`Reply::failed`]) are never part of it.
    fn context(&self, turn_id: i64, limit: usize) -> Pending<Vec<HistoryMessage>>;

    /// Starts a new conversation of `session`, unless its current one has no turn yet. Messages stored
    /// after it are the next turns' context; those before stay stored and listed.
    fn reset(&self, session: &SessionKey, at_ms: u64) -> Pending<Conversation>;

    /// Records that the command in message `message_id` of `session` ran — once: a message handed over
    /// again (after a crash) finds it recorded (`first == false`) and must not run it again. With
    /// `reset`, a first claim also starts the session's next conversation in the same transaction (as
    /// [`Self::reset`]), so a `/new` is never half done nor done twice.
    fn claim_command(
        &self,
        session: &SessionKey,
        message_id: &str,
        command: &str,
        reset: bool,
        at_ms: u64,
    ) -> Pending<CommandClaim>;

    /// A page of a session's history (see [`HistoryQuery`]): what a reader outside the process gets, so
    /// the memory one request can take is bounded by its byte budget, not by the session's size.
    fn history_page(&self, session: &SessionKey, query: HistoryQuery) -> Pending<HistoryPage>;

    /// Sessions, most recently active first.
    fn sessions(&self, limit: usize) -> Pending<Vec<SessionSummary>>;
}

/// What push adapters keep in the journal: their cursor into the service they poll, and which replies
/// reached their chats (the outbox).
pub trait AdapterStore: Send + Sync + fmt::Debug {
    /// Replies of `adapter`'s sessions not yet marked delivered, oldest first, at most `limit`. A push
    /// adapter re-sends these at startup: replies of turns that finished while its service was
    /// unreachable, or just before a crash.
    fn undelivered(&self, adapter: &str, limit: usize) -> Pending<Vec<Delivery>>;

    /// The replies of `adapter` — one every replica runs, not one that runs on a lease's holder alone
    /// (webhook callbacks) — that nobody else is sending, oldest first, at most `limit`. In a journal
    /// several gateways share, a reply is sent by the replica that owns its turn: this returns those
    /// whose owner left, taken over by this gateway (each by one replica only), never one a live replica
    /// owns. In a journal of one gateway, [`AdapterStore::undelivered`].
    fn claim_undelivered(&self, adapter: &str, limit: usize) -> Pending<Vec<Delivery>> {
        self.undelivered(adapter, limit)
    }

    /// Marks a turn's reply as handed to its chat.
    fn mark_delivered(&self, turn_id: i64, at_ms: u64) -> Pending<()>;

    /// Sets a reply aside as undeliverable (its service refused it for good, or its retries ran out):
    /// it is no longer handed out by [`AdapterStore::undelivered`], and is listed by
    /// [`AdapterStore::failed_deliveries`] with `error` until [`AdapterStore::retry_delivery`].
    fn fail_delivery(&self, turn_id: i64, error: &str, at_ms: u64) -> Pending<()>;

    /// Replies set aside as undeliverable, oldest first, at most `limit`.
    fn failed_deliveries(&self, limit: usize) -> Pending<Vec<FailedDelivery>>;

    /// Takes a reply set aside back into delivery; returns it to hand to its outbox, or `None` when turn
    /// `turn_id` has no reply set aside.
    fn retry_delivery(&self, turn_id: i64) -> Pending<Option<Delivery>>;

    /// Records the chat message showing a turn's answer as it is being written (the adapter's reference
    /// to it), so a resumed turn and its final delivery edit that message instead of adding another.
    fn set_draft(&self, turn_id: i64, draft: &str, at_ms: u64) -> Pending<()>;

    /// The first update id `adapter` has not yet durably stored (its confirmed offset), if it ever
    /// stored one.
    fn adapter_offset(&self, adapter: &str) -> Pending<Option<i64>>;

    /// Records that every update of `adapter` below `offset` is durably handled; never moves the
    /// offset backwards.
    fn set_adapter_offset(&self, adapter: &str, offset: i64, at_ms: u64) -> Pending<()>;

    /// The position of an adapter whose platform gives an opaque token (Matrix's `next_batch`), if one
    /// was stored.
    fn adapter_cursor(&self, adapter: &str) -> Pending<Option<String>>;

    /// Records that every event of `adapter` before `cursor` is durably handled. The platform's tokens
    /// cannot be compared, so the adapter commits them in the order it received them.
    fn set_adapter_cursor(&self, adapter: &str, cursor: &str, at_ms: u64) -> Pending<()>;
}

/// The whole durable store of conversations, as one gateway uses it.
pub trait Journal: TurnStore + HistoryStore + AdapterStore {
    /// Makes everything issued so far durable and releases the store; completes once it is released.
    /// Later calls fail with [`JournalErrorKind::Closed`]. Called once the gateway has drained, so the
    /// store is left tidy.
    fn close(&self) -> Pending<()>;

    /// The replicas sharing this journal, when several gateways may (PostgreSQL); `None` for a journal
    /// of one gateway.
    fn cluster(&self) -> Option<std::sync::Arc<dyn crate::cluster::Cluster>> {
        None
    }

    /// For a journal on a database server: since when it has not answered, as it changes (`None`
    /// inside while it answers). `None` for a local file, whose failures are each write's own.
    fn outages(&self) -> Option<tokio::sync::watch::Receiver<Option<herald_home::records::JournalOutage>>> {
        None
    }
}
