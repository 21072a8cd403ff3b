//! Herald's session journal: in SQLite (`state.db` in the home, the embedded default), or in PostgreSQL
//! (`postgres`, with the crate's `postgres` feature); [`JournalLocation`] picks one from the config.
//! What follows holds for the SQLite journal; the PostgreSQL one keeps the same contract its own way.
//!
//! **Invariant:** this crate is the only code that touches `state.db`, and it never blocks its caller.
//! One thread writes (see [`writer`]); one thread reads, over a read-only connection, serving history,
//! listings and cursors in the order they were asked. Every call of the journal traits queues its work
//! for one of the two and returns a [`Pending`] that thread resolves, so a slow disk slows turns down but
//! never stalls the gateway's event loop, and no thread is made or borrowed per call.
//!
//! **Architecture Invariant:** this crate builds C (SQLite, bundled) and is therefore a leaf that only
//! the `herald` binary depends on; `herald-gateway` knows the journal only as the
//! [`herald_gateway::journal::Journal`] traits, which keeps it pure Rust and checkable for every OS.

mod location;
#[cfg(feature = "postgres")]
pub mod postgres;
mod schema;
pub mod snapshot;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, mpsc};
use std::thread::JoinHandle;

use herald_gateway::agent::{HistoryMessage, Role};
use herald_gateway::journal::{
    AdapterStore, CHECK_ADAPTER, Delivery, FailedDelivery, HistoryPage, HistoryQuery, HistoryStore, Journal,
    JournalError, Pending, Reply, SessionKey, SessionSummary, StoredMessage, TurnState, TurnStore,
    UnfinishedTurn,
};
use herald_home::sync::MutexExt;
use rusqlite::{Connection, OptionalExtension, params};

pub use location::{JournalLocation, JournalOpenError, JournalOpenReport};
#[cfg(feature = "postgres")]
pub use postgres::{PG_SCHEMA_VERSION, PgJournal, PgOpenError, PgOpenReport, PgOptions};
pub use schema::{APPLICATION_ID, OpenError, OpenReport, SCHEMA_VERSION};
use writer::{Write, storage_error};

/// A read, queued for the reader thread. Dropped unrun (the journal closed), its [`Pending`] resolves
/// to [`JournalError::closed`].
type Read = Box<dyn FnOnce(&Connection) + Send>;

/// The SQLite journal. Dropping it waits for queued writes to commit.
#[derive(Debug)]
pub struct SqliteJournal {
    path: PathBuf,
    queue: Mutex<Option<mpsc::Sender<Write>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    reads: Mutex<Option<mpsc::Sender<Read>>>,
    reader: Mutex<Option<JoinHandle<()>>>,
}

impl SqliteJournal {
    /// Opens the journal at `path`, creating it (mode 0600) if needed. See [`schema`] for what happens
    /// to corrupt, old, newer and foreign files.
    pub fn open(path: &Path) -> Result<(SqliteJournal, OpenReport), OpenError> {
        let (conn, report) = schema::open_writer(path, herald_home::time::now_ms())?;
        let reader_conn = schema::open_reader(path)?;
        let spawn_error = |e| OpenError::Create {
            path: path.to_path_buf(),
            source: e,
        };
        let (read_tx, read_rx) = mpsc::channel::<Read>();
        let reader = std::thread::Builder::new()
            .name("herald-journal-read".into())
            .spawn(move || {
                for read in read_rx {
                    read(&reader_conn);
                }
            })
            .map_err(spawn_error)?;
        let (tx, rx) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("herald-journal".into())
            .spawn(move || writer::run(conn, rx))
            .map_err(spawn_error)?;
        Ok((
            SqliteJournal {
                path: path.to_path_buf(),
                queue: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(writer)),
                reads: Mutex::new(Some(read_tx)),
                reader: Mutex::new(Some(reader)),
            },
            report,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Refuses further work and hands back what must be waited for: the reader (which finishes the reads
    /// queued so far and closes its connection), then the writer (which commits the writes queued so far
    /// and closes its connection — the last one to close, so it checkpoints the WAL into the main file).
    fn shut(&self) -> Shutdown {
        drop(self.reads.lock_unpoisoned().take());
        Shutdown {
            reader: self.reader.lock_unpoisoned().take(),
            queue: self.queue.lock_unpoisoned().take(),
            writer: self.writer.lock_unpoisoned().take(),
        }
    }

    fn send(&self, write: Write) -> Result<(), Write> {
        match self.queue.lock_unpoisoned().as_ref() {
            Some(queue) => queue.send(write).map_err(|e| e.0),
            None => Err(write),
        }
    }

    /// Queues a write that reports back through a completion; resolved as closed if nothing takes it.
    fn write<T>(&self, make: impl FnOnce(herald_gateway::journal::Completion<T>) -> Write) -> Pending<T> {
        let (done, pending) = Pending::channel();
        // A write the writer never takes is dropped with its completion: the pending resolves as closed.
        let _ = self.send(make(done));
        pending
    }

    /// Queues a read for the reader thread.
    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Pending<T> {
        let (done, pending) = Pending::channel();
        let read: Read = Box::new(move |conn| done.complete(f(conn).map_err(|e| storage_error(&e))));
        if let Some(reads) = self.reads.lock_unpoisoned().as_ref() {
            // Refused only once the reader is gone; the dropped read resolves its pending as closed.
            let _ = reads.send(read);
        }
        pending
    }
}

/// What closing waits for, in order (see [`SqliteJournal::shut`]).
struct Shutdown {
    reader: Option<JoinHandle<()>>,
    queue: Option<mpsc::Sender<Write>>,
    writer: Option<JoinHandle<()>>,
}

impl Shutdown {
    fn wait(self) {
        if let Some(reader) = self.reader {
            let _ = reader.join();
        }
        drop(self.queue);
        if let Some(writer) = self.writer {
            let _ = writer.join();
        }
    }
}

impl Drop for SqliteJournal {
    fn drop(&mut self) {
        self.shut().wait();
    }
}

impl TurnStore for SqliteJournal {
    crate::writer::queued_turn_writes!();
    fn unfinished(&self) -> Pending<Vec<UnfinishedTurn>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT t.id, s.adapter, s.chat_id, t.message_id, m.text, t.state, t.resume_count, t.number,
                        t.draft, t.attachments
                 FROM turns t
                 JOIN sessions s ON s.id = t.session_id
                 JOIN messages m ON m.turn_id = t.id AND m.role = 'user'
                 WHERE t.state IN ('pending', 'running', 'interrupted')
                 ORDER BY t.id",
            )?;
            let rows = stmt.query_map([], |r| {
                let state: String = r.get(5)?;
                Ok(UnfinishedTurn {
                    turn_id: r.get(0)?,
                    number: r.get::<_, i64>(7)?.max(0) as u64,
                    session: SessionKey::new(r.get::<_, String>(1)?, r.get::<_, String>(2)?),
                    message_id: r.get(3)?,
                    text: r.get(4)?,
                    state: TurnState::parse(&state).unwrap_or(TurnState::Pending),
                    resume_count: r.get(6)?,
                    draft: r.get(8)?,
                    attachments: attachments_from(r.get(9)?),
                })
            })?;
            rows.collect()
        })
    }
}

impl HistoryStore for SqliteJournal {
    crate::writer::queued_history_writes!();
    fn history(&self, session: &SessionKey, limit: usize) -> Pending<Vec<StoredMessage>> {
        let query = HistoryQuery {
            limit,
            before: None,
            max_bytes: usize::MAX,
        };
        let session = session.clone();
        self.read(move |conn| read_page(conn, &session, &query).map(|page| page.messages))
    }

    fn history_page(&self, session: &SessionKey, query: HistoryQuery) -> Pending<HistoryPage> {
        let session = session.clone();
        self.read(move |conn| read_page(conn, &session, &query))
    }

    fn context(&self, turn_id: i64, limit: usize) -> Pending<Vec<HistoryMessage>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            // The turns before this one in its session's conversation, newest first (by the index
            // `turns_by_conversation`), their messages question first; failure notices left out.
            let mut stmt = conn.prepare_cached(
                "SELECT m.role, m.text
                 FROM turns me
                 JOIN turns t ON t.session_id = me.session_id AND t.conversation = me.conversation
                                 AND t.number < me.number
                 JOIN messages m ON m.turn_id = t.id
                 WHERE me.id = ?1 AND NOT (m.role = 'assistant' AND m.failed)
                 ORDER BY t.number DESC, m.role = 'user' ASC, m.id DESC
                 LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![turn_id, limit], |r| {
                let role: String = r.get(0)?;
                Ok(HistoryMessage {
                    role: if role == "assistant" {
                        Role::Assistant
                    } else {
                        Role::User
                    },
                    text: r.get(1)?,
                })
            })?;
            let mut messages = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            messages.reverse();
            Ok(messages)
        })
    }

    fn sessions(&self, limit: usize) -> Pending<Vec<SessionSummary>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT s.adapter, s.chat_id, s.created_ms, s.updated_ms,
                        (SELECT count(*) FROM messages m WHERE m.session_id = s.id), s.conversation
                 FROM sessions s WHERE s.adapter != ?2
                 ORDER BY s.updated_ms DESC, s.id DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map(params![limit, CHECK_ADAPTER], |r| {
                Ok(SessionSummary {
                    session: SessionKey::new(r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                    created_ms: r.get::<_, i64>(2)?.max(0) as u64,
                    updated_ms: r.get::<_, i64>(3)?.max(0) as u64,
                    messages: r.get::<_, i64>(4)?.max(0) as u64,
                    conversation: r.get::<_, i64>(5)?.max(1) as u64,
                })
            })?;
            rows.collect()
        })
    }
}

/// Replies set aside as undeliverable, oldest first, at most `limit`.
fn query_failed_deliveries(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<FailedDelivery>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(
        "SELECT m.turn_id, s.adapter, s.chat_id, t.message_id, m.text, m.created_ms,
                m.delivery_failed_ms, m.delivery_error
         FROM messages m
         JOIN sessions s ON s.id = m.session_id
         JOIN turns t ON t.id = m.turn_id
         WHERE m.role = 'assistant' AND m.delivery_failed_ms IS NOT NULL
         ORDER BY m.id LIMIT ?1",
    )?;
    let rows = stmt.query_map(params![limit], |r| {
        Ok(FailedDelivery {
            turn_id: r.get(0)?,
            adapter: r.get(1)?,
            chat_id: r.get(2)?,
            message_id: r.get(3)?,
            text: r.get(4)?,
            at_ms: r.get::<_, i64>(5)?.max(0) as u64,
            failed_ms: r.get::<_, i64>(6)?.max(0) as u64,
            error: r.get::<_, Option<String>>(7)?.unwrap_or_default(),
        })
    })?;
    rows.collect()
}

/// What `herald deliveries list` shows, read without opening the journal for writing (safe while a
/// gateway runs on it): the replies set aside, and per push adapter how many wait to be delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    pub failed: Vec<FailedDelivery>,
    /// `(adapter, replies not yet delivered)`, for the adapters that push replies.
    pub waiting: Vec<(String, u64)>,
}

/// Reads [`DeliveryReport`] from the journal at `path`; a journal that does not exist has nothing.
pub fn delivery_report(path: &Path, limit: usize) -> Result<DeliveryReport, OpenError> {
    if !path.exists() {
        return Ok(DeliveryReport::default());
    }
    let read_error = |source: rusqlite::Error| OpenError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(read_error)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(read_error)?;
    let failed = query_failed_deliveries(&conn, limit).map_err(read_error)?;
    let mut stmt = conn
        .prepare(
            "SELECT s.adapter, count(*) FROM messages m JOIN sessions s ON s.id = m.session_id
             WHERE m.role = 'assistant' AND m.delivered_ms IS NULL AND m.delivery_failed_ms IS NULL
               AND s.adapter IN ('telegram', 'webhook')
             GROUP BY s.adapter ORDER BY s.adapter",
        )
        .map_err(read_error)?;
    let waiting = stmt
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
        })
        .and_then(Iterator::collect)
        .map_err(read_error)?;
    Ok(DeliveryReport { failed, waiting })
}

/// Stored attachments (JSON, `NULL` for none). A value that does not read is taken as none: the text
/// of the turn matters more than a file list that cannot be understood.
fn attachments_from(json: Option<String>) -> Vec<herald_gateway::agent::Attachment> {
    json.and_then(|json| serde_json::from_str(&json).ok())
        .unwrap_or_default()
}

impl AdapterStore for SqliteJournal {
    crate::writer::queued_adapter_writes!();
    fn undelivered(&self, adapter: &str, limit: usize) -> Pending<Vec<Delivery>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let adapter = adapter.to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT m.turn_id, s.chat_id, t.message_id, m.text, m.failed, t.draft, m.files, m.created_ms
                 FROM sessions s
                 JOIN messages m ON m.session_id = s.id AND m.role = 'assistant' AND m.delivered_ms IS NULL
                                AND m.delivery_failed_ms IS NULL
                 JOIN turns t ON t.id = m.turn_id
                 WHERE s.adapter = ?1
                 ORDER BY m.id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![adapter.as_str(), limit], |r| {
                Ok(Delivery {
                    turn_id: r.get(0)?,
                    session: SessionKey::new(adapter.as_str(), r.get::<_, String>(1)?),
                    message_id: r.get(2)?,
                    reply: Reply {
                        text: r.get(3)?,
                        failed: r.get(4)?,
                        files: attachments_from(r.get(6)?),
                    },
                    draft: r.get(5)?,
                    at_ms: r.get::<_, i64>(7)?.max(0) as u64,
                })
            })?;
            rows.collect()
        })
    }

    fn failed_deliveries(&self, limit: usize) -> Pending<Vec<FailedDelivery>> {
        self.read(move |conn| query_failed_deliveries(conn, limit))
    }

    fn adapter_offset(&self, adapter: &str) -> Pending<Option<i64>> {
        let adapter = adapter.to_owned();
        self.read(move |conn| {
            conn.prepare_cached("SELECT next_update FROM adapter_offsets WHERE adapter = ?1")?
                .query_row(params![adapter], |r| r.get(0))
                .optional()
        })
    }

    fn adapter_cursor(&self, adapter: &str) -> Pending<Option<String>> {
        let adapter = adapter.to_owned();
        self.read(move |conn| {
            conn.prepare_cached("SELECT cursor FROM adapter_cursors WHERE adapter = ?1")?
                .query_row(params![adapter], |r| r.get(0))
                .optional()
        })
    }
}

impl Journal for SqliteJournal {
    /// Completes once both connections are closed; the waiting happens on a thread of its own, so the
    /// caller's thread is never blocked on the final commit and checkpoint.
    fn close(&self) -> Pending<()> {
        let shutdown = self.shut();
        let (done, pending) = Pending::channel();
        let spawned = std::thread::Builder::new()
            .name("herald-journal-close".into())
            .spawn(move || {
                shutdown.wait();
                done.complete(Ok(()));
            });
        match spawned {
            Ok(_) => pending,
            Err(e) => Pending::ready(Err(JournalError::new(
                herald_gateway::journal::JournalErrorKind::Storage,
                format!("cannot close the journal: {e}"),
            ))),
        }
    }
}

/// Reads a session's messages newest first, one row at a time, until `limit`, the byte budget or the
/// start of the session; returns them oldest first. Rows past the budget are never materialised.
fn read_page(conn: &Connection, session: &SessionKey, query: &HistoryQuery) -> rusqlite::Result<HistoryPage> {
    let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
    let mut page = HistoryPage {
        conversation: conn
            .prepare_cached("SELECT conversation FROM sessions WHERE adapter = ?1 AND chat_id = ?2")?
            .query_row(params![session.adapter, session.chat_id], |r| r.get::<_, i64>(0))
            .optional()?
            .map_or(1, |n| n.max(1) as u64),
        ..HistoryPage::default()
    };
    let mut stmt = conn.prepare_cached(
        "SELECT m.id, m.turn_id, t.message_id, m.role, m.text, m.created_ms, m.failed,
                CASE WHEN t.cancelled_ms IS NULL THEN t.state ELSE 'cancelled' END, t.number, t.conversation,
                m.files
         FROM messages m
         JOIN turns t ON t.id = m.turn_id
         WHERE m.session_id = (SELECT id FROM sessions WHERE adapter = ?1 AND chat_id = ?2)
           AND (?3 IS NULL OR m.id < ?3)
         ORDER BY m.id DESC LIMIT ?4",
    )?;
    // One row more than asked: whether older messages exist.
    let mut rows = stmt.query(params![
        session.adapter,
        session.chat_id,
        query.before,
        limit.saturating_add(1)
    ])?;
    let mut bytes = 0usize;
    let mut last_id = 0i64;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let text: String = r.get(4)?;
        let over_budget = !page.messages.is_empty() && bytes.saturating_add(text.len()) > query.max_bytes;
        if page.messages.len() == query.limit || over_budget {
            page.older = page.messages.last().map(|_| last_id);
            break;
        }
        bytes = bytes.saturating_add(text.len());
        let role: String = r.get(3)?;
        let role = if role == "assistant" {
            Role::Assistant
        } else {
            Role::User
        };
        let failed: bool = r.get(6)?;
        let turn_state: String = r.get(7)?;
        let status = match role {
            Role::Assistant if turn_state == "cancelled" => TurnState::Cancelled,
            Role::Assistant if failed => TurnState::Failed,
            Role::Assistant => TurnState::Done,
            Role::User => TurnState::parse(&turn_state).unwrap_or(TurnState::Pending),
        };
        page.messages.push(StoredMessage {
            turn_id: r.get(1)?,
            turn: r.get::<_, i64>(8)?.max(0) as u64,
            conversation: r.get::<_, i64>(9)?.max(1) as u64,
            message_id: r.get(2)?,
            role,
            text,
            at_ms: r.get::<_, i64>(5)?.max(0) as u64,
            status,
            files: attachments_from(r.get(10)?),
        });
        last_id = id;
    }
    page.messages.reverse();
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_gateway::journal::Inbound;

    /// A journal written by a build that knew only schema version 1 (the first entry of the
    /// migrations, which is never edited) is migrated: its replies count as delivered, its turns stay.
    #[tokio::test]
    async fn a_version_1_file_is_migrated_and_its_replies_count_as_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(schema::MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute_batch(
                "INSERT INTO sessions VALUES (1, 'telegram', '42', 1, 1);
                 INSERT INTO turns VALUES (1, 1, 'u7', 'done', 0, 1, 1);
                 INSERT INTO turns VALUES (2, 1, 'u8', 'pending', 0, 1, 1);
                 INSERT INTO messages VALUES (1, 1, 1, 'user', 'hi', 0, 1);
                 INSERT INTO messages VALUES (2, 1, 1, 'assistant', 'echo: hi', 0, 2);
                 INSERT INTO messages VALUES (3, 1, 2, 'user', 'again', 0, 3);",
            )
            .unwrap();
        }
        let (journal, report) = SqliteJournal::open(&path).unwrap();
        assert_eq!(report.migrated_from, Some(1));
        assert!(journal.undelivered("telegram", 10).await.unwrap().is_empty());
        assert_eq!(journal.adapter_offset("telegram").await.unwrap(), None);
        let unfinished = journal.unfinished().await.unwrap();
        assert_eq!(unfinished.len(), 1);
        journal
            .finish(2, Reply::text("echo: again", false), 4)
            .await
            .unwrap();
        let pending = journal.undelivered("telegram", 10).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!((pending[0].turn_id, pending[0].message_id.as_str()), (2, "u8"));
        assert_eq!(pending[0].session, SessionKey::new("telegram", "42"));
        drop(journal);
        // Reopening a current file migrates nothing.
        let (_journal, report) = SqliteJournal::open(&path).unwrap();
        assert_eq!(report.migrated_from, None);
    }

    /// A journal as the schema version 2 build left it — made with that version's exact DDL (the first
    /// two migrations, never edited) and filled as its writer did: turns numbered globally, sessions
    /// interleaved, a failed turn whose apology is stored with `failed = 1`, a turn still pending.
    fn version_2_file(path: &Path) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(schema::MIGRATIONS[0]).unwrap();
        conn.execute_batch(schema::MIGRATIONS[1]).unwrap();
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn.execute_batch(
            "INSERT INTO sessions VALUES (1, 'http', 'alice', 1, 9);
             INSERT INTO sessions VALUES (2, 'telegram', '42', 2, 8);
             INSERT INTO turns VALUES (1, 1, 'a1', 'done', 0, 1, 1);
             INSERT INTO turns VALUES (2, 2, 'u7', 'done', 0, 2, 2);
             INSERT INTO turns VALUES (3, 1, 'a2', 'failed', 3, 3, 3);
             INSERT INTO turns VALUES (4, 1, 'a3', 'done', 0, 4, 4);
             INSERT INTO turns VALUES (5, 2, 'u8', 'done', 0, 5, 5);
             INSERT INTO turns VALUES (6, 1, 'a4', 'pending', 0, 6, 6);
             INSERT INTO messages VALUES (1, 1, 1, 'user', 'hi', 0, 1, NULL);
             INSERT INTO messages VALUES (2, 1, 1, 'assistant', 'hello', 0, 1, 1);
             INSERT INTO messages VALUES (3, 2, 2, 'user', 'tg one', 0, 2, NULL);
             INSERT INTO messages VALUES (4, 2, 2, 'assistant', 'tg reply one', 0, 2, 2);
             INSERT INTO messages VALUES (5, 1, 3, 'user', 'crashy', 0, 3, NULL);
             INSERT INTO messages VALUES (6, 1, 3, 'assistant', 'Sorry, the agent failed', 1, 3, 3);
             INSERT INTO messages VALUES (7, 1, 4, 'user', 'again', 0, 4, NULL);
             INSERT INTO messages VALUES (8, 1, 4, 'assistant', 'sure', 0, 4, 4);
             INSERT INTO messages VALUES (9, 2, 5, 'user', 'tg two', 0, 5, NULL);
             INSERT INTO messages VALUES (10, 2, 5, 'assistant', 'tg reply two', 0, 5, NULL);
             INSERT INTO messages VALUES (11, 1, 6, 'user', 'still waiting', 0, 6, NULL);",
        )
        .unwrap();
    }

    /// A message row: (id, session, turn, role, text, failed, delivered).
    type Row = (i64, i64, i64, String, String, bool, Option<i64>);

    /// Every message of the file: what must survive a migration unchanged.
    fn all_messages(path: &Path) -> Vec<Row> {
        let conn = Connection::open(path).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT id, session_id, turn_id, role, text, failed, delivered_ms FROM messages ORDER BY id",
            )
            .unwrap();
        stmt.query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
    }

    #[tokio::test]
    async fn a_version_2_file_gets_per_session_turn_numbers_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        version_2_file(&path);
        let before = all_messages(&path);
        let (journal, report) = SqliteJournal::open(&path).unwrap();
        assert_eq!(report.migrated_from, Some(2));
        assert_eq!(SCHEMA_VERSION, 7);
        drop(journal);
        // Nothing lost or changed: every message, its turn, its failure mark and its delivery mark.
        assert_eq!(all_messages(&path), before);
        let (journal, report) = SqliteJournal::open(&path).unwrap();
        assert_eq!(report.migrated_from, None);

        // Each session's turns are numbered 1, 2, 3… in the order they were stored.
        let numbers = |session: SessionKey| {
            let page = journal.history_page(
                &session,
                HistoryQuery {
                    limit: 100,
                    before: None,
                    max_bytes: usize::MAX,
                },
            );
            async move {
                let page = page.await.unwrap();
                assert_eq!(page.conversation, 1);
                page.messages
                    .into_iter()
                    .map(|m| (m.turn, m.conversation, m.text, m.status))
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            numbers(SessionKey::new("http", "alice")).await,
            [
                (1, 1, "hi".to_owned(), TurnState::Done),
                (1, 1, "hello".to_owned(), TurnState::Done),
                (2, 1, "crashy".to_owned(), TurnState::Failed),
                (2, 1, "Sorry, the agent failed".to_owned(), TurnState::Failed),
                (3, 1, "again".to_owned(), TurnState::Done),
                (3, 1, "sure".to_owned(), TurnState::Done),
                (4, 1, "still waiting".to_owned(), TurnState::Pending),
            ]
        );
        assert_eq!(
            numbers(SessionKey::new("telegram", "42"))
                .await
                .iter()
                .map(|m| m.0)
                .collect::<Vec<_>>(),
            [1, 1, 2, 2]
        );
        // The pending turn is still resumable, with its number; the undelivered reply is still owed.
        let unfinished = journal.unfinished().await.unwrap();
        assert_eq!(
            unfinished
                .iter()
                .map(|t| (t.turn_id, t.number, t.text.as_str()))
                .collect::<Vec<_>>(),
            [(6, 4, "still waiting")]
        );
        let owed = journal.undelivered("telegram", 10).await.unwrap();
        assert_eq!(owed.len(), 1);
        assert_eq!(owed[0].reply.text, "tg reply two");
        // The apology stored by version 2 is recognised as such: the agent of the pending turn sees the
        // conversation without it.
        let context: Vec<(Role, String)> = journal
            .context(6, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|m| (m.role, m.text))
            .collect();
        assert_eq!(
            context,
            [
                (Role::User, "hi".to_owned()),
                (Role::Assistant, "hello".to_owned()),
                (Role::User, "crashy".to_owned()),
                (Role::User, "again".to_owned()),
                (Role::Assistant, "sure".to_owned()),
            ]
        );
        // New turns continue each session's numbering.
        let next = journal
            .accept(Inbound {
                session: SessionKey::new("http", "alice"),
                message_id: "a5".into(),
                text: "fifth".into(),
                at_ms: 10,
                attachments: Vec::new(),
            })
            .await
            .unwrap();
        assert_eq!((next.new, next.number), (true, 5));
        let first = journal
            .accept(Inbound {
                session: SessionKey::new("http", "bob"),
                message_id: "b1".into(),
                text: "first".into(),
                at_ms: 10,
                attachments: Vec::new(),
            })
            .await
            .unwrap();
        assert_eq!(first.number, 1);
        let sessions = journal.sessions(10).await.unwrap();
        assert_eq!(sessions.len(), 3);
        assert!(sessions.iter().all(|s| s.conversation == 1));
        let alice = sessions.iter().find(|s| s.session.chat_id == "alice").unwrap();
        assert_eq!(alice.messages, 8);
    }

    /// A text cursor is stored per adapter, replaced by the next commit, and survives a reopen.
    #[tokio::test]
    async fn an_adapter_cursor_is_kept_per_adapter_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let (journal, _) = SqliteJournal::open(&path).unwrap();
            assert_eq!(journal.adapter_cursor("matrix").await.unwrap(), None);
            journal.set_adapter_cursor("matrix", "s72_1_0", 1).await.unwrap();
            journal.set_adapter_cursor("matrix", "s80_4_2", 2).await.unwrap();
            journal.set_adapter_cursor("other", "t1", 2).await.unwrap();
            journal.close().await.unwrap();
        }
        let (journal, _) = SqliteJournal::open(&path).unwrap();
        assert_eq!(
            journal.adapter_cursor("matrix").await.unwrap().as_deref(),
            Some("s80_4_2")
        );
        assert_eq!(
            journal.adapter_cursor("other").await.unwrap().as_deref(),
            Some("t1")
        );
        // The numeric offsets are a table of their own.
        assert_eq!(journal.adapter_offset("matrix").await.unwrap(), None);
    }
}
