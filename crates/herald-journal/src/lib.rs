//! Herald's session journal in SQLite (`state.db` in the home).
//!
//! **Invariant:** this crate is the only code that touches `state.db`. One thread writes (see
//! [`writer`]); one read-only connection serves history and listings. Both run off the async threads,
//! so a slow disk slows turns down but never stalls the gateway's event loop.
//!
//! **Architecture Invariant:** this crate builds C (SQLite, bundled) and is therefore a leaf that only
//! the `herald` binary depends on; `herald-gateway` knows the journal only as the
//! [`herald_gateway::journal::Journal`] trait, which keeps it pure Rust and checkable for every OS.

mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, mpsc};
use std::thread::JoinHandle;

use herald_gateway::agent::Role;
use herald_gateway::journal::{
    Accepted, Delivery, Inbound, Journal, JournalError, Pending, Reply, SessionKey, SessionSummary,
    StoredMessage, TurnState, UnfinishedTurn,
};
use rusqlite::{Connection, OptionalExtension, params};

pub use schema::{APPLICATION_ID, OpenError, OpenReport, SCHEMA_VERSION};
use writer::{Write, storage_error};

/// The SQLite journal. Dropping it waits for queued writes to commit.
#[derive(Debug)]
pub struct SqliteJournal {
    path: PathBuf,
    queue: Mutex<Option<mpsc::Sender<Write>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    reader: Mutex<Option<Connection>>,
}

impl SqliteJournal {
    /// Opens the journal at `path`, creating it (mode 0600) if needed. See [`schema`] for what happens
    /// to corrupt, old, newer and foreign files.
    pub fn open(path: &Path) -> Result<(SqliteJournal, OpenReport), OpenError> {
        let (conn, report) = schema::open_writer(path, herald_home::time::now_ms())?;
        let reader = schema::open_reader(path)?;
        let (tx, rx) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("herald-journal".into())
            .spawn(move || writer::run(conn, rx))
            .map_err(|e| OpenError::Create {
                path: path.to_path_buf(),
                source: e,
            })?;
        Ok((
            SqliteJournal {
                path: path.to_path_buf(),
                queue: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(writer)),
                reader: Mutex::new(Some(reader)),
            },
            report,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops the writer after it has committed everything queued so far, and closes both connections
    /// (the last one to close checkpoints the WAL into the main file).
    fn shut(&self) {
        drop(lock(&self.reader).take());
        drop(lock(&self.queue).take());
        if let Some(writer) = lock(&self.writer).take() {
            let _ = writer.join();
        }
    }

    fn send(&self, write: Write) -> Result<(), Write> {
        match lock(&self.queue).as_ref() {
            Some(queue) => queue.send(write).map_err(|e| e.0),
            None => Err(write),
        }
    }

    fn send_blocking(
        &self,
        make: impl FnOnce(mpsc::Sender<Result<(), JournalError>>) -> Write,
    ) -> Result<(), JournalError> {
        let (tx, rx) = mpsc::channel();
        self.send(make(tx)).map_err(|_| JournalError::closed())?;
        rx.recv().unwrap_or_else(|_| Err(JournalError::closed()))
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, JournalError> {
        match lock(&self.reader).as_ref() {
            Some(conn) => f(conn).map_err(|e| storage_error(&e)),
            None => Err(JournalError::closed()),
        }
    }
}

impl Drop for SqliteJournal {
    fn drop(&mut self) {
        self.shut();
    }
}

/// Poison-tolerant: every critical section here is a single call that leaves no half-updated state.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Journal for SqliteJournal {
    fn accept(&self, inbound: Inbound) -> Pending<Accepted> {
        let (done, pending) = Pending::channel();
        if let Err(Write::Accept(_, done)) = self.send(Write::Accept(inbound, done)) {
            done.complete(Err(JournalError::closed()));
        }
        pending
    }

    fn start(&self, turn_id: i64, at_ms: u64) {
        let _ = self.send(Write::Start { turn_id, at_ms });
    }

    fn finish(&self, turn_id: i64, reply: Reply, at_ms: u64) -> Pending<()> {
        let (done, pending) = Pending::channel();
        let write = Write::Finish {
            turn_id,
            reply,
            at_ms,
            done,
        };
        if let Err(Write::Finish { done, .. }) = self.send(write) {
            done.complete(Err(JournalError::closed()));
        }
        pending
    }

    fn mark_interrupted(&self, turn_ids: &[i64], at_ms: u64) -> Result<(), JournalError> {
        if turn_ids.is_empty() {
            return Ok(());
        }
        let turn_ids = turn_ids.to_vec();
        self.send_blocking(|done| Write::MarkInterrupted {
            turn_ids,
            at_ms,
            done,
        })
    }

    fn unfinished(&self) -> Result<Vec<UnfinishedTurn>, JournalError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT t.id, s.adapter, s.chat_id, t.message_id, m.text, t.state, t.resume_count
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
                    session: SessionKey::new(r.get::<_, String>(1)?, r.get::<_, String>(2)?),
                    message_id: r.get(3)?,
                    text: r.get(4)?,
                    state: TurnState::parse(&state).unwrap_or(TurnState::Pending),
                    resume_count: r.get(6)?,
                })
            })?;
            rows.collect()
        })
    }

    fn note_resumed(&self, turn_ids: &[i64], at_ms: u64) -> Result<(), JournalError> {
        if turn_ids.is_empty() {
            return Ok(());
        }
        let turn_ids = turn_ids.to_vec();
        self.send_blocking(|done| Write::NoteResumed {
            turn_ids,
            at_ms,
            done,
        })
    }

    fn history(&self, session: &SessionKey, limit: usize) -> Result<Vec<StoredMessage>, JournalError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT * FROM (
                    SELECT m.id, m.turn_id, t.message_id, m.role, m.text, m.created_ms, m.failed, t.state
                    FROM messages m
                    JOIN turns t ON t.id = m.turn_id
                    WHERE m.session_id = (SELECT id FROM sessions WHERE adapter = ?1 AND chat_id = ?2)
                    ORDER BY m.id DESC LIMIT ?3
                 ) ORDER BY id",
            )?;
            let rows = stmt.query_map(params![session.adapter, session.chat_id, limit], |r| {
                let role: String = r.get(3)?;
                let role = if role == "assistant" {
                    Role::Assistant
                } else {
                    Role::User
                };
                let failed: bool = r.get(6)?;
                let turn_state: String = r.get(7)?;
                let status = match role {
                    Role::Assistant if failed => TurnState::Failed,
                    Role::Assistant => TurnState::Done,
                    Role::User => TurnState::parse(&turn_state).unwrap_or(TurnState::Pending),
                };
                Ok(StoredMessage {
                    turn_id: r.get(1)?,
                    message_id: r.get(2)?,
                    role,
                    text: r.get(4)?,
                    at_ms: r.get::<_, i64>(5)?.max(0) as u64,
                    status,
                })
            })?;
            rows.collect()
        })
    }

    fn close(&self) {
        self.shut();
    }

    fn undelivered(&self, adapter: &str, limit: usize) -> Result<Vec<Delivery>, JournalError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT m.turn_id, s.chat_id, t.message_id, m.text, m.failed
                 FROM sessions s
                 JOIN messages m ON m.session_id = s.id AND m.role = 'assistant' AND m.delivered_ms IS NULL
                 JOIN turns t ON t.id = m.turn_id
                 WHERE s.adapter = ?1
                 ORDER BY m.id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![adapter, limit], |r| {
                Ok(Delivery {
                    turn_id: r.get(0)?,
                    session: SessionKey::new(adapter, r.get::<_, String>(1)?),
                    message_id: r.get(2)?,
                    reply: Reply {
                        text: r.get(3)?,
                        failed: r.get(4)?,
                    },
                })
            })?;
            rows.collect()
        })
    }

    fn mark_delivered(&self, turn_id: i64, at_ms: u64) -> Pending<()> {
        let (done, pending) = Pending::channel();
        if let Err(Write::MarkDelivered { done, .. }) =
            self.send(Write::MarkDelivered { turn_id, at_ms, done })
        {
            done.complete(Err(JournalError::closed()));
        }
        pending
    }

    fn adapter_offset(&self, adapter: &str) -> Result<Option<i64>, JournalError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT next_update FROM adapter_offsets WHERE adapter = ?1")?
                .query_row(params![adapter], |r| r.get(0))
                .optional()
        })
    }

    fn set_adapter_offset(&self, adapter: &str, offset: i64, at_ms: u64) -> Pending<()> {
        let (done, pending) = Pending::channel();
        let write = Write::SetOffset {
            adapter: adapter.to_owned(),
            offset,
            at_ms,
            done,
        };
        if let Err(Write::SetOffset { done, .. }) = self.send(write) {
            done.complete(Err(JournalError::closed()));
        }
        pending
    }

    fn sessions(&self, limit: usize) -> Result<Vec<SessionSummary>, JournalError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT s.adapter, s.chat_id, s.created_ms, s.updated_ms,
                        (SELECT count(*) FROM messages m WHERE m.session_id = s.id)
                 FROM sessions s ORDER BY s.updated_ms DESC, s.id DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map(params![limit], |r| {
                Ok(SessionSummary {
                    session: SessionKey::new(r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                    created_ms: r.get::<_, i64>(2)?.max(0) as u64,
                    updated_ms: r.get::<_, i64>(3)?.max(0) as u64,
                    messages: r.get::<_, i64>(4)?.max(0) as u64,
                })
            })?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(SCHEMA_VERSION, 2);
        assert!(journal.undelivered("telegram", 10).unwrap().is_empty());
        assert_eq!(journal.adapter_offset("telegram").unwrap(), None);
        let unfinished = journal.unfinished().unwrap();
        assert_eq!(unfinished.len(), 1);
        journal
            .finish(
                2,
                Reply {
                    text: "echo: again".into(),
                    failed: false,
                },
                4,
            )
            .await
            .unwrap();
        let pending = journal.undelivered("telegram", 10).unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!((pending[0].turn_id, pending[0].message_id.as_str()), (2, "u8"));
        assert_eq!(pending[0].session, SessionKey::new("telegram", "42"));
        drop(journal);
        // Reopening a current file migrates nothing.
        let (_journal, report) = SqliteJournal::open(&path).unwrap();
        assert_eq!(report.migrated_from, None);
    }
}
