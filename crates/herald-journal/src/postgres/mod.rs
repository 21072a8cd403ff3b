//! Herald's session journal in PostgreSQL (`[journal] url = "postgres://…"`): the same contract, the
//! same promises, for a database that several gateways share and the operators already back up.
//!
//! **Invariant:** the same semantics as the SQLite journal, kept by the same means: a write completes
//! only after its transaction committed; one writer per journal applies writes in the order they were
//! issued, a batch per commit, a savepoint per write; the one-turn-per-message-id and one-reply-per-turn
//! rules are constraints of the tables (`schema`). The contract suite (`tests/journal.rs`) runs against
//! both backends.
//!
//! **Invariant:** it never blocks its caller. The journal has one thread of its own, running a small
//! tokio runtime with the writer task, the reads (pipelined on one connection) and the connections'
//! tasks; every call queues its work and returns a [`Pending`]. Opening, too, happens on that thread, so
//! a journal can be opened from inside or outside async code alike.
//!
//! A lost connection is reconnected with a pause; a batch cut before its commit is written again (see
//! `writer`), reads are retried once on a new connection, and [`PgJournal::health`] says since when the
//! database has been unreachable.

mod connect;
mod membership;
mod schema;
mod writer;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use futures_util::TryStreamExt;
use herald_gateway::agent::{HistoryMessage, Role};
use herald_gateway::journal::{
    AdapterStore, CHECK_ADAPTER, Completion, Delivery, FailedDelivery, HistoryPage, HistoryQuery,
    HistoryStore, Journal, JournalError, JournalErrorKind, Pending, Reply, SessionKey, SessionSummary,
    StoredMessage, TurnState, TurnStore, UnfinishedTurn,
};
use herald_home::sync::MutexExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

pub use connect::{DEFAULT_LEASE_TTL, PgOptions, ReplicaOptions};
pub use schema::PG_SCHEMA_VERSION;

use crate::attachments_from;
use crate::writer::Write;
use connect::Connector;
use membership::Membership;

/// How long opening waits for the database (a container started before its database, say).
const OPEN_PATIENCE: Duration = Duration::from_secs(10);

/// The SQLSTATE `herald_accept` raises for a replica no longer registered.
const NOT_REGISTERED: &str = "HR001";

/// How long one read may take, reconnecting included.
const READ_PATIENCE: Duration = Duration::from_secs(15);

/// Why the PostgreSQL journal cannot be opened. Each message names the database (its URL, which never
/// holds a password) and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum PgOpenError {
    #[error("[journal] url {target:?}: {reason}")]
    Url { target: String, reason: String },
    #[error("the journal's database {target}: TLS: {reason}")]
    Tls { target: String, reason: String },
    #[error("cannot connect to the journal's database {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error(
        "the journal's database {target} has schema version {found}, newer than this herald understands \
         ({supported}); run the newer herald"
    )]
    NewerSchema {
        target: String,
        found: u32,
        supported: u32,
    },
    #[error(
        "the journal's database {target} holds tables that are not a Herald journal's; give herald a \
         database (or a schema, with ?options=-csearch_path%3Dherald) of its own"
    )]
    Foreign { target: String },
    #[error("cannot migrate the journal's database {target} from version {from}: {source}")]
    Migrate {
        target: String,
        from: u32,
        source: tokio_postgres::Error,
    },
    #[error("the journal's database {target}: {source}")]
    Query {
        target: String,
        source: tokio_postgres::Error,
    },
    #[error("cannot start the journal's thread: {0}")]
    Thread(std::io::Error),
}

/// What opening found and did, for the lifecycle log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PgOpenReport {
    /// The tables were made (the database had none of Herald's).
    pub created: bool,
    /// The schema was migrated from this version to [`PG_SCHEMA_VERSION`].
    pub migrated_from: Option<u32>,
}

/// Whether the database is reachable, as the journal last found it (every connection of the journal
/// reports to it: the writer's, the reads' and the lease renewals', so an idle gateway notices too).
#[derive(Debug, Clone)]
pub struct Health(Arc<HealthShared>);

#[derive(Debug)]
struct HealthShared {
    outages: Mutex<u64>,
    /// The outage now, if any, for whoever watches (the state record, `status`).
    outage: watch::Sender<Option<Outage>>,
}

impl Default for Health {
    fn default() -> Health {
        Health(Arc::new(HealthShared {
            outages: Mutex::new(0),
            outage: watch::Sender::new(None),
        }))
    }
}

/// Since when the database has been unreachable, and why.
pub type Outage = herald_home::records::JournalOutage;

impl Health {
    /// `None` while the database answers.
    pub fn outage(&self) -> Option<Outage> {
        self.0.outage.borrow().clone()
    }

    /// How many times the connection was lost since the journal opened.
    pub fn outages(&self) -> u64 {
        *self.0.outages.lock_unpoisoned()
    }

    /// The outage as it changes.
    pub fn watch(&self) -> watch::Receiver<Option<Outage>> {
        self.0.outage.subscribe()
    }

    fn lost(&self, error: &str) {
        let mut counted = self.0.outages.lock_unpoisoned();
        self.0.outage.send_modify(|outage| match outage {
            Some(outage) => outage.error = error.to_owned(),
            None => {
                tracing::warn!("journal: the database connection is lost ({error}); reconnecting");
                *counted += 1;
                *outage = Some(Outage {
                    since_ms: herald_home::time::now_ms(),
                    error: error.to_owned(),
                });
            }
        });
    }

    /// The first connection is made: what failed before it was not an outage of a running journal.
    fn opened(&self) {
        *self.0.outages.lock_unpoisoned() = 0;
        self.0.outage.send_replace(None);
    }

    fn ok(&self) {
        if self.0.outage.borrow().is_none() {
            return;
        }
        if self.0.outage.send_replace(None).is_some() {
            tracing::info!("journal: the database answers again");
        }
    }
}

/// A read, queued for the journal's thread.
type Read = Box<dyn FnOnce(Arc<Reader>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// The PostgreSQL journal. Dropping it waits for queued writes to commit (or fail).
#[derive(Debug)]
pub struct PgJournal {
    target: String,
    health: Health,
    writes: Mutex<Option<mpsc::UnboundedSender<Write>>>,
    reads: Mutex<Option<mpsc::UnboundedSender<Read>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// This gateway among the replicas sharing the database.
    membership: Arc<Membership>,
}

/// What the journal's thread sends back once it opened the database.
type Opened = Result<(PgOpenReport, Arc<Membership>), PgOpenError>;

impl PgJournal {
    /// Connects (waiting up to 10 s for the database), and creates or migrates the tables, or refuses a
    /// database that is not Herald's or is newer.
    pub fn open(options: &PgOptions) -> Result<(PgJournal, PgOpenReport), PgOpenError> {
        let connector = options.connector()?;
        let replica = options.replica().clone();
        let target = options.target().to_owned();
        let health = Health::default();
        let (write_tx, write_rx) = mpsc::unbounded_channel();
        let (read_tx, read_rx) = mpsc::unbounded_channel();
        let (opened_tx, opened_rx) = std_mpsc::channel();
        let thread_health = health.clone();
        let thread = std::thread::Builder::new()
            .name("herald-journal-pg".into())
            .spawn(move || serve(connector, replica, thread_health, write_rx, read_rx, opened_tx))
            .map_err(PgOpenError::Thread)?;
        let failure = match opened_rx.recv() {
            Ok(Ok((report, membership))) => {
                let journal = PgJournal {
                    target,
                    health,
                    writes: Mutex::new(Some(write_tx)),
                    reads: Mutex::new(Some(read_tx)),
                    thread: Mutex::new(Some(thread)),
                    membership,
                };
                return Ok((journal, report));
            }
            Ok(Err(e)) => e,
            Err(_) => PgOpenError::Connect {
                target,
                reason: "the journal's thread ended while opening".into(),
            },
        };
        // The thread ends on its own after a failed open.
        let _ = thread.join();
        Err(failure)
    }

    /// This replica's id in the registry of replicas sharing the database.
    pub fn replica_id(&self) -> i64 {
        self.membership.me
    }

    /// The database, as shown to people (its URL, without a password).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Whether the database answers.
    pub fn health(&self) -> &Health {
        &self.health
    }

    fn write<T>(&self, make: impl FnOnce(Completion<T>) -> Write) -> Pending<T> {
        let (done, pending) = Pending::channel();
        if let Some(queue) = self.writes.lock_unpoisoned().as_ref() {
            // Refused only once the writer is gone; the dropped write resolves its pending as closed.
            let _ = queue.send(make(done));
        }
        pending
    }

    /// Queues a read; it runs on the reader connection, reconnecting once if that was lost.
    fn read<T, F, Fut>(&self, f: F) -> Pending<T>
    where
        T: Send + 'static,
        F: Fn(Arc<Client>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, tokio_postgres::Error>> + Send + 'static,
    {
        let (done, pending) = Pending::channel();
        let read: Read = Box::new(move |reader: Arc<Reader>| {
            Box::pin(async move {
                let deadline = Instant::now() + READ_PATIENCE;
                let result = tokio::time::timeout_at(deadline, async {
                    let mut last = None;
                    for attempt in 0..2 {
                        let client = reader.client(deadline).await?;
                        match f(client.clone()).await {
                            Ok(value) => {
                                reader.health.ok();
                                return Ok(value);
                            }
                            // A connection found closed (the server restarted since it was last used)
                            // is an outage only if a new one fails too (connecting reports its own).
                            Err(e) if client.is_closed() => {
                                if attempt > 0 {
                                    reader.health.lost(&e.to_string());
                                }
                                last = Some(e);
                            }
                            Err(e) => return Err(pg_error(&e)),
                        }
                    }
                    Err(last.map_or_else(JournalError::closed, |e| pg_error(&e)))
                })
                .await
                .unwrap_or_else(|_| {
                    Err(JournalError::new(
                        JournalErrorKind::Storage,
                        "the journal's database did not answer a read in time",
                    ))
                });
                done.complete(result);
            })
        });
        if let Some(reads) = self.reads.lock_unpoisoned().as_ref() {
            let _ = reads.send(read);
        }
        pending
    }

    /// Refuses further work and hands back the thread, which ends once queued work is answered.
    fn shut(&self) -> Option<JoinHandle<()>> {
        drop(self.reads.lock_unpoisoned().take());
        drop(self.writes.lock_unpoisoned().take());
        self.thread.lock_unpoisoned().take()
    }
}

impl Drop for PgJournal {
    fn drop(&mut self) {
        if let Some(thread) = self.shut() {
            let _ = thread.join();
        }
    }
}

/// The journal's thread: opens, then serves writes and reads until both queues close, renewing this
/// replica's lease meanwhile; then hands its turns over and leaves the registry.
fn serve(
    connector: Connector,
    replica: connect::ReplicaOptions,
    health: Health,
    writes: mpsc::UnboundedReceiver<Write>,
    reads: mpsc::UnboundedReceiver<Read>,
    opened: std_mpsc::Sender<Opened>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = opened.send(Err(PgOpenError::Thread(e)));
            return;
        }
    };
    runtime.block_on(async move {
        let target = connector.target().to_owned();
        let mut client = match connector
            .connect_until(Instant::now() + OPEN_PATIENCE, &health)
            .await
        {
            Ok(client) => client,
            Err(e) => {
                let _ = opened.send(Err(PgOpenError::Connect { target, reason: e }));
                return;
            }
        };
        health.opened();
        let (membership, takes) = match join(&mut client, &target, &replica).await {
            Ok((report, membership, takes)) => {
                if opened.send(Ok((report, membership.clone()))).is_err() {
                    return;
                }
                (membership, takes)
            }
            Err(e) => {
                let _ = opened.send(Err(e));
                return;
            }
        };
        let reader = Arc::new(Reader {
            connector: connector.clone(),
            health: health.clone(),
            client: tokio::sync::Mutex::new(None),
        });
        let (closing_tx, closing) = tokio::sync::watch::channel(false);
        let renewal = tokio::spawn(membership::run(
            connector.clone(),
            health.clone(),
            membership.clone(),
            takes,
            closing,
        ));
        let writer = writer::Writer {
            connector,
            health,
            membership,
        };
        tokio::join!(writer.run(Some(client), writes), serve_reads(reader, reads));
        closing_tx.send_replace(true);
        let _ = renewal.await;
    });
}

/// Brings the schema up to date and registers this replica.
async fn join(
    client: &mut Client,
    target: &str,
    replica: &connect::ReplicaOptions,
) -> Result<
    (
        PgOpenReport,
        Arc<Membership>,
        tokio::sync::mpsc::UnboundedReceiver<membership::TakeLease>,
    ),
    PgOpenError,
> {
    let query = |source| PgOpenError::Query {
        target: target.to_owned(),
        source,
    };
    let migrated = schema::prepare(client, target, herald_home::time::now_ms()).await?;
    let registered_at = Instant::now();
    let me = membership::register(client, replica).await.map_err(query)?;
    let report = PgOpenReport {
        created: migrated == Some(0),
        migrated_from: migrated.filter(|v| *v > 0),
    };
    let (membership, takes) = Membership::new(me, replica.lease_ttl, registered_at);
    Ok((report, membership, takes))
}

async fn serve_reads(reader: Arc<Reader>, mut queue: mpsc::UnboundedReceiver<Read>) {
    let mut running = tokio::task::JoinSet::new();
    while let Some(read) = queue.recv().await {
        running.spawn(read(reader.clone()));
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
}

/// The connection reads share (tokio-postgres pipelines concurrent queries on it).
struct Reader {
    connector: Connector,
    health: Health,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
}

impl Reader {
    async fn client(&self, deadline: Instant) -> Result<Arc<Client>, JournalError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        let client = Arc::new(self.connector.connect_or_error(deadline, &self.health).await?);
        *slot = Some(client.clone());
        Ok(client)
    }
}

/// Connects once and reads what the database holds, changing nothing (`herald doctor`): a sentence
/// for a person, `Err` when the gateway could not use it.
pub fn probe(options: &PgOptions, budget: Duration) -> Result<String, String> {
    let target = options.target().to_owned();
    let tls = if options.requires_tls() { ", TLS" } else { "" };
    let found = once(options, budget, |c| async move { schema::inspect(&c).await })?;
    match found {
        schema::Found::Empty => Ok(format!(
            "{target}{tls}: reachable, no journal yet (the first start makes its tables)"
        )),
        schema::Found::Journal(v) if v > PG_SCHEMA_VERSION => Err(format!(
            "{target}: schema version {v} is newer than this herald understands ({PG_SCHEMA_VERSION})"
        )),
        schema::Found::Journal(v) => Ok(format!("{target}{tls}: reachable, journal schema version {v}")),
        schema::Found::Foreign => Err(format!("{target}: holds tables that are not a Herald journal's")),
    }
}

/// Connects once and reads the journal's schema version, changing nothing (`herald upgrade`): `None`
/// when the database has no tables yet, `Err` when it cannot be read or holds somebody else's tables.
pub fn schema_version(options: &PgOptions, budget: Duration) -> Result<Option<u32>, String> {
    let target = options.target().to_owned();
    match once(options, budget, |c| async move { schema::inspect(&c).await })? {
        schema::Found::Empty => Ok(None),
        schema::Found::Journal(v) => Ok(Some(v)),
        schema::Found::Foreign => Err(format!("{target}: holds tables that are not a Herald journal's")),
    }
}

/// Classifies a database error for the gateway (a full disk is worth telling apart).
pub(crate) fn pg_error(e: &tokio_postgres::Error) -> JournalError {
    let code = e.code();
    if code.is_some_and(|c| c.code() == NOT_REGISTERED) {
        return JournalError::new(
            JournalErrorKind::Fenced,
            "this replica was removed from the journal's registry (its lease ran out); nothing was stored",
        );
    }
    if code == Some(&SqlState::DISK_FULL) {
        return JournalError::new(
            JournalErrorKind::Full,
            format!("the database's disk is full; nothing was stored ({e})"),
        );
    }
    if code == Some(&SqlState::CHARACTER_NOT_IN_REPERTOIRE)
        || code == Some(&SqlState::UNTRANSLATABLE_CHARACTER)
    {
        return JournalError::new(
            JournalErrorKind::Unstorable,
            format!(
                "the journal's database cannot store this text ({}); nothing was stored",
                connect::describe(e)
            ),
        );
    }
    JournalError::new(
        JournalErrorKind::Storage,
        format!("journal error: {}", connect::describe(e)),
    )
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn role(text: &str) -> Role {
    if text == "assistant" {
        Role::Assistant
    } else {
        Role::User
    }
}

impl TurnStore for PgJournal {
    crate::writer::queued_turn_writes!();
    /// The turns this replica owns, after adopting those no live replica owns (of every adapter).
    fn unfinished(&self) -> Pending<Vec<UnfinishedTurn>> {
        self.adopt_for(None)
    }

    fn adopt(&self, adapters: &[String]) -> Pending<Vec<UnfinishedTurn>> {
        self.adopt_for(Some(adapters.to_vec()))
    }
}

impl PgJournal {
    fn adopt_for(&self, adapters: Option<Vec<String>>) -> Pending<Vec<UnfinishedTurn>> {
        let membership = self.membership.clone();
        self.read(move |c| {
            let (membership, adapters) = (membership.clone(), adapters.clone());
            async move {
                let me = membership.me;
                if membership.may_adopt() {
                    let taken: i64 = c
                        .query_one("SELECT herald_adopt($1, $2)", &[&me, &adapters])
                        .await?
                        .get(0);
                    if taken < 0 {
                        membership.mark_lost();
                    } else if taken > 0 {
                        tracing::info!("journal: adopted {taken} turns left by other replicas");
                    }
                }
                if membership.is_lost() {
                    return Ok(Vec::new());
                }
                owned_unfinished(&c, me).await
            }
        })
    }
}

/// The unfinished turns replica `me` owns, oldest first.
async fn owned_unfinished(c: &Client, me: i64) -> Result<Vec<UnfinishedTurn>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT t.id, s.adapter, s.chat_id, t.message_id, m.text, t.state, t.resume_count, t.number,
                    t.draft, t.attachments
             FROM turns t
             JOIN sessions s ON s.id = t.session_id
             JOIN messages m ON m.turn_id = t.id AND m.role = 'user'
             WHERE t.owner = $1 AND t.state IN ('pending', 'running', 'interrupted')
             ORDER BY t.id",
            &[&me],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| UnfinishedTurn {
            turn_id: r.get(0),
            number: r.get::<_, i64>(7).max(0) as u64,
            session: SessionKey::new(r.get::<_, String>(1), r.get::<_, String>(2)),
            message_id: r.get(3),
            text: r.get(4),
            state: TurnState::parse(r.get(5)).unwrap_or(TurnState::Pending),
            resume_count: r.get::<_, i32>(6).max(0) as u32,
            draft: r.get(8),
            attachments: attachments_from(r.get(9)),
        })
        .collect())
}

/// Replies of `adapter`'s sessions not marked delivered (nor set aside), oldest first, at most `n`;
/// only those of the turns `only` when given.
async fn query_undelivered(
    c: &Client,
    adapter: &str,
    n: i64,
    only: Option<&[i64]>,
) -> Result<Vec<Delivery>, tokio_postgres::Error> {
    let rows = c
        .query(
            &format!(
                "SELECT {DELIVERY_COLUMNS}
                 FROM sessions s
                 JOIN messages m ON m.session_id = s.id AND m.role = 'assistant' AND m.delivered_ms IS NULL
                                AND m.delivery_failed_ms IS NULL
                 JOIN turns t ON t.id = m.turn_id
                 WHERE s.adapter = $1 AND ($3::BIGINT[] IS NULL OR t.id = ANY ($3))
                 ORDER BY m.id LIMIT $2"
            ),
            &[&adapter, &n, &only],
        )
        .await?;
    Ok(rows.iter().map(delivery_of).collect())
}

/// What a query for a [`Delivery`] selects (`s` sessions, `t` turns, `m` the reply's message), in the
/// order [`delivery_of`] reads.
pub(super) const DELIVERY_COLUMNS: &str =
    "m.turn_id, s.adapter, s.chat_id, t.message_id, m.text, m.failed, t.draft, m.files, m.created_ms";

/// A row of [`DELIVERY_COLUMNS`].
pub(super) fn delivery_of(r: &tokio_postgres::Row) -> Delivery {
    Delivery {
        turn_id: r.get(0),
        session: SessionKey::new(r.get::<_, String>(1), r.get::<_, String>(2)),
        message_id: r.get(3),
        reply: Reply {
            text: r.get(4),
            failed: r.get(5),
            files: attachments_from(r.get(7)),
        },
        draft: r.get(6),
        at_ms: r.get::<_, i64>(8).max(0) as u64,
    }
}

impl HistoryStore for PgJournal {
    crate::writer::queued_history_writes!();
    fn history(&self, session: &SessionKey, limit: usize) -> Pending<Vec<StoredMessage>> {
        let query = HistoryQuery {
            limit,
            before: None,
            max_bytes: usize::MAX,
        };
        let session = session.clone();
        self.read(move |c| {
            let (session, query) = (session.clone(), query.clone());
            async move { read_page(&c, &session, &query).await.map(|page| page.messages) }
        })
    }

    fn history_page(&self, session: &SessionKey, query: HistoryQuery) -> Pending<HistoryPage> {
        let session = session.clone();
        self.read(move |c| {
            let (session, query) = (session.clone(), query.clone());
            async move { read_page(&c, &session, &query).await }
        })
    }

    fn context(&self, turn_id: i64, n: usize) -> Pending<Vec<HistoryMessage>> {
        let n = limit(n);
        self.read(move |c| async move {
            let rows = c
                .query(
                    "SELECT m.role, m.text
                     FROM turns me
                     JOIN turns t ON t.session_id = me.session_id AND t.conversation = me.conversation
                                     AND t.number < me.number
                     JOIN messages m ON m.turn_id = t.id
                     WHERE me.id = $1 AND NOT (m.role = 'assistant' AND m.failed)
                     ORDER BY t.number DESC, (m.role = 'user') ASC, m.id DESC
                     LIMIT $2",
                    &[&turn_id, &n],
                )
                .await?;
            let mut messages: Vec<HistoryMessage> = rows
                .iter()
                .map(|r| HistoryMessage {
                    role: role(r.get(0)),
                    text: r.get(1),
                })
                .collect();
            messages.reverse();
            Ok(messages)
        })
    }

    fn sessions(&self, n: usize) -> Pending<Vec<SessionSummary>> {
        let n = limit(n);
        self.read(move |c| async move {
            let rows = c
                .query(
                    "SELECT s.adapter, s.chat_id, s.created_ms, s.updated_ms,
                            (SELECT count(*) FROM messages m WHERE m.session_id = s.id), s.conversation
                     FROM sessions s WHERE s.adapter <> $2
                     ORDER BY s.updated_ms DESC, s.id DESC LIMIT $1",
                    &[&n, &CHECK_ADAPTER],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| SessionSummary {
                    session: SessionKey::new(r.get::<_, String>(0), r.get::<_, String>(1)),
                    created_ms: r.get::<_, i64>(2).max(0) as u64,
                    updated_ms: r.get::<_, i64>(3).max(0) as u64,
                    messages: r.get::<_, i64>(4).max(0) as u64,
                    conversation: r.get::<_, i64>(5).max(1) as u64,
                })
                .collect())
        })
    }
}

/// Replies set aside as undeliverable, oldest first, at most `n`.
async fn query_failed_deliveries(c: &Client, n: i64) -> Result<Vec<FailedDelivery>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT m.turn_id, s.adapter, s.chat_id, t.message_id, m.text, m.created_ms,
                    m.delivery_failed_ms, m.delivery_error
             FROM messages m
             JOIN sessions s ON s.id = m.session_id
             JOIN turns t ON t.id = m.turn_id
             WHERE m.role = 'assistant' AND m.delivery_failed_ms IS NOT NULL
             ORDER BY m.id LIMIT $1",
            &[&n],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| FailedDelivery {
            turn_id: r.get(0),
            adapter: r.get(1),
            chat_id: r.get(2),
            message_id: r.get(3),
            text: r.get(4),
            at_ms: r.get::<_, i64>(5).max(0) as u64,
            failed_ms: r.get::<_, i64>(6).max(0) as u64,
            error: r.get::<_, Option<String>>(7).unwrap_or_default(),
        })
        .collect())
}

/// What `herald deliveries list` shows (see [`crate::DeliveryReport`]), read over a connection of its
/// own: safe beside the gateway that writes the database, and changing nothing.
pub fn delivery_report(options: &PgOptions, n: usize) -> Result<crate::DeliveryReport, String> {
    let n = limit(n);
    once(options, READ_PATIENCE, |c| async move {
        let failed = query_failed_deliveries(&c, n).await?;
        let rows = c
            .query(
                "SELECT s.adapter, count(*) FROM messages m JOIN sessions s ON s.id = m.session_id
                 WHERE m.role = 'assistant' AND m.delivered_ms IS NULL AND m.delivery_failed_ms IS NULL
                   AND s.adapter IN ('telegram', 'webhook', 'matrix')
                 GROUP BY s.adapter ORDER BY s.adapter",
                &[],
            )
            .await?;
        let waiting = rows
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1).max(0) as u64))
            .collect();
        Ok(crate::DeliveryReport { failed, waiting })
    })
}

/// Runs `f` on one connection of its own, on a runtime of its own on a thread of its own (so it works
/// from async code too), within `budget`. The error is for a person.
fn once<T, F, Fut>(options: &PgOptions, budget: Duration, f: F) -> Result<T, String>
where
    T: Send,
    F: FnOnce(Client) -> Fut + Send,
    Fut: Future<Output = Result<T, tokio_postgres::Error>>,
{
    let connector = options.connector().map_err(|e| e.to_string())?;
    let target = options.target().to_owned();
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                runtime.block_on(async {
                    let work = async {
                        let client = connector
                            .connect()
                            .await
                            .map_err(|e| format!("{target}: {}", connect::describe(&e)))?;
                        f(client)
                            .await
                            .map_err(|e| format!("{target}: {}", connect::describe(&e)))
                    };
                    tokio::time::timeout(budget, work)
                        .await
                        .map_err(|_| format!("{target}: no answer within {} s", budget.as_secs()))?
                })
            })
            .join()
            .unwrap_or_else(|_| Err("the database check failed".into()))
    })
}

impl AdapterStore for PgJournal {
    crate::writer::queued_adapter_writes!();
    fn undelivered(&self, adapter: &str, n: usize) -> Pending<Vec<Delivery>> {
        let n = limit(n);
        let adapter = adapter.to_owned();
        self.read(move |c| {
            let adapter = adapter.clone();
            async move { query_undelivered(&c, &adapter, n, None).await }
        })
    }

    /// Claims first (`herald_claim_replies`), then reads what it took. Should the answer to the claim be
    /// lost with the connection, the replies it took stay this replica's, unsent, until it leaves the
    /// registry (its next stop) and another replica claims them: late, never twice.
    fn claim_undelivered(&self, adapter: &str, n: usize) -> Pending<Vec<Delivery>> {
        let n = limit(n);
        let adapter = adapter.to_owned();
        let membership = self.membership.clone();
        self.read(move |c| {
            let (adapter, membership) = (adapter.clone(), membership.clone());
            async move {
                if membership.is_lost() {
                    return Ok(Vec::new());
                }
                let taken: Vec<i64> = c
                    .query(
                        "SELECT herald_claim_replies($1, $2, $3)",
                        &[&membership.me, &adapter, &n],
                    )
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                if taken.is_empty() {
                    return Ok(Vec::new());
                }
                tracing::info!(
                    "journal: took {} {adapter} reply(s) left unsent by replicas that are gone",
                    taken.len()
                );
                query_undelivered(&c, &adapter, n, Some(&taken)).await
            }
        })
    }

    fn failed_deliveries(&self, n: usize) -> Pending<Vec<FailedDelivery>> {
        let n = limit(n);
        self.read(move |c| async move { query_failed_deliveries(&c, n).await })
    }

    fn adapter_offset(&self, adapter: &str) -> Pending<Option<i64>> {
        let adapter = adapter.to_owned();
        self.read(move |c| {
            let adapter = adapter.clone();
            async move {
                let row = c
                    .query_opt(
                        "SELECT next_update FROM adapter_offsets WHERE adapter = $1",
                        &[&adapter],
                    )
                    .await?;
                Ok(row.map(|r| r.get(0)))
            }
        })
    }

    fn adapter_cursor(&self, adapter: &str) -> Pending<Option<String>> {
        let adapter = adapter.to_owned();
        self.read(move |c| {
            let adapter = adapter.clone();
            async move {
                let row = c
                    .query_opt(
                        "SELECT cursor FROM adapter_cursors WHERE adapter = $1",
                        &[&adapter],
                    )
                    .await?;
                Ok(row.map(|r| r.get(0)))
            }
        })
    }
}

impl Journal for PgJournal {
    fn cluster(&self) -> Option<Arc<dyn herald_gateway::cluster::Cluster>> {
        Some(self.membership.clone())
    }

    fn outages(&self) -> Option<watch::Receiver<Option<Outage>>> {
        Some(self.health.watch())
    }

    /// Completes once queued work is answered and the connections are closed; the waiting happens on a
    /// thread of its own.
    fn close(&self) -> Pending<()> {
        let Some(thread) = self.shut() else {
            return Pending::ready(Ok(()));
        };
        let (done, pending) = Pending::channel();
        let spawned = std::thread::Builder::new()
            .name("herald-journal-close".into())
            .spawn(move || {
                let _ = thread.join();
                done.complete(Ok(()));
            });
        match spawned {
            Ok(_) => pending,
            Err(e) => Pending::ready(Err(JournalError::new(
                JournalErrorKind::Storage,
                format!("cannot close the journal: {e}"),
            ))),
        }
    }
}

/// Reads a session's messages newest first, streaming, until `limit`, the byte budget or the start of
/// the session; returns them oldest first. Rows past the budget are not kept.
async fn read_page(
    c: &Client,
    session: &SessionKey,
    query: &HistoryQuery,
) -> Result<HistoryPage, tokio_postgres::Error> {
    let conversation = c
        .query_opt(
            "SELECT conversation FROM sessions WHERE adapter = $1 AND chat_id = $2",
            &[&session.adapter, &session.chat_id],
        )
        .await?
        .map_or(1, |r| r.get::<_, i64>(0).max(1) as u64);
    let mut page = HistoryPage {
        conversation,
        ..HistoryPage::default()
    };
    let fetch = limit(query.limit).saturating_add(1);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
        [&session.adapter, &session.chat_id, &query.before, &fetch];
    let rows = c
        .query_raw(
            "SELECT m.id, m.turn_id, t.message_id, m.role, m.text, m.created_ms, m.failed,
                    CASE WHEN t.cancelled_ms IS NULL THEN t.state ELSE 'cancelled' END, t.number, t.conversation,
                    m.files
             FROM messages m
             JOIN turns t ON t.id = m.turn_id
             WHERE m.session_id = (SELECT id FROM sessions WHERE adapter = $1 AND chat_id = $2)
               AND ($3::BIGINT IS NULL OR m.id < $3)
             ORDER BY m.id DESC LIMIT $4",
            params,
        )
        .await?;
    let mut rows = std::pin::pin!(rows);
    let mut bytes = 0usize;
    let mut last_id = 0i64;
    while let Some(r) = rows.try_next().await? {
        let id: i64 = r.get(0);
        let text: String = r.get(4);
        let over_budget = !page.messages.is_empty() && bytes.saturating_add(text.len()) > query.max_bytes;
        if page.messages.len() == query.limit || over_budget {
            page.older = page.messages.last().map(|_| last_id);
            break;
        }
        bytes = bytes.saturating_add(text.len());
        let role = role(r.get(3));
        let failed: bool = r.get(6);
        let turn_state: &str = r.get(7);
        let status = match role {
            Role::Assistant if turn_state == "cancelled" => TurnState::Cancelled,
            Role::Assistant if failed => TurnState::Failed,
            Role::Assistant => TurnState::Done,
            Role::User => TurnState::parse(turn_state).unwrap_or(TurnState::Pending),
        };
        page.messages.push(StoredMessage {
            turn_id: r.get(1),
            turn: r.get::<_, i64>(8).max(0) as u64,
            conversation: r.get::<_, i64>(9).max(1) as u64,
            message_id: r.get(2),
            role,
            text,
            at_ms: r.get::<_, i64>(5).max(0) as u64,
            status,
            files: attachments_from(r.get(10)),
        });
        last_id = id;
    }
    page.messages.reverse();
    Ok(page)
}
