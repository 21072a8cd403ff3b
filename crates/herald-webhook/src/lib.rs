//! Webhook callbacks: each reply to a webhook session is POSTed to its integration's `callback_url`,
//! signed the Standard Webhooks way (`herald_gateway::webhook::signature`), retried, and set aside when
//! it cannot be delivered (`herald deliveries`).
//!
//! The callback's body is `{"type": "message.reply", "session", "in_reply_to", "text", "status",
//! "turn_id"}` (`status` is `done`, or `failed` when the text is the gateway's notice of a failure), with
//! `files` (name, MIME type, size) when the agent sent some. Its `webhook-id` is `msg_herald_<turn id>`:
//! the same on every retry and after a restart, so the receiver can drop a repeat.
//!
//! **Invariant (at least once, at most one repeat):** a reply is marked delivered in the journal only
//! after its receiver answered 2xx; anything unmarked is sent again after a restart, with the same
//! `webhook-id`. A kill between the receiver's 2xx and the mark is the only way to send one twice.
//!
//! **Invariant (bounded):** a callback is retried — on connection errors, timeouts and every non-2xx
//! answer but `410 Gone`, waiting what `Retry-After` asks or an exponential backoff with jitter (1 s up
//! to 5 min) — only for the integration's `retry_for_secs` from when the reply was stored. Past it, or
//! at a `410`, the reply is set aside in the journal with the last error: listed by `herald deliveries
//! list --failed`, sent again by `herald deliveries retry`. Nothing retries forever, nothing is dropped
//! silently.
//!
//! Replies of integrations without a `callback_url` were answered in the response (`?wait=true`): they
//! are marked delivered at once.
//!
//! **Invariant (replicas):** every replica sharing a journal runs this sender (webhook messages come in
//! through the HTTP API, which every replica serves), and a reply is sent by the replica that owns its
//! turn — the one that ran it. What a replica loads at its start, and every third of the lease TTL after,
//! is only what nobody else is sending: the replies whose owner left the registry, each claimed by one
//! replica ([`Engine::claim_undelivered`]). So a replica starting never sends a reply a live one is
//! retrying, and a dead replica's unsent replies are sent once, by whoever claims them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_gateway::adapter::{BoxFuture, PushAdapter};
use herald_gateway::backoff::{Backoff, Jitter};
use herald_gateway::engine::{Engine, Outbox};
use herald_gateway::health::HealthHandle;
use herald_gateway::journal::Delivery;
use herald_gateway::webhook::{ADAPTER, Integration, Webhooks};
use herald_home::records::HealthState;
use herald_home::sync::MutexExt;
use herald_home::time::now_ms;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

/// The retry schedule of a callback that failed.
pub const RETRY: Backoff = Backoff {
    base: Duration::from_secs(1),
    max: Duration::from_secs(300),
    jitter: Jitter::Equal,
};

/// How long one callback may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Most callbacks in flight at once (each waits its own retries without holding others up).
pub const MAX_IN_FLIGHT: usize = 64;

/// Most undelivered replies loaded in one go (at start, and at each claim in a cluster).
const UNDELIVERED_BATCH: usize = 10_000;

/// Longest `Retry-After` honoured (a longer one is cut to this).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The callback sender.
#[derive(Debug)]
pub struct WebhookAdapter {
    webhooks: Arc<Webhooks>,
    client: reqwest::Client,
    run: Mutex<Option<Running>>,
}

#[derive(Debug)]
struct Running {
    engine: Arc<Engine>,
    health: HealthHandle,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl WebhookAdapter {
    pub fn new(webhooks: Webhooks) -> Result<WebhookAdapter, String> {
        let client = reqwest::Client::builder()
            .user_agent(format!("herald/{}", herald_home::VERSION))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the HTTP client for webhook callbacks: {e}"))?;
        Ok(WebhookAdapter {
            webhooks: Arc::new(webhooks),
            client,
            run: Mutex::new(None),
        })
    }

    fn spawn(&self, engine: &Arc<Engine>, health: &HealthHandle) -> Running {
        let (tx, rx) = mpsc::unbounded_channel();
        engine.register_outbox(ADAPTER, Arc::new(QueueOutbox { queue: tx }));
        let (stop, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            engine: engine.clone(),
            webhooks: self.webhooks.clone(),
            client: self.client.clone(),
            health: health.clone(),
            aside: Mutex::default(),
        });
        Running {
            engine: engine.clone(),
            health: health.clone(),
            stop,
            task: tokio::spawn(deliver_loop(shared, rx, stop_rx)),
        }
    }
}

#[derive(Debug)]
struct QueueOutbox {
    queue: mpsc::UnboundedSender<Delivery>,
}

impl Outbox for QueueOutbox {
    fn deliver(&self, delivery: Delivery) {
        // Gone only after close: the reply stays undelivered in the journal for the next start.
        let _ = self.queue.send(delivery);
    }
}

impl PushAdapter for WebhookAdapter {
    fn name(&self) -> &'static str {
        ADAPTER
    }

    fn attach(&self, engine: &Arc<Engine>, health: HealthHandle) {
        health.set(HealthState::Connected, None);
        let running = self.spawn(engine, &health);
        *self.run.lock_unpoisoned() = Some(running);
    }

    /// Nothing to open: messages come in through the HTTP adapter.
    fn open(&self) {}

    /// Webhook messages arrive through the HTTP API, which every replica serves.
    fn leased(&self) -> bool {
        false
    }

    fn restart(&self) -> BoxFuture<Result<(), String>> {
        let old = self.run.lock_unpoisoned().take();
        let Some(old) = old else {
            return Box::pin(async { Err("the webhook sender is not running".to_owned()) });
        };
        old.stop.send_replace(true);
        old.task.abort();
        let running = self.spawn(&old.engine, &old.health);
        *self.run.lock_unpoisoned() = Some(running);
        Box::pin(async { Ok(()) })
    }

    fn close(&self, grace: Duration) -> BoxFuture<()> {
        let running = self.run.lock_unpoisoned().take();
        Box::pin(async move {
            let Some(running) = running else { return };
            running.stop.send_replace(true);
            // A callback in flight may finish (and be marked); the rest stay in the journal.
            if tokio::time::timeout(grace, running.task).await.is_err() {
                tracing::warn!(
                    "webhook: callbacks still in flight at the stop; they are sent again next start"
                );
            }
            running.health.set(HealthState::Stopped, None);
        })
    }
}

/// What every callback task shares.
#[derive(Debug)]
struct Shared {
    engine: Arc<Engine>,
    webhooks: Arc<Webhooks>,
    client: reqwest::Client,
    health: HealthHandle,
    /// The replies set aside (loaded at start): while any is, the adapter shows `degraded` saying so,
    /// which `herald status` shows.
    aside: Mutex<std::collections::BTreeSet<i64>>,
}

/// Sends the replies an earlier run left undelivered, then every reply handed over, each in a task of
/// its own (at most [`MAX_IN_FLIGHT`] at once), until `stop`.
async fn deliver_loop(
    shared: Arc<Shared>,
    mut queue: mpsc::UnboundedReceiver<Delivery>,
    mut stop: watch::Receiver<bool>,
) {
    match shared.engine.failed_deliveries(UNDELIVERED_BATCH).await {
        Ok(failed) => {
            shared
                .aside
                .lock_unpoisoned()
                .extend(failed.iter().filter(|f| f.adapter == ADAPTER).map(|f| f.turn_id));
            shared.show_health(None);
        }
        Err(e) => tracing::warn!("webhook: cannot read the replies set aside: {e}"),
    }
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    let mut seen = std::collections::HashSet::new();
    let mut backlog = shared.claim_backlog().await.into_iter();
    // In a cluster: the replies of replicas that die from now on are claimed as they are found.
    let mut claims = shared.engine.cluster().map(|cluster| {
        let every = cluster.adopt_every();
        let mut claims = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        claims.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        claims
    });
    let mut claim_due = false;
    loop {
        if std::mem::take(&mut claim_due) {
            backlog = shared.claim_backlog().await.into_iter();
        }
        let delivery = match backlog.next() {
            Some(delivery) => delivery,
            None => tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => break,
                delivery = queue.recv() => match delivery {
                    Some(delivery) => delivery,
                    None => break,
                },
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Ok(turn) = done {
                        seen.remove(&turn);
                    }
                    continue;
                }
                _ = next_claim(&mut claims) => {
                    claim_due = true;
                    continue;
                }
            },
        };
        // The journal and the queue may both hand over the same reply (a retried one, at start).
        if !seen.insert(delivery.turn_id) {
            continue;
        }
        let slot = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            slot = slots.clone().acquire_owned() => slot,
        };
        let Ok(slot) = slot else { break };
        let (shared, stop) = (shared.clone(), stop.clone());
        tasks.spawn(async move {
            let turn = delivery.turn_id;
            shared.deliver(delivery, stop).await;
            drop(slot);
            turn
        });
        while let Some(done) = tasks.try_join_next() {
            if let Ok(turn) = done {
                seen.remove(&turn);
            }
        }
    }
    // A stop: callbacks in flight finish their attempt; those waiting to retry end and stay unmarked.
    while tasks.join_next().await.is_some() {}
}

/// The next tick of the claims, or never (a journal of one gateway: it loaded its backlog at start).
async fn next_claim(claims: &mut Option<tokio::time::Interval>) {
    match claims {
        Some(claims) => {
            claims.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// How one attempt went.
enum Attempt {
    Delivered,
    /// `410 Gone`: the receiver does not want it, ever.
    Refused(String),
    /// Worth another try, after the wait the receiver asked for (if it did).
    Failed(String, Option<Duration>),
}

impl Shared {
    /// The replies nobody else is sending (all that are unsent, without replicas), logged when any.
    async fn claim_backlog(&self) -> Vec<Delivery> {
        match self.engine.claim_undelivered(ADAPTER, UNDELIVERED_BATCH).await {
            Ok(backlog) => {
                if !backlog.is_empty() {
                    tracing::info!("webhook: sending {} reply(s) left undelivered", backlog.len());
                }
                backlog
            }
            Err(e) => {
                tracing::warn!("webhook: cannot read undelivered replies: {e}");
                Vec::new()
            }
        }
    }

    /// Delivers one reply: retries until a 2xx, a `410`, the end of the integration's retry window
    /// (then it is set aside), or `stop` (then it stays undelivered for the next start).
    async fn deliver(&self, delivery: Delivery, mut stop: watch::Receiver<bool>) {
        let Some((integration, session)) = self.webhooks.of_session(&delivery.session.chat_id) else {
            tracing::warn!(
                session = %delivery.session,
                "webhook: a reply for an integration no longer configured is set aside"
            );
            self.set_aside(&delivery, "its [[webhook]] is no longer configured")
                .await;
            return;
        };
        let Some(url) = &integration.callback_url else {
            // Answered in the response (an integration without callbacks).
            self.mark(delivery.turn_id).await;
            return;
        };
        let id = format!("msg_herald_{}", delivery.turn_id);
        let body = callback_body(&delivery, session);
        let give_up_at = delivery
            .at_ms
            .saturating_add(u64::try_from(integration.retry_for.as_millis()).unwrap_or(u64::MAX));
        let mut retries = RETRY.retries();
        loop {
            let error = match self.attempt(integration, url, &id, &body).await {
                Attempt::Delivered => {
                    self.health.outbound();
                    self.aside.lock_unpoisoned().remove(&delivery.turn_id);
                    self.show_health(None);
                    self.mark(delivery.turn_id).await;
                    return;
                }
                Attempt::Refused(why) => {
                    self.set_aside(&delivery, &why).await;
                    return;
                }
                Attempt::Failed(why, asked) => {
                    let wait = asked.unwrap_or_else(|| retries.next_delay());
                    if now_ms().saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX))
                        > give_up_at
                    {
                        let why = format!("{why} (retried for {} s)", integration.retry_for.as_secs());
                        self.set_aside(&delivery, &why).await;
                        return;
                    }
                    tracing::warn!(
                        webhook = %integration.name,
                        turn = delivery.turn_id,
                        "webhook: a callback failed ({why}); retrying in {:.1} s",
                        wait.as_secs_f64()
                    );
                    (why, wait)
                }
            };
            self.health
                .error(format!("callback to {}: {}", integration.name, error.0));
            self.show_health(Some(format!(
                "callbacks to {} are failing: {}",
                integration.name, error.0
            )));
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return,
                () = tokio::time::sleep(error.1) => {}
            }
        }
    }

    async fn attempt(&self, integration: &Integration, url: &str, id: &str, body: &str) -> Attempt {
        let timestamp = i64::try_from(now_ms() / 1000).unwrap_or(i64::MAX);
        let signature = integration.secret.sign(id, timestamp, body.as_bytes());
        let sent = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_owned())
            .timeout(ATTEMPT_TIMEOUT)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => return Attempt::Failed(transport_error(&e), None),
        };
        let status = response.status();
        if status.is_success() {
            return Attempt::Delivered;
        }
        if status == reqwest::StatusCode::GONE {
            return Attempt::Refused("the receiver answered 410 Gone".to_owned());
        }
        let asked = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|secs| Duration::from_secs(secs).min(MAX_RETRY_AFTER));
        Attempt::Failed(format!("the receiver answered {}", status.as_u16()), asked)
    }

    async fn mark(&self, turn_id: i64) {
        if let Err(e) = self.engine.mark_delivered(turn_id).await {
            tracing::warn!(
                turn = turn_id,
                "webhook: cannot record a delivered reply (it may be sent again): {e}"
            );
        }
    }

    async fn set_aside(&self, delivery: &Delivery, why: &str) {
        tracing::error!(
            session = %delivery.session,
            turn = delivery.turn_id,
            "webhook: a reply cannot be delivered and is set aside ({why}); `herald deliveries retry {}` sends it again",
            delivery.turn_id
        );
        self.health.error(format!("a reply set aside: {why}"));
        if let Err(e) = self.engine.fail_delivery(delivery.turn_id, why).await {
            tracing::warn!(turn = delivery.turn_id, "webhook: cannot set a reply aside: {e}");
        }
        self.aside.lock_unpoisoned().insert(delivery.turn_id);
        self.show_health(None);
    }

    /// `degraded` while callbacks fail (`failing`) or replies are set aside, else `connected`.
    fn show_health(&self, failing: Option<String>) {
        let aside = self.aside.lock_unpoisoned().len();
        let reason = match (failing, aside) {
            (Some(failing), _) => Some(failing),
            (None, 0) => None,
            (None, n) => Some(format!(
                "{n} reply(s) set aside as undeliverable: `herald deliveries list --failed`"
            )),
        };
        match reason {
            Some(reason) => self.health.set(HealthState::Degraded, Some(reason)),
            None => self.health.set(HealthState::Connected, None),
        }
    }
}

/// The JSON a callback carries.
fn callback_body(delivery: &Delivery, session: &str) -> String {
    let mut body = serde_json::json!({
        "type": "message.reply",
        "session": session,
        "in_reply_to": delivery.message_id,
        "text": delivery.reply.text,
        "status": if delivery.reply.failed { "failed" } else { "done" },
        "turn_id": delivery.turn_id,
    });
    if !delivery.reply.files.is_empty() {
        body["files"] = delivery
            .reply
            .files
            .iter()
            .map(|f| serde_json::json!({"name": f.name, "mime": f.mime, "size": f.size, "kind": f.kind}))
            .collect();
    }
    body.to_string()
}

/// A transport error, with its causes (reqwest's own text is often just "error sending request").
fn transport_error(error: &reqwest::Error) -> String {
    let what = if error.is_timeout() {
        "no answer in time"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "the connection failed"
    };
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(error);
    let mut detail = String::new();
    while let Some(e) = cause {
        detail = e.to_string();
        cause = e.source();
    }
    if detail.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_gateway::journal::{Reply, SessionKey};

    #[test]
    fn the_callback_names_the_session_the_question_and_the_files() {
        let delivery = Delivery {
            turn_id: 7,
            session: SessionKey::new(ADAPTER, "n8n:s1"),
            message_id: "msg_1".into(),
            reply: Reply::text("pong", false),
            draft: None,
            at_ms: 1,
        };
        let body: serde_json::Value = serde_json::from_str(&callback_body(&delivery, "s1")).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"type": "message.reply", "session": "s1", "in_reply_to": "msg_1",
                               "text": "pong", "status": "done", "turn_id": 7})
        );
    }
}
