//! The sending half of the adapter: replies from the engine's outbox to `sendMessage` (and the files an
//! agent made to `sendPhoto`/`sendDocument`, after the text), paced to the Bot API's limits, concurrent
//! across chats.
//!
//! **Invariant (order):** the replies of one chat leave one at a time in the order they were handed
//! over — those an earlier run left undelivered first, then the outbox's — and the parts of one reply in
//! their order: a chat has at most one reply out ([`Lanes`]), and a reply waiting on a retry holds up its
//! own chat only. Replies waiting together leave in turn order: two turns of a chat whose replies commit
//! in one batch can be handed over a moment out of order, and the lane puts them back.
//!
//! **Invariant (rate):** every message part leaves at a slot booked from the adapter's one
//! [`crate::pace::Pacer`] (shared with drafts and courtesy messages),
//! which keeps the overall, per-chat and per-group limits of `[telegram]` and honours a 429's
//! `retry_after` (for the chat; for every chat when two chats are refused within a second).
//!
//! **Invariant (at least once):** a reply is marked delivered in the journal only after every part was
//! accepted (or the API refused it for good: a blocked bot, a chat that is gone — marked so it is not
//! retried forever); anything unmarked is sent again by the next run. Marks of concurrent replies are
//! separate writes that the journal's writer commits together (group commit), so pacing at 30 replies a
//! second costs a few fsyncs a second, not thirty.
//!
//! **Why concurrent:** one reply at a time waits a round trip per message, and against the Bot API's
//! limits a lone slow or refused chat would hold up every other chat. Up to [`MAX_IN_FLIGHT`] chats are
//! served at once; the pacer, not the number of tasks, sets the rate.
//!
//! **Stop:** a stop starts no new reply. A reply out finishes the part it is sending; one that has sent
//! nothing yet, or is waiting to retry, ends there and stays undelivered in the journal for the next
//! run. Waits for a slot between the parts of a reply are not cut by a stop, so a stop does not leave
//! half a reply behind unless the adapter's grace runs out.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use herald_gateway::agent::Attachment;
use herald_gateway::backoff::pause;
use herald_gateway::engine::Engine;
use herald_gateway::journal::Delivery;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::api::Upload;
use crate::draft::Drafts;
use crate::pace::Lanes;
use crate::{
    ADAPTER, ApiError, CREDENTIALS_RETRY, Client, MAX_RETRY_AFTER, REBUILD_AFTER, RETRY, Reporter, group,
    reply_to_of, split,
};

/// Most replies out at once (each to a different chat).
pub const MAX_IN_FLIGHT: usize = 32;
/// Most undelivered replies loaded at startup in one go.
const UNDELIVERED_BATCH: usize = 10_000;
/// Failed tries of one reply after which the adapter shows `degraded` (one blip is not news).
const SEND_DEGRADED_AFTER: u32 = 2;

/// What every reply task of one run shares.
struct Shared {
    engine: Arc<Engine>,
    client: Arc<Client>,
    reporter: Reporter,
    drafts: Arc<Drafts>,
    /// Network errors in a row, over all chats: the client is rebuilt after [`REBUILD_AFTER`].
    network_errors: AtomicU32,
}

/// Sends every reply handed to the outbox, and first those an earlier run left undelivered.
pub(crate) async fn deliver_loop(
    engine: Arc<Engine>,
    client: Arc<Client>,
    mut queue: mpsc::UnboundedReceiver<Delivery>,
    drafts: Arc<Drafts>,
    reporter: Reporter,
    mut stop: watch::Receiver<bool>,
) {
    let shared = Arc::new(Shared {
        engine,
        client,
        reporter,
        drafts,
        network_errors: AtomicU32::new(0),
    });
    let mut lanes = Lanes::default();
    // Turns handed over in this run (the journal and the queue may both hand over the same one).
    let mut seen = HashSet::new();
    match shared.engine.undelivered(ADAPTER, UNDELIVERED_BATCH).await {
        Ok(backlog) => {
            if !backlog.is_empty() {
                tracing::info!("telegram: sending {} reply(s) left undelivered", backlog.len());
            }
            for delivery in backlog {
                admit(&shared, &mut lanes, &mut seen, delivery).await;
            }
        }
        Err(e) => tracing::warn!("telegram: cannot read undelivered replies: {e}"),
    }
    let mut out: JoinSet<i64> = JoinSet::new();
    let mut open = true;
    loop {
        // A planned stop starts no new reply: what is waiting stays in the journal for the next run.
        while out.len() < MAX_IN_FLIGHT && !*stop.borrow() {
            let Some((chat, delivery)) = lanes.start_next() else {
                break;
            };
            let (shared, stop) = (shared.clone(), stop.clone());
            out.spawn(async move {
                shared.deliver(chat, delivery, stop).await;
                chat
            });
        }
        if !open && out.is_empty() {
            return;
        }
        let event = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => Event::Stop,
            Some(done) = out.join_next(), if !out.is_empty() => Event::Done(done),
            delivery = queue.recv(), if open => Event::Handed(delivery),
        };
        match event {
            Event::Stop => break,
            Event::Done(Ok(chat)) => lanes.done(chat),
            // A reply task that panicked fails the run: its supervisor starts a new one, which reads
            // what is still undelivered from the journal.
            Event::Done(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Event::Done(Err(_)) => {}
            Event::Handed(Some(delivery)) => {
                admit(&shared, &mut lanes, &mut seen, delivery).await;
                // Everything already handed over too, before anything starts: two replies of a chat
                // handed over a moment out of turn order are then put back in order by the lane.
                while let Ok(delivery) = queue.try_recv() {
                    admit(&shared, &mut lanes, &mut seen, delivery).await;
                }
            }
            Event::Handed(None) => open = false,
        }
    }
    // Stopping: each reply out ends at its next wait, or when its current part has been answered.
    while let Some(done) = out.join_next().await {
        if let Err(e) = done
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// What woke the dispatcher.
enum Event {
    Stop,
    Done(Result<i64, tokio::task::JoinError>),
    Handed(Option<Delivery>),
}

/// Queues a reply behind its chat's others, once per run; one whose chat is not a number cannot be sent
/// and is marked at once.
async fn admit(shared: &Shared, lanes: &mut Lanes<Delivery>, seen: &mut HashSet<i64>, delivery: Delivery) {
    if !seen.insert(delivery.turn_id) {
        return;
    }
    match group::chat_of(&delivery.session.chat_id) {
        Some(chat) => lanes.push(chat, delivery.turn_id, delivery),
        None => {
            tracing::warn!(session = %delivery.session, "telegram: not a chat id; the reply cannot be sent");
            mark(&shared.engine, delivery.turn_id).await;
        }
    }
}

impl Shared {
    /// Sends one reply (in parts if long), each part at its slot, retrying until it goes through, the
    /// API refuses it for good, or the adapter stops. Returns `false` when stopping; the reply then
    /// stays undelivered in the journal for the next run.
    async fn deliver(&self, chat: i64, delivery: Delivery, mut stop: watch::Receiver<bool>) -> bool {
        let reply_to = reply_to_of(&delivery.message_id);
        // A draft shown while the answer was written becomes its first part (edited), not a neighbour.
        let mut draft = match self.drafts.settle(delivery.turn_id).await {
            Some(settled) => {
                // The answer's edit is one more edit of the draft: not sooner than the pace allows.
                if let Some(at) = settled.not_before {
                    tokio::time::sleep_until(at).await;
                }
                Some(settled.message)
            }
            None => delivery.draft.as_deref().and_then(|d| d.parse::<i64>().ok()),
        };
        let texts = if delivery.reply.text.trim().is_empty() {
            Vec::new()
        } else {
            split::split_reply(&delivery.reply.text, split::MAX_MESSAGE_CHARS)
        };
        if texts.is_empty()
            && let Some(id) = draft.take()
        {
            // Files alone: a draft of text has nothing to become.
            if let Err(e) = self.client.api().delete_message(chat, id).await {
                tracing::debug!("telegram: cannot delete a draft: {e}");
            }
        }
        let pieces: Vec<Piece> = texts
            .iter()
            .map(|text| Piece::Text(text))
            .chain(delivery.reply.files.iter().map(Piece::File))
            .collect();
        let mut backoff = RETRY.retries();
        let mut credentials = CREDENTIALS_RETRY.retries();
        let mut failures = 0u32;
        let mut started = false;
        for (index, piece) in pieces.iter().enumerate() {
            let reply_to = if index == 0 { reply_to } else { None };
            // Agents write Markdown; failure explanations are plain.
            let mut markup = (!delivery.reply.failed).then_some("Markdown");
            // Pictures go as photos (shown inline) while Telegram takes them as such.
            let mut as_photo =
                matches!(piece, Piece::File(file) if file.kind == "photo" && file.size <= MAX_PHOTO_BYTES);
            loop {
                let slot = self.client.reserve(chat);
                if started {
                    tokio::time::sleep_until(slot).await;
                } else if !pause_until(slot, &mut stop).await {
                    return false;
                }
                let api = self.client.api();
                let sent = match (piece, index, draft) {
                    (Piece::Text(part), 0, Some(id)) => api.edit_message_text(chat, id, part, markup).await,
                    (Piece::Text(part), _, _) => api.send_message(chat, part, markup, reply_to).await,
                    (Piece::File(file), _, _) => {
                        let upload = Upload {
                            path: &file.path,
                            name: file.name.as_deref().unwrap_or("file"),
                            mime: &file.mime,
                            as_photo,
                        };
                        api.send_file(chat, &upload, reply_to).await
                    }
                };
                let (wait, error) = match sent {
                    Ok(()) => {
                        started = true;
                        self.network_errors.store(0, Ordering::Relaxed);
                        self.reporter.health.outbound();
                        self.reporter.send_failing(None);
                        break;
                    }
                    Err(e) if markup.is_some() && e.is_markup_error() => {
                        tracing::debug!("telegram: markup refused ({e}); sending as plain text");
                        markup = None;
                        continue;
                    }
                    Err(ApiError::Rejected { status, description }) if matches!(piece, Piece::File(_)) => {
                        if as_photo {
                            // Too large or too oddly shaped for a photo: the same file as a document.
                            tracing::debug!(
                                "telegram: a photo was refused ({status}: {description}); sending it as a document"
                            );
                            as_photo = false;
                            continue;
                        }
                        // One file the API will not take (or that is gone from the media store) does not
                        // hold up the rest of the reply.
                        tracing::warn!(
                            chat,
                            turn = delivery.turn_id,
                            "telegram: a file of a reply cannot be sent ({status}: {description})"
                        );
                        self.reporter
                            .health
                            .error(format!("a file the API refuses: {description}"));
                        break;
                    }
                    Err(ApiError::Rejected { status, description }) if index == 0 && draft.is_some() => {
                        // The draft cannot become the answer (deleted, too old to edit): replace it.
                        tracing::debug!(
                            "telegram: cannot edit a draft ({status}: {description}); sending anew"
                        );
                        if let Some(id) = draft.take()
                            && let Err(e) = api.delete_message(chat, id).await
                        {
                            tracing::debug!("telegram: cannot delete a draft: {e}");
                        }
                        continue;
                    }
                    Err(e @ ApiError::Unauthorized) => (credentials.next_delay(), e),
                    Err(e @ ApiError::RetryAfter(secs)) => {
                        let wait = Duration::from_secs(secs.max(1)).min(MAX_RETRY_AFTER);
                        let global = self.client.refused(chat, wait);
                        if global {
                            tracing::warn!(
                                "telegram: two chats refused within a second: holding every chat for {} s",
                                wait.as_secs()
                            );
                        }
                        (wait, e)
                    }
                    Err(e) if e.is_transient() => {
                        if matches!(e, ApiError::Network(_))
                            && self.network_errors.fetch_add(1, Ordering::Relaxed) + 1 >= REBUILD_AFTER
                        {
                            self.network_errors.store(0, Ordering::Relaxed);
                            self.client.rebuild();
                        }
                        (backoff.next_delay(), e)
                    }
                    Err(e) => {
                        // The chat is gone, the bot was blocked...: this reply can never be sent.
                        tracing::warn!(
                            chat,
                            turn = delivery.turn_id,
                            "telegram: giving up on a reply the API refuses: {e}"
                        );
                        self.reporter
                            .health
                            .error(format!("a reply the API refuses: {e}"));
                        return mark(&self.engine, delivery.turn_id).await;
                    }
                };
                failures += 1;
                tracing::warn!(
                    chat,
                    "telegram: cannot send a reply ({error}); retrying in {:.1} s",
                    wait.as_secs_f64()
                );
                self.reporter.health.error(format!("sending a reply: {error}"));
                if failures >= SEND_DEGRADED_AFTER || error == ApiError::Unauthorized {
                    self.reporter
                        .send_failing(Some(format!("cannot send replies: {error}")));
                }
                if !pause(wait, &mut stop).await {
                    return false;
                }
            }
        }
        mark(&self.engine, delivery.turn_id).await
    }
}

/// One message of a reply: a part of its text, or one of its files.
#[derive(Debug, Clone, Copy)]
enum Piece<'a> {
    Text(&'a str),
    File(&'a Attachment),
}

/// The largest picture sent as a photo (the Bot API's limit); larger ones go as documents.
const MAX_PHOTO_BYTES: u64 = 10 << 20;

/// Waits until `slot` unless `stop` turns true first. Returns `false` when stopped.
async fn pause_until(slot: Instant, stop: &mut watch::Receiver<bool>) -> bool {
    pause(slot.saturating_duration_since(Instant::now()), stop).await
}

async fn mark(engine: &Engine, turn_id: i64) -> bool {
    if let Err(e) = engine.mark_delivered(turn_id).await {
        tracing::warn!(
            turn = turn_id,
            "telegram: cannot record a delivered reply (it may be sent again): {e}"
        );
    }
    true
}
