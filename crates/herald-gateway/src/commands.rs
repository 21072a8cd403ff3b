//! In-chat commands — `/new` (`/reset`), `/stop`, `/status`, `/whoami`, `/help` — answered by the
//! gateway before the agent, the same way on every adapter. An adapter parses ([`parse`]), says who
//! is asking ([`Caller`]) and sends back the text [`CommandDesk::run`] returns; `/pair` is parsed here too
//! but redeemed by the adapter, which knows its users.
//!
//! **Invariant:** a command that changes something runs once per message. `/new` and `/stop` are claimed
//! in the journal under their message id before they act (`/new` starts the next conversation in the same
//! transaction), so a message handed over again after a crash is answered without being acted on twice.
//! Commands that only read (`/status`, `/whoami`, `/help`) are answered afresh each time.
//!
//! **Invariant:** only words in [`COMMANDS`] are commands. Any other `/word` is text for the agent (an
//! agent may have commands of its own), and a command addressed to another bot (`/new@otherbot`) is not
//! ours.
//!
//! Access: a `user` stops only their own chat's turns and sees the gateway in one line; an `admin`
//! also stops turns in a shared chat (a group) and sees every adapter's health, the turn slots and the
//! process. Command texts are never logged (they are the user's words like any message).

use std::sync::Arc;

use herald_home::access::AccessLevel;
use herald_home::records::{HealthRecord, HealthState};
use herald_home::time::now_ms;

use crate::engine::Engine;
use crate::health::HealthBoard;
use crate::journal::{HistoryQuery, JournalError, SessionKey};

/// Every command, with the line shown for it (`/help`, and Telegram's command menu).
pub const COMMANDS: &[(&str, &str)] = &[
    ("new", "Start a fresh conversation (also /reset)"),
    ("stop", "Stop the answer being written"),
    ("status", "The gateway, the agent and this chat"),
    ("whoami", "Your id and access level"),
    ("pair", "Get access with a pairing code: /pair CODE"),
    ("help", "What I understand"),
];

/// A command found in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    New,
    Stop,
    Status,
    WhoAmI,
    Help,
    /// `/pair CODE`: the adapter redeems it.
    Pair(String),
}

impl Command {
    /// The command's name as recorded in the journal.
    pub fn name(&self) -> &'static str {
        match self {
            Command::New => "new",
            Command::Stop => "stop",
            Command::Status => "status",
            Command::WhoAmI => "whoami",
            Command::Help => "help",
            Command::Pair(_) => "pair",
        }
    }
}

/// The command in `text`, if it is one of ours. `bot` is this bot's username (without `@`), for
/// commands addressed to a bot by name; `None` accepts any address.
pub fn parse(text: &str, bot: Option<&str>) -> Option<Command> {
    let text = text.trim_start();
    let rest = text.strip_prefix('/')?;
    let (word, argument) = match rest.split_once(char::is_whitespace) {
        Some((word, argument)) => (word, argument.trim()),
        None => (rest, ""),
    };
    let (name, addressee) = match word.split_once('@') {
        Some((name, addressee)) => (name, Some(addressee)),
        None => (word, None),
    };
    if let (Some(addressee), Some(bot)) = (addressee, bot)
        && !addressee.eq_ignore_ascii_case(bot)
    {
        return None;
    }
    Some(match name.to_ascii_lowercase().as_str() {
        "new" | "reset" => Command::New,
        "stop" => Command::Stop,
        "status" => Command::Status,
        "whoami" => Command::WhoAmI,
        // Telegram sends `/start` when someone first opens a chat with a bot.
        "help" | "start" => Command::Help,
        "pair" => Command::Pair(argument.to_owned()),
        _ => return None,
    })
}

/// Who sent a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// How the adapter names people (`Telegram user`, `local API client`).
    pub kind: &'static str,
    /// The adapter's id for them, if it has one.
    pub user: Option<String>,
    /// A name to recognise them by (`@ann`).
    pub name: Option<String>,
    pub level: AccessLevel,
    /// Why they are let in (`listed in [telegram] allowed_users`, `paired`, ...).
    pub why: String,
    /// The chat has other people in it (a group): stopping its turns stops theirs too.
    pub shared_chat: bool,
}

/// Runs commands against the engine and reads the health board for `/status`.
#[derive(Debug, Clone)]
pub struct CommandDesk {
    engine: Arc<Engine>,
    board: HealthBoard,
}

impl CommandDesk {
    pub fn new(engine: Arc<Engine>, board: HealthBoard) -> CommandDesk {
        CommandDesk { engine, board }
    }

    /// Runs `command`, sent as message `message_id` of `session` by `caller`, and returns the answer.
    /// `Err` only when the journal fails (nothing was done; the adapter may retry the message).
    pub async fn run(
        &self,
        session: &SessionKey,
        message_id: &str,
        caller: &Caller,
        command: &Command,
    ) -> Result<String, JournalError> {
        Ok(match command {
            Command::New => {
                let claim = self
                    .engine
                    .claim_command(session, message_id, "new", true)
                    .await?;
                match claim.conversation {
                    Some(c) if !c.started => "This conversation is already fresh: nothing before this \
                                              message is shown to the agent."
                        .to_owned(),
                    _ => "Started a new conversation. The agent will not see the messages before this one \
                          (they stay in the history)."
                        .to_owned(),
                }
            }
            Command::Stop => {
                if caller.shared_chat && caller.level != AccessLevel::Admin {
                    return Ok(
                        "Only an admin can stop answers in a shared chat: they may be someone \
                               else's."
                            .to_owned(),
                    );
                }
                let claim = self
                    .engine
                    .claim_command(session, message_id, "stop", false)
                    .await?;
                if !claim.first {
                    return Ok("Stopped.".to_owned());
                }
                let report = self.engine.stop_session(session).await?;
                match (report.stopped, report.answering) {
                    (0, 0) => "Nothing to stop: no answer is being written in this chat.".to_owned(),
                    (0, _) => "Too late to stop: the answer is already on its way.".to_owned(),
                    (1, _) => "Stopped. No answer will come for that message.".to_owned(),
                    (n, _) => format!("Stopped {n} answers. None of them will come."),
                }
            }
            Command::Status => self.status(session, caller).await,
            Command::WhoAmI => whoami(caller),
            Command::Help => help(),
            Command::Pair(_) => "You already have access here; no pairing code is needed.".to_owned(),
        })
    }

    async fn status(&self, session: &SessionKey, caller: &Caller) -> String {
        let mut lines = Vec::new();
        let uptime = self
            .engine
            .serving_since_ms()
            .map(|since| format!(" for {}", duration_words(now_ms().saturating_sub(since) / 1000)))
            .unwrap_or_default();
        let agent = self
            .board
            .agent_record()
            .map_or_else(|| "not checked yet".to_owned(), |r| health_words(&r));
        lines.push(format!(
            "Herald is running{uptime}. Agent ({}): {agent}.",
            self.engine.agent_name()
        ));
        let conversation = self
            .engine
            .history_page(
                session,
                HistoryQuery {
                    limit: 1,
                    before: None,
                    max_bytes: 0,
                },
            )
            .await
            .map(|page| page.conversation)
            .unwrap_or(1);
        let open = self.engine.session_activity(session).open;
        let activity = match open {
            0 => "nothing being answered".to_owned(),
            1 => "1 answer being written (/stop stops it)".to_owned(),
            n => format!("{n} answers being written or waiting (/stop stops them)"),
        };
        lines.push(format!("This chat: conversation {conversation}, {activity}."));
        if caller.level == AccessLevel::Admin {
            let counts = self.engine.turns().counts();
            lines.push(format!(
                "Turns: {} running, {} waiting, {} slots.",
                counts.in_flight,
                counts.queued,
                self.engine.turns().limit()
            ));
            for adapter in self.board.adapters() {
                lines.push(format!("Adapter {}: {}.", adapter.name, health_words(&adapter)));
            }
            lines.push(format!(
                "Process {} (herald {}).",
                std::process::id(),
                herald_home::VERSION
            ));
        }
        lines.join("\n")
    }
}

fn whoami(caller: &Caller) -> String {
    let who = match (&caller.user, &caller.name) {
        (Some(id), Some(name)) => format!("{} {id} ({name})", caller.kind),
        (Some(id), None) => format!("{} {id}", caller.kind),
        (None, _) => caller.kind.to_owned(),
    };
    format!(
        "You are {who}. Access: {} ({}).",
        caller.level.as_str(),
        caller.why
    )
}

fn help() -> String {
    let mut text = String::from("Commands:\n");
    for (name, line) in COMMANDS {
        text.push_str(&format!("/{name} — {line}\n"));
    }
    text.push_str("Anything else goes to the agent.");
    text
}

/// `3 h 12 min`, `5 min`, `40 s`.
fn duration_words(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86_400 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} d {} h", secs / 86_400, secs % 86_400 / 3600),
    }
}

fn health_words(record: &HealthRecord) -> String {
    let state = match record.state {
        HealthState::Starting => "starting",
        HealthState::Connected => "connected",
        HealthState::Degraded => "degraded",
        HealthState::BadCredentials => "bad credentials",
        HealthState::Conflict => "conflict",
        HealthState::Misconfigured => "misconfigured",
        HealthState::Stopped => "stopped",
    };
    match &record.message {
        Some(message) if record.state != HealthState::Connected => format!("{state} ({message})"),
        _ => state.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_recognised_and_other_words_go_to_the_agent() {
        assert_eq!(parse("/new", None), Some(Command::New));
        assert_eq!(parse("  /RESET  ", None), Some(Command::New));
        assert_eq!(parse("/stop@herald_bot", Some("Herald_Bot")), Some(Command::Stop));
        assert_eq!(
            parse("/stop@other_bot", Some("herald_bot")),
            None,
            "another bot's"
        );
        assert_eq!(parse("/start", None), Some(Command::Help));
        assert_eq!(
            parse("/pair abcd-efgh ", None),
            Some(Command::Pair("abcd-efgh".into()))
        );
        assert_eq!(parse("/pair", None), Some(Command::Pair(String::new())));
        assert_eq!(parse("/imagine a cat", None), None, "the agent's own command");
        assert_eq!(parse("new", None), None);
        assert_eq!(parse("/", None), None);
        assert_eq!(parse("what does /new do?", None), None);
    }

    #[test]
    fn help_lists_every_command() {
        let text = help();
        for (name, _) in COMMANDS {
            assert!(text.contains(&format!("/{name} ")), "{name}");
        }
    }

    #[test]
    fn whoami_says_who_and_why() {
        let caller = Caller {
            kind: "Telegram user",
            user: Some("42".into()),
            name: Some("@ann".into()),
            level: AccessLevel::Admin,
            why: "listed in [telegram] allowed_users".into(),
            shared_chat: false,
        };
        assert_eq!(
            whoami(&caller),
            "You are Telegram user 42 (@ann). Access: admin (listed in [telegram] allowed_users)."
        );
    }
}
