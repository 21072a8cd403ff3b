//! Drafts: a streamed answer shown in its chat as one message that grows, edited in place, and then
//! becomes the answer.
//!
//! **Invariant:** one message per answer. The draft's message id is committed to the journal
//! (`AdapterStore::set_draft`) as soon as Telegram gave it, and the final delivery *edits* that message
//! into the answer rather than sending another ([`Drafts::settle`] stops the draft first and hands over its
//! id; after a restart the journal's copy does). A turn resumed after a kill edits the same draft. Only a
//! kill in the instant between Telegram creating the draft and the commit of its id can leave a partial
//! draft beside the answer — the same window as any delivery's (see the crate docs).
//!
//! **Invariant:** a draft is edited at most once per [`EDIT_EVERY`] and never when its text did not
//! change, and each edit books its slot from the adapter's pacer like any message — but only a slot
//! that comes soon: behind a queue of replies an edit is skipped, not queued (the next one shows the
//! text so far). A 429 makes it wait as long as Telegram says, and holds the chat for the replies too.
//! A draft is only for show: when editing fails, the answer still comes, whole, through the outbox.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use herald_gateway::engine::{Drafting, Engine};
use herald_home::sync::MutexExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::api::ApiError;
use crate::{Client, group, split};

/// The least time between two edits of a draft: Telegram allows about one message a second per chat.
pub const EDIT_EVERY: Duration = Duration::from_secs(1);

/// How long settling waits for a draft's call in flight before giving up on it.
const SETTLE_WAIT: Duration = Duration::from_secs(15);

/// Longest wait a 429 may impose on a draft (past it, the draft just stops growing).
const MAX_DRAFT_WAIT: Duration = Duration::from_secs(30);

/// The drafts being shown, by turn.
#[derive(Debug, Default)]
pub(crate) struct Drafts {
    running: Mutex<HashMap<i64, Running>>,
}

#[derive(Debug)]
struct Running {
    chat: i64,
    stop: watch::Sender<bool>,
    /// The draft's message id once it exists (for the typing indicator and a quick settle).
    shown: Arc<Mutex<Option<i64>>>,
    /// When it was last sent or edited: the answer's own edit waits [`EDIT_EVERY`] after it.
    touched: Arc<Mutex<Option<Instant>>>,
    task: JoinHandle<Option<i64>>,
}

/// A settled draft: the message the answer goes to, and the earliest the answer may edit it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settled {
    pub message: i64,
    pub not_before: Option<Instant>,
}

impl Drafts {
    /// Starts showing a turn's answer as it grows.
    pub(crate) fn start(&self, client: Arc<Client>, engine: Weak<Engine>, drafting: Drafting) {
        let Some(chat) = group::chat_of(&drafting.session.chat_id) else {
            return;
        };
        let reply_to = crate::reply_to_of(&drafting.message_id);
        let earlier = drafting.earlier.as_deref().and_then(|d| d.parse::<i64>().ok());
        let (stop, stopped) = watch::channel(false);
        let shown = Arc::new(Mutex::new(earlier));
        let touched = Arc::new(Mutex::new(None));
        let task = tokio::spawn(show(Show {
            touched: touched.clone(),
            client,
            engine,
            chat,
            reply_to,
            turn_id: drafting.turn_id,
            text: drafting.text,
            shown: shown.clone(),
            stop: stopped,
        }));
        let old = self.running.lock_unpoisoned().insert(
            drafting.turn_id,
            Running {
                chat,
                stop,
                shown,
                touched,
                task,
            },
        );
        if let Some(old) = old {
            // The same turn again (a resume in this process): the new run takes over.
            old.stop.send_replace(true);
        }
    }

    /// Stops turn `turn_id`'s draft and returns its message, if it has one: the answer goes there.
    pub(crate) async fn settle(&self, turn_id: i64) -> Option<Settled> {
        let running = self.running.lock_unpoisoned().remove(&turn_id)?;
        running.stop.send_replace(true);
        let (shown, touched) = (running.shown.clone(), running.touched.clone());
        let message = match tokio::time::timeout(SETTLE_WAIT, running.task).await {
            Ok(Ok(id)) => id,
            // A call that hangs or a task that panicked: what it had shown is still known.
            _ => *shown.lock_unpoisoned(),
        }?;
        let not_before = touched.lock_unpoisoned().map(|at| at + EDIT_EVERY);
        Some(Settled { message, not_before })
    }

    /// Whether a draft is visible in `chat` (then "typing…" is not needed: the text grows).
    pub(crate) fn visible_in(&self, chat: i64) -> bool {
        self.running
            .lock_unpoisoned()
            .values()
            .any(|r| r.chat == chat && r.shown.lock_unpoisoned().is_some())
    }

    /// Stops every draft (the adapter is stopping); the answers stay in the journal.
    pub(crate) fn stop_all(&self) {
        for (_, running) in self.running.lock_unpoisoned().drain() {
            running.stop.send_replace(true);
            running.task.abort();
        }
    }
}

/// One draft's showing.
struct Show {
    client: Arc<Client>,
    engine: Weak<Engine>,
    chat: i64,
    reply_to: Option<i64>,
    turn_id: i64,
    text: watch::Receiver<String>,
    shown: Arc<Mutex<Option<i64>>>,
    touched: Arc<Mutex<Option<Instant>>>,
    stop: watch::Receiver<bool>,
}

/// What of `text` a draft shows: its first message's worth (the rest comes with the answer).
pub(crate) fn view(text: &str) -> String {
    split::split_reply(text, split::MAX_MESSAGE_CHARS)
        .into_iter()
        .next()
        .unwrap_or_default()
}

async fn show(mut show: Show) -> Option<i64> {
    let mut last = String::new();
    loop {
        let ended = tokio::select! {
            biased;
            _ = show.stop.wait_for(|s| *s) => break,
            changed = show.text.changed() => changed.is_err(),
        };
        if ended {
            // The agent is done: the answer arrives through the outbox, which settles this draft.
            let _ = show.stop.wait_for(|s| *s).await;
            break;
        }
        let text = view(&show.text.borrow_and_update());
        if text.trim().is_empty() || text == last {
            continue;
        }
        let Some(slot) = show.client.reserve_within(show.chat, EDIT_EVERY) else {
            // Replies are queued for this chat (or it is held): this edit can wait for the next change.
            tokio::select! {
                biased;
                _ = show.stop.wait_for(|s| *s) => break,
                () = tokio::time::sleep(EDIT_EVERY) => {}
            }
            continue;
        };
        tokio::select! {
            biased;
            _ = show.stop.wait_for(|s| *s) => break,
            () = tokio::time::sleep_until(slot) => {}
        }
        let api = show.client.api();
        let message = *show.shown.lock_unpoisoned();
        let result = match message {
            None => match api.send_message_id(show.chat, &text, None, show.reply_to).await {
                Ok(id) => {
                    *show.shown.lock_unpoisoned() = Some(id);
                    if let Some(engine) = show.engine.upgrade()
                        && let Err(e) = engine.set_draft(show.turn_id, &id.to_string()).await
                    {
                        tracing::warn!(turn = show.turn_id, "telegram: cannot record a draft: {e}");
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            },
            Some(id) => api.edit_message_text(show.chat, id, &text, None).await,
        };
        *show.touched.lock_unpoisoned() = Some(Instant::now());
        let pause = match result {
            Ok(()) => {
                last = text;
                EDIT_EVERY
            }
            Err(ApiError::RetryAfter(secs)) => {
                let wait = Duration::from_secs(secs.max(1)).min(MAX_DRAFT_WAIT);
                show.client.refused(show.chat, wait);
                wait
            }
            Err(e) => {
                tracing::debug!(turn = show.turn_id, "telegram: a draft was not updated: {e}");
                EDIT_EVERY
            }
        };
        tokio::select! {
            biased;
            _ = show.stop.wait_for(|s| *s) => break,
            () = tokio::time::sleep(pause) => {}
        }
    }
    *show.shown.lock_unpoisoned()
}
