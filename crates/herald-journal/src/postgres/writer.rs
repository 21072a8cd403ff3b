//! The PostgreSQL journal's one writer: a task that owns a connection and commits queued writes in
//! batches, the same [`Write`]s, in the same order and with the same savepoint per write as the SQLite
//! writer.
//!
//! **Invariant:** a write's completion is sent only after the transaction holding it has committed. A
//! batch whose connection is lost *before* its `COMMIT` was sent did not happen (the server rolls an
//! open transaction back), so it is run again on a new connection, as long as the database comes back
//! within [`WRITE_PATIENCE`]; a batch whose `COMMIT` itself got no answer may or may not be stored, and
//! is answered so (a client retries with the same message id, which is idempotent). Nobody is ever told
//! "stored" early, and no acknowledged message depends on a connection staying up.
//!
//! Concurrency between replicas is the database's: every write locks the rows it changes (the session
//! row first, so two replicas accepting the same message id wait for each other and the second finds
//! the first's turn), and a write chosen as a deadlock's victim is retried in its savepoint.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use herald_gateway::journal::{
    Accepted, CommandClaim, Conversation, Delivery, JournalError, JournalErrorKind, Reply, SessionKey,
    TurnState,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Statement, Transaction};

use super::connect::Connector;
use std::sync::Arc;

use super::membership::Membership;
use super::{DELIVERY_COLUMNS, Health, attachments_from, delivery_of, pg_error};
use crate::writer::{Write, fail_all};

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 1024;

/// How long a batch waits for an unreachable database before its writes fail (each caller then
/// answers as it does for any storage failure: the HTTP API with 503, a chat adapter by retrying).
pub(super) const WRITE_PATIENCE: Duration = Duration::from_secs(15);

/// How many times a write chosen as a deadlock or serialization victim is run again.
const VICTIM_RETRIES: u32 = 5;

/// What a write produced.
enum Value {
    Accepted(Accepted),
    Conversation(Conversation),
    Closed(bool),
    Claim(CommandClaim),
    Retried(Option<Delivery>),
    /// A reply refused: the turn is another replica's now.
    Fenced,
    Unit,
}

/// Why a batch did not commit.
enum BatchError {
    /// The connection failed before `COMMIT` was sent: nothing of the batch is stored.
    Lost(String),
    /// `COMMIT` failed or got no answer.
    Commit(tokio_postgres::Error),
    /// No answer before the batch's deadline: whether it committed is unknown.
    Stalled,
}

/// The writer of one replica.
pub(super) struct Writer {
    pub(super) connector: Connector,
    pub(super) health: Health,
    /// This replica: the owner of the turns it stores (the only one whose replies it may store), and
    /// the fences of the push adapters it runs (what their cursor commits and delivery marks name).
    pub(super) membership: Arc<Membership>,
}

impl Writer {
    /// Runs until the queue closes (the journal was closed or dropped) and every queued write is answered;
    /// then hands this replica's unfinished turns over and leaves the registry.
    pub(super) async fn run(self, client: Option<Client>, mut queue: mpsc::UnboundedReceiver<Write>) {
        let Writer {
            connector,
            health,
            membership,
        } = self;
        let me = membership.me;
        let mut conn = match client {
            Some(client) => Conn::new(client, membership.clone()).await.ok(),
            None => None,
        };
        while let Some(first) = queue.recv().await {
            let mut batch = Vec::with_capacity(16);
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(write) => batch.push(write),
                    Err(_) => break,
                }
            }
            let deadline = Instant::now() + WRITE_PATIENCE;
            // Set once the batch met a closed connection: a second one is an outage.
            let mut lost_before = false;
            loop {
                let live = match conn.as_mut() {
                    Some(live) if !live.client.is_closed() => live,
                    _ => match reconnect(&connector, &health, deadline, &membership).await {
                        Ok(fresh) => conn.insert(fresh),
                        Err(error) => {
                            conn = None;
                            fail_all(batch, &error);
                            break;
                        }
                    },
                };
                // A database that stops answering (a stopped server, a cut network) is not waited for
                // forever: past the deadline the batch is answered as uncertain and the connection dropped.
                let outcome = match tokio::time::timeout_at(deadline, commit_batch(live, &batch)).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(BatchError::Stalled),
                };
                match outcome {
                    Ok(results) => {
                        health.ok();
                        for (write, result) in batch.into_iter().zip(results) {
                            complete(write, result);
                        }
                        break;
                    }
                    Err(BatchError::Lost(e)) => {
                        // A connection found closed (a server restarted since the last write) is not an
                        // outage if a new one works: reconnecting reports a database that is gone.
                        if std::mem::replace(&mut lost_before, true) {
                            health.lost(&e);
                        }
                        conn = None;
                        if Instant::now() >= deadline {
                            let error = JournalError::new(
                                JournalErrorKind::Storage,
                                format!("the journal's database is unreachable ({e}); nothing was stored"),
                            );
                            fail_all(batch, &error);
                            break;
                        }
                        tracing::warn!(
                            "journal: the database connection was lost ({e}); writing the batch again"
                        );
                    }
                    Err(BatchError::Stalled) => {
                        health.lost("the database stopped answering");
                        conn = None;
                        let error = JournalError::new(
                            JournalErrorKind::Storage,
                            "the journal's database stopped answering; the write may or may not be stored",
                        );
                        fail_all(batch, &error);
                        break;
                    }
                    Err(BatchError::Commit(e)) => {
                        if live.client.is_closed() {
                            health.lost(&e.to_string());
                            conn = None;
                        }
                        fail_all(batch, &uncertain_commit(&e));
                        break;
                    }
                }
            }
        }
        // Handed over at once, not when the lease runs out: another replica adopts the turns a drain cut
        // (or that never got a slot) right away, and the adapters' locks are free for the next gateway.
        let client = match conn.filter(|c| !c.client.is_closed()) {
            Some(conn) => Some(conn.client),
            None => connector
                .connect_or_error(Instant::now() + LEAVE_PATIENCE, &health)
                .await
                .ok(),
        };
        if let Some(client) = client {
            let left =
                tokio::time::timeout(LEAVE_PATIENCE, client.execute("SELECT herald_leave($1)", &[&me])).await;
            if !matches!(left, Ok(Ok(_))) {
                tracing::warn!(
                    "journal: could not hand this replica's turns over; they wait for its lease to run out"
                );
            }
        }
    }
}

/// How long a stopping replica tries to hand its turns over.
const LEAVE_PATIENCE: Duration = Duration::from_secs(3);

/// A new connection for the writer, its statements prepared.
async fn reconnect(
    connector: &Connector,
    health: &Health,
    deadline: Instant,
    membership: &Arc<Membership>,
) -> Result<Conn, JournalError> {
    let client = connector
        .connect_or_error(deadline, health)
        .await
        .map_err(|e| JournalError::new(e.kind, format!("{}; nothing was stored", e.message)))?;
    Conn::new(client, membership.clone())
        .await
        .map_err(|e| pg_error(&e))
}

/// The writer's connection, with the statements of the one-statement writes prepared on it.
struct Conn {
    client: Client,
    statements: Statements,
    membership: Arc<Membership>,
}

impl Conn {
    async fn new(client: Client, membership: Arc<Membership>) -> Result<Conn, tokio_postgres::Error> {
        let statements = Statements::prepare(&client).await?;
        Ok(Conn {
            client,
            statements,
            membership,
        })
    }
}

/// Who writes: this replica's id and the fences of the leases it holds (read once per batch; a replica
/// never gets a new fence for a lease it holds, so the batch's writes were all made under these).
struct Writing {
    me: i64,
    names: Vec<String>,
    fences: Vec<i64>,
}

impl Conn {
    fn writing(&self) -> Writing {
        let (names, fences) = self.membership.fences();
        Writing {
            me: self.membership.me,
            names,
            fences,
        }
    }
}

/// What one-statement writes run (a write of several statements, rare, runs them as text).
struct Statements {
    accept: Statement,
    start: Statement,
    finish: Statement,
    mark_interrupted: Statement,
    note_resumed: Statement,
    mark_delivered: Statement,
    set_draft: Statement,
    fail_delivery: Statement,
    set_offset: Statement,
    set_cursor: Statement,
}

impl Statements {
    async fn prepare(client: &Client) -> Result<Statements, tokio_postgres::Error> {
        // Sent together: one round trip's wait, not ten.
        let (accept, start, finish, mark_interrupted, note_resumed) = tokio::try_join!(
            client.prepare("SELECT * FROM herald_accept($1, $2, $3, $4, $5, $6, $7)"),
            client.prepare(
                "UPDATE turns SET state = 'running', updated_ms = $2
                 WHERE id = $1 AND state IN ('pending', 'interrupted')"
            ),
            client.prepare("SELECT herald_finish($1, $2, $3, $4, $5, $6)"),
            client.prepare(
                "UPDATE turns SET state = 'interrupted', updated_ms = $2
                 WHERE id = ANY($1) AND state IN ('pending', 'running')"
            ),
            client.prepare(
                "UPDATE turns SET state = 'pending', updated_ms = $2,
                     resume_count = resume_count + CASE WHEN state IN ('running', 'interrupted') THEN 1 ELSE 0 END
                 WHERE id = ANY($1) AND state IN ('pending', 'running', 'interrupted')"
            ),
        )?;
        let (mark_delivered, set_draft, fail_delivery, set_offset, set_cursor) = tokio::try_join!(
            // The adapters' writes name the fences they were made under (`herald_fenced`).
            client.prepare("SELECT herald_delivered($1, $2, NULL, $3, $4, $5)"),
            client.prepare("UPDATE turns SET draft = $2 WHERE id = $1"),
            client.prepare("SELECT herald_delivered($1, $2, $3, $4, $5, $6)"),
            client.prepare("SELECT herald_set_offset($1, $2, $3, $4, $5, $6)"),
            client.prepare("SELECT herald_set_cursor($1, $2, $3, $4, $5, $6)"),
        )?;
        Ok(Statements {
            accept,
            start,
            finish,
            mark_interrupted,
            note_resumed,
            mark_delivered,
            set_draft,
            fail_delivery,
            set_offset,
            set_cursor,
        })
    }
}

/// A write in flight.
type Applying<'a> = Pin<Box<dyn Future<Output = Result<Value, tokio_postgres::Error>> + Send + 'a>>;

/// Runs a batch in one transaction. First all at once: runs of one-statement writes are pipelined (sent
/// together, answered in order — the order they were issued in). Should any write fail, that
/// transaction is rolled back and the batch run again a write at a time, each in a savepoint of its
/// own, so one failing write does not fail the others.
async fn commit_batch(
    conn: &mut Conn,
    batch: &[Write],
) -> Result<Vec<Result<Value, JournalError>>, BatchError> {
    match pipelined(conn, batch).await? {
        Some(values) => Ok(values.into_iter().map(Ok).collect()),
        None => one_by_one(conn, batch).await,
    }
}

/// The batch with its writes pipelined; `None` when one failed (the transaction was rolled back).
async fn pipelined(conn: &mut Conn, batch: &[Write]) -> Result<Option<Vec<Value>>, BatchError> {
    let me = &conn.writing();
    let Conn {
        client, statements, ..
    } = conn;
    let tx = client
        .transaction()
        .await
        .map_err(|e| BatchError::Lost(e.to_string()))?;
    let mut values = Vec::with_capacity(batch.len());
    let mut next = 0;
    let mut failure = None;
    while next < batch.len() && failure.is_none() {
        let mut group: Vec<Applying<'_>> = Vec::new();
        while let Some(applying) = batch
            .get(next)
            .and_then(|w| one_statement(&tx, statements, w, me))
        {
            group.push(applying);
            next += 1;
        }
        let results = if group.is_empty() {
            next += 1;
            vec![several_statements(&tx, &batch[next - 1]).await]
        } else {
            futures_util::future::join_all(group).await
        };
        for result in results {
            match result {
                Ok(value) => values.push(value),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
    }
    if let Some(e) = failure {
        if tx.client().is_closed() || e.is_closed() {
            return Err(BatchError::Lost(e.to_string()));
        }
        let _ = tx.rollback().await;
        return Ok(None);
    }
    if tx.client().is_closed() {
        // Closed before the COMMIT was sent: the server has rolled the transaction back.
        return Err(BatchError::Lost("the connection closed".into()));
    }
    tx.commit().await.map_err(BatchError::Commit)?;
    Ok(Some(values))
}

/// The batch a write at a time, each in a savepoint of its own.
async fn one_by_one(
    conn: &mut Conn,
    batch: &[Write],
) -> Result<Vec<Result<Value, JournalError>>, BatchError> {
    let me = &conn.writing();
    let Conn {
        client, statements, ..
    } = conn;
    let mut tx = client
        .transaction()
        .await
        .map_err(|e| BatchError::Lost(e.to_string()))?;
    let mut results = Vec::with_capacity(batch.len());
    for write in batch {
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            let result = match tx.savepoint("herald_write").await {
                Err(e) => Err(e),
                Ok(sp) => {
                    let applied = match one_statement(&sp, statements, write, me) {
                        Some(applying) => applying.await,
                        None => several_statements(&sp, write).await,
                    };
                    match applied {
                        Ok(value) => sp.commit().await.map(|()| value),
                        Err(e) => {
                            let _ = sp.rollback().await;
                            Err(e)
                        }
                    }
                }
            };
            match result {
                Err(e) if is_victim(&e) && attempt <= VICTIM_RETRIES => continue,
                other => break other,
            }
        };
        match result {
            Ok(value) => results.push(Ok(value)),
            Err(e) if tx.client().is_closed() || e.is_closed() => {
                return Err(BatchError::Lost(e.to_string()));
            }
            Err(e) => {
                if matches!(write, Write::Start { .. }) {
                    // Usually nobody awaits this write: say so here, or nobody would know.
                    tracing::warn!("cannot mark a turn running: {e}");
                }
                results.push(Err(pg_error(&e)));
            }
        }
    }
    if tx.client().is_closed() {
        return Err(BatchError::Lost("the connection closed".into()));
    }
    tx.commit().await.map_err(BatchError::Commit)?;
    Ok(results)
}

/// A deadlock's victim or a serialization failure: running the write again may succeed.
fn is_victim(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(code) if *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE
    )
}

/// See the SQLite writer's `uncertain_commit`: the same reasoning holds for a `COMMIT` that got no answer.
fn uncertain_commit(e: &tokio_postgres::Error) -> JournalError {
    JournalError::new(
        JournalErrorKind::Storage,
        format!("the journal could not confirm the commit ({e}); it may or may not be stored"),
    )
}

/// One prepared statement run with these parameters, as a write whose value is nothing.
macro_rules! execute {
    ($tx:expr, $statement:expr, $($param:expr),+ $(,)?) => {
        Box::pin(async move {
            $tx.execute($statement, &[$(&$param),+]).await?;
            Ok(Value::Unit)
        })
    };
}

/// One prepared fenced statement (a function answering whether it was allowed), as a write whose value
/// is nothing, or [`Value::Fenced`] when the fence refused it.
macro_rules! fenced {
    ($tx:expr, $statement:expr, $($param:expr),+ $(,)?) => {
        Box::pin(async move {
            let allowed: bool = $tx.query_one($statement, &[$(&$param),+]).await?.get(0);
            Ok(if allowed { Value::Unit } else { Value::Fenced })
        })
    };
}

/// A write that is one statement, started (`None` for the others): what may be pipelined.
fn one_statement<'a>(
    tx: &'a Transaction<'_>,
    st: &'a Statements,
    write: &'a Write,
    who: &'a Writing,
) -> Option<Applying<'a>> {
    let me = who.me;
    Some(match write {
        Write::Accept(inbound, _) => Box::pin(async move {
            let row = tx
                .query_one(
                    &st.accept,
                    &[
                        &inbound.session.adapter,
                        &inbound.session.chat_id,
                        &inbound.message_id,
                        &inbound.text,
                        &ms(inbound.at_ms),
                        &attachments_json(&inbound.attachments),
                        &me,
                    ],
                )
                .await?;
            let reply: Option<String> = row.get(5);
            Ok(Value::Accepted(Accepted {
                turn_id: row.get(0),
                number: row.get::<_, i64>(1).max(0) as u64,
                new: row.get(2),
                state: TurnState::parse(row.get(3)).unwrap_or(TurnState::Failed),
                text: row.get::<_, Option<String>>(4).unwrap_or_default(),
                reply: reply.map(|text| Reply {
                    text,
                    failed: row.get::<_, Option<bool>>(6).unwrap_or(false),
                    files: attachments_from(row.get(7)),
                }),
            }))
        }),
        Write::Start { turn_id, at_ms, .. } => execute!(tx, &st.start, turn_id, ms(*at_ms)),
        Write::Finish {
            turn_id,
            reply,
            at_ms,
            ..
        } => Box::pin(async move {
            let outcome: String = tx
                .query_one(
                    &st.finish,
                    &[
                        turn_id,
                        &reply.text,
                        &reply.failed,
                        &ms(*at_ms),
                        &attachments_json(&reply.files),
                        &me,
                    ],
                )
                .await?
                .get(0);
            Ok(if outcome == "fenced" {
                Value::Fenced
            } else {
                Value::Unit
            })
        }),
        Write::MarkInterrupted { turn_ids, at_ms, .. } => {
            execute!(tx, &st.mark_interrupted, turn_ids, ms(*at_ms))
        }
        Write::NoteResumed { turn_ids, at_ms, .. } => execute!(tx, &st.note_resumed, turn_ids, ms(*at_ms)),
        Write::MarkDelivered { turn_id, at_ms, .. } => fenced!(
            tx,
            &st.mark_delivered,
            turn_id,
            ms(*at_ms),
            who.me,
            who.names,
            who.fences
        ),
        Write::SetDraft { turn_id, draft, .. } => execute!(tx, &st.set_draft, turn_id, draft),
        Write::FailDelivery {
            turn_id,
            error,
            at_ms,
            ..
        } => fenced!(
            tx,
            &st.fail_delivery,
            turn_id,
            ms(*at_ms),
            error,
            who.me,
            who.names,
            who.fences
        ),
        Write::SetOffset {
            adapter,
            offset,
            at_ms,
            ..
        } => fenced!(
            tx,
            &st.set_offset,
            adapter,
            offset,
            ms(*at_ms),
            who.me,
            who.names,
            who.fences
        ),
        Write::SetCursor {
            adapter,
            cursor,
            at_ms,
            ..
        } => fenced!(
            tx,
            &st.set_cursor,
            adapter,
            cursor,
            ms(*at_ms),
            who.me,
            who.names,
            who.fences
        ),
        Write::RetryDelivery { .. }
        | Write::Reset { .. }
        | Write::Cancel { .. }
        | Write::ClaimCommand { .. } => {
            return None;
        }
    })
}

/// A write of several statements, run in order.
async fn several_statements(tx: &Transaction<'_>, write: &Write) -> Result<Value, tokio_postgres::Error> {
    Ok(match write {
        Write::RetryDelivery { turn_id, .. } => Value::Retried(retry_delivery(tx, *turn_id).await?),
        Write::Reset { session, at_ms, .. } => Value::Conversation(reset(tx, session, *at_ms).await?),
        Write::Cancel {
            turn_id,
            notice,
            at_ms,
            ..
        } => Value::Closed(cancel(tx, *turn_id, notice, *at_ms).await?),
        Write::ClaimCommand {
            session,
            message_id,
            command,
            reset: reset_too,
            at_ms,
            ..
        } => Value::Claim(claim_command(tx, session, message_id, command, *reset_too, *at_ms).await?),
        _ => unreachable!("a one-statement write is run by one_statement"),
    })
}

/// Hands each write its result (a value of the wrong kind cannot happen: `apply` makes each write's own).
fn complete(write: Write, result: Result<Value, JournalError>) {
    fn wrong() -> JournalError {
        JournalError::new(
            JournalErrorKind::Storage,
            "internal error: a journal write got another write's result",
        )
    }
    match write {
        Write::Accept(_, done) => done.complete(result.and_then(|v| match v {
            Value::Accepted(a) => Ok(a),
            _ => Err(wrong()),
        })),
        Write::Reset { done, .. } => done.complete(result.and_then(|v| match v {
            Value::Conversation(c) => Ok(c),
            _ => Err(wrong()),
        })),
        Write::Cancel { done, .. } => done.complete(result.and_then(|v| match v {
            Value::Closed(b) => Ok(b),
            _ => Err(wrong()),
        })),
        Write::ClaimCommand { done, .. } => done.complete(result.and_then(|v| match v {
            Value::Claim(c) => Ok(c),
            _ => Err(wrong()),
        })),
        Write::RetryDelivery { done, .. } => done.complete(result.and_then(|v| match v {
            Value::Retried(d) => Ok(d),
            _ => Err(wrong()),
        })),
        Write::Finish { done, .. } => done.complete(result.and_then(|v| match v {
            Value::Fenced => Err(JournalError::new(
                JournalErrorKind::Fenced,
                "another replica owns this turn now (this one lost its lease); the reply was not stored",
            )),
            _ => Ok(()),
        })),
        Write::MarkDelivered { done, .. }
        | Write::FailDelivery { done, .. }
        | Write::SetOffset { done, .. }
        | Write::SetCursor { done, .. } => done.complete(result.and_then(|v| match v {
            Value::Fenced => Err(JournalError::new(
                JournalErrorKind::Fenced,
                "another replica runs this adapter now (this one lost its lease); nothing was stored",
            )),
            _ => Ok(()),
        })),
        Write::Start { done, .. }
        | Write::MarkInterrupted { done, .. }
        | Write::NoteResumed { done, .. }
        | Write::SetDraft { done, .. } => done.complete(result.map(|_| ())),
    }
}

fn ms(at_ms: u64) -> i64 {
    i64::try_from(at_ms).unwrap_or(i64::MAX)
}

/// A turn's attachments (or a reply's files) as stored: `NULL` for none, else a JSON array.
fn attachments_json(attachments: &[herald_gateway::agent::Attachment]) -> Option<String> {
    if attachments.is_empty() {
        return None;
    }
    serde_json::to_string(attachments).ok()
}

async fn upsert_session(
    tx: &Transaction<'_>,
    session: &SessionKey,
    at_ms: u64,
) -> Result<(i64, i64), tokio_postgres::Error> {
    let row = tx
        .query_one(
            "INSERT INTO sessions (adapter, chat_id, created_ms, updated_ms) VALUES ($1, $2, $3, $3)
             ON CONFLICT (adapter, chat_id) DO UPDATE SET updated_ms = GREATEST(sessions.updated_ms, excluded.updated_ms)
             RETURNING id, conversation",
            &[&session.adapter, &session.chat_id, &ms(at_ms)],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

async fn reset(
    tx: &Transaction<'_>,
    session: &SessionKey,
    at_ms: u64,
) -> Result<Conversation, tokio_postgres::Error> {
    let current = tx
        .query_opt(
            "SELECT id, conversation FROM sessions WHERE adapter = $1 AND chat_id = $2 FOR UPDATE",
            &[&session.adapter, &session.chat_id],
        )
        .await?;
    let Some(current) = current else {
        return Ok(Conversation {
            number: 1,
            started: false,
        });
    };
    let (session_id, conversation): (i64, i64) = (current.get(0), current.get(1));
    let used: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM turns WHERE session_id = $1 AND conversation = $2)",
            &[&session_id, &conversation],
        )
        .await?
        .get(0);
    if !used {
        return Ok(Conversation {
            number: conversation.max(1) as u64,
            started: false,
        });
    }
    let next: i64 = tx
        .query_one(
            "UPDATE sessions SET conversation = conversation + 1, updated_ms = GREATEST(updated_ms, $2)
             WHERE id = $1 RETURNING conversation",
            &[&session_id, &ms(at_ms)],
        )
        .await?
        .get(0);
    Ok(Conversation {
        number: next.max(1) as u64,
        started: true,
    })
}

async fn claim_command(
    tx: &Transaction<'_>,
    session: &SessionKey,
    message_id: &str,
    command: &str,
    reset_too: bool,
    at_ms: u64,
) -> Result<CommandClaim, tokio_postgres::Error> {
    let (session_id, _) = upsert_session(tx, session, at_ms).await?;
    let inserted = tx
        .execute(
            "INSERT INTO commands (session_id, message_id, command, created_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
            &[&session_id, &message_id, &command, &ms(at_ms)],
        )
        .await?;
    let first = inserted == 1;
    let conversation = if first && reset_too {
        Some(reset(tx, session, at_ms).await?)
    } else {
        None
    };
    Ok(CommandClaim { first, conversation })
}

async fn cancel(
    tx: &Transaction<'_>,
    turn_id: i64,
    notice: &str,
    at_ms: u64,
) -> Result<bool, tokio_postgres::Error> {
    let changed = tx
        .execute(
            "UPDATE turns SET state = 'failed', cancelled_ms = $2, updated_ms = $2
             WHERE id = $1 AND state IN ('pending', 'running', 'interrupted')",
            &[&turn_id, &ms(at_ms)],
        )
        .await?;
    if changed == 0 {
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO messages (session_id, turn_id, role, text, failed, created_ms, delivered_ms)
         SELECT session_id, id, 'assistant', $2, TRUE, $3, $3 FROM turns WHERE id = $1",
        &[&turn_id, &notice, &ms(at_ms)],
    )
    .await?;
    Ok(true)
}

async fn retry_delivery(
    tx: &Transaction<'_>,
    turn_id: i64,
) -> Result<Option<Delivery>, tokio_postgres::Error> {
    let changed = tx
        .execute(
            "UPDATE messages SET delivery_failed_ms = NULL, delivery_error = NULL
             WHERE turn_id = $1 AND role = 'assistant' AND delivery_failed_ms IS NOT NULL",
            &[&turn_id],
        )
        .await?;
    if changed == 0 {
        return Ok(None);
    }
    let row = tx
        .query_opt(
            &format!(
                "SELECT {DELIVERY_COLUMNS}
                 FROM messages m
                 JOIN sessions s ON s.id = m.session_id
                 JOIN turns t ON t.id = m.turn_id
                 WHERE m.turn_id = $1 AND m.role = 'assistant'"
            ),
            &[&turn_id],
        )
        .await?;
    Ok(row.as_ref().map(delivery_of))
}
