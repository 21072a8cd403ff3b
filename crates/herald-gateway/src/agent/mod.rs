//! Agent backends: what answers a turn.
//!
//! **Invariant:** an agent never hangs a turn and never panics it. Every backend bounds its own time
//! (`timeout_secs`), and every failure comes back as an [`AgentError`] whose [`AgentError::user_message`]
//! is a reply the user can read — the router stores and sends that instead of leaving the turn open.
//! Dropping the future returned by [`Agent::reply`] cancels the turn and releases everything it started
//! (a `command` agent's whole process tree), so a planned stop that cuts a turn leaves nothing behind.
//!
//! The built-in backends are [`echo`] and [`command`]; the OpenAI-compatible backend lives in its own
//! crate (`herald-openai`) because its TLS stack builds C code, which this crate keeps out.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub mod command;
pub mod echo;
pub mod health;
pub mod outfiles;

/// A boxed, sendable future: what a dyn-compatible async trait method returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One earlier message of the conversation, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HistoryMessage {
    pub role: Role,
    pub text: String,
}

/// A file that came with a message (a photo, a document, a voice note), stored in the home's media
/// store before its turn was.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attachment {
    /// `photo`, `document`, `voice`, `audio`.
    pub kind: String,
    /// Where it is stored (absolute).
    pub path: String,
    /// Its MIME type (`image/jpeg`, `application/pdf`, `audio/ogg`).
    pub mime: String,
    /// The name its sender gave it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub size: u64,
}

/// An agent's answer: its text, and the files it made for the chat (a chart, a report), each already a
/// regular file the gateway checked (see [`outfiles`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub text: String,
    pub files: Vec<Attachment>,
}

impl From<&str> for Answer {
    fn from(text: &str) -> Answer {
        Answer::from(text.to_owned())
    }
}

impl From<String> for Answer {
    fn from(text: String) -> Answer {
        Answer {
            text,
            files: Vec::new(),
        }
    }
}

/// Everything an agent is given to answer one turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnRequest {
    /// The adapter the message came through (`http`, `telegram`).
    pub adapter: String,
    /// The conversation within that adapter (an HTTP session id, a Telegram chat id).
    pub chat_id: String,
    /// The journal's id for this turn, unique across sessions and stable across restarts, so a resumed
    /// turn has the same id.
    pub turn_id: i64,
    /// The turn's number within its session (1, 2, 3…), also stable across restarts.
    pub turn: u64,
    /// The user's message this turn answers.
    pub message: String,
    /// Earlier messages of the session's current conversation (not including `message`), oldest first,
    /// without the gateway's failure notices. Empty unless [`Agent::wants_history`] is true.
    pub history: Vec<HistoryMessage>,
    /// Files that came with the message (a photo and its caption, a document, a voice note).
    pub attachments: Vec<Attachment>,
}

/// The text of an answer as it is being written, for a streaming agent to grow and an adapter to show
/// (a draft edited in place). Only the latest text matters: a reader that falls behind skips to it.
#[derive(Debug)]
pub struct Draft(tokio::sync::watch::Sender<String>);

impl Draft {
    pub fn new() -> Draft {
        Draft(tokio::sync::watch::Sender::new(String::new()))
    }

    /// The whole answer so far (not the new part): a reader always sees a prefix of the final text.
    pub fn grow(&self, text: &str) {
        self.0.send_if_modified(|current| {
            if current == text {
                false
            } else {
                text.clone_into(current);
                true
            }
        });
    }

    /// A reader of the text so far.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<String> {
        self.0.subscribe()
    }
}

impl Default for Draft {
    fn default() -> Self {
        Draft::new()
    }
}

/// Why an agent could not answer. Each variant carries enough to explain it to the user and in logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// The backend did not answer within its time budget.
    #[error("the agent did not answer within {0:?}")]
    Timeout(Duration),
    /// The backend could not be reached or could not be started.
    #[error("the agent is unavailable: {0}")]
    Unavailable(String),
    /// The backend answered, but not with something usable (bad JSON, an error status, a failed exit).
    #[error("the agent failed: {0}")]
    Failed(String),
    /// The backend is set up so that it cannot work (a program that does not exist, a key the server
    /// refuses): retrying will not help; the operator must fix the configuration.
    #[error("the agent is misconfigured: {0}")]
    Misconfigured(String),
}

impl AgentError {
    /// The reply stored and sent to the user in place of an answer.
    pub fn user_message(&self) -> String {
        match self {
            AgentError::Timeout(budget) => format!(
                "Sorry, the agent did not answer within {}. Please try again.",
                herald_home::words::count(budget.as_secs(), "second", "seconds")
            ),
            AgentError::Unavailable(why) => {
                format!("Sorry, the agent is unavailable right now ({why}). Please try again later.")
            }
            AgentError::Failed(why) => format!("Sorry, the agent failed to answer ({why})."),
            AgentError::Misconfigured(why) => format!(
                "Sorry, the agent is not set up correctly ({why}). This will not go away by itself: the \
                 gateway's operator can find the fix with `herald doctor`."
            ),
        }
    }
}

/// An agent backend. Implementations are shared by every turn (`Arc<dyn Agent>`), so `reply` takes
/// `&self` and may run many times at once.
pub trait Agent: Send + Sync + fmt::Debug {
    /// The backend's name as configured (`echo`, `openai`, `command`).
    fn name(&self) -> &'static str;

    /// Whether [`TurnRequest::history`] should be filled (it costs a journal read per turn).
    fn wants_history(&self) -> bool {
        false
    }

    /// How many earlier messages to put in [`TurnRequest::history`]; 0 when history is not wanted.
    fn history_limit(&self) -> usize {
        if self.wants_history() { 10_000 } else { 0 }
    }

    /// Answers one turn. Dropping the returned future cancels the turn and releases what it started.
    fn reply<'a>(&'a self, request: &'a TurnRequest) -> BoxFuture<'a, Result<Answer, AgentError>>;

    /// Whether the agent writes its answer as it goes ([`Agent::reply_drafting`] grows the draft).
    fn streams(&self) -> bool {
        false
    }

    /// As [`Agent::reply`], growing `draft` with the answer so far while it is written. The returned answer
    /// is what counts; the draft is only for show. The default writes no draft.
    fn reply_drafting<'a>(
        &'a self,
        request: &'a TurnRequest,
        draft: &'a Draft,
    ) -> BoxFuture<'a, Result<Answer, AgentError>> {
        let _ = draft;
        self.reply(request)
    }

    /// Checks, cheaply and without a turn, that the backend can answer: the program exists and is
    /// executable, the endpoint answers and accepts the key. `Ok` says what was checked. Bounded by the
    /// backend (a few seconds at most); the default has nothing to check.
    fn probe(&self) -> BoxFuture<'_, Result<String, AgentError>> {
        Box::pin(async { Ok("nothing to check".to_owned()) })
    }
}
