//! The one writer: a thread that owns the read-write connection and commits queued writes in batches.
//!
//! **Invariant:** every write is applied in the order it was queued, inside a transaction, and its
//! completion is sent only after that transaction has committed (`synchronous = FULL`: it is on disk).
//! Writes that arrive while a commit is in progress share the next one (group commit), so many
//! concurrent turns cost one fsync rather than one each, and nobody is told "stored" early.
//!
//! Each write runs in its own savepoint: one failing write (a constraint, say) does not undo the others
//! in its batch. A failed commit (a full disk) fails every write of the batch.

use std::sync::mpsc;

use herald_gateway::journal::{
    Accepted, CommandClaim, Completion, Conversation, Delivery, Inbound, JournalError, JournalErrorKind,
    Reply, SessionKey, TurnState,
};
use rusqlite::{Connection, ErrorCode, OptionalExtension, Transaction, params};

/// Most writes committed in one transaction: bounds the latency a batch adds to its first write.
const MAX_BATCH: usize = 1024;

/// A queued write.
#[derive(Debug)]
pub(crate) enum Write {
    Accept(Box<Inbound>, Completion<Accepted>),
    Start {
        turn_id: i64,
        at_ms: u64,
        done: Completion<()>,
    },
    Finish {
        turn_id: i64,
        reply: Reply,
        at_ms: u64,
        done: Completion<()>,
    },
    MarkInterrupted {
        turn_ids: Vec<i64>,
        at_ms: u64,
        done: Completion<()>,
    },
    NoteResumed {
        turn_ids: Vec<i64>,
        at_ms: u64,
        done: Completion<()>,
    },
    MarkDelivered {
        turn_id: i64,
        at_ms: u64,
        done: Completion<()>,
    },
    SetDraft {
        turn_id: i64,
        draft: String,
        done: Completion<()>,
    },
    FailDelivery {
        turn_id: i64,
        error: String,
        at_ms: u64,
        done: Completion<()>,
    },
    RetryDelivery {
        turn_id: i64,
        done: Completion<Option<Delivery>>,
    },
    SetOffset {
        adapter: String,
        offset: i64,
        at_ms: u64,
        done: Completion<()>,
    },
    SetCursor {
        adapter: String,
        cursor: String,
        at_ms: u64,
        done: Completion<()>,
    },
    Reset {
        session: SessionKey,
        at_ms: u64,
        done: Completion<Conversation>,
    },
    Cancel {
        turn_id: i64,
        notice: String,
        at_ms: u64,
        done: Completion<bool>,
    },
    ClaimCommand {
        session: SessionKey,
        message_id: String,
        command: String,
        reset: bool,
        at_ms: u64,
        done: Completion<CommandClaim>,
    },
}

/// What a write produced inside the transaction, delivered after the commit.
enum Outcome {
    Accepted(Completion<Accepted>, Result<Accepted, JournalError>),
    Reset(Completion<Conversation>, Result<Conversation, JournalError>),
    Cancelled(Completion<bool>, Result<bool, JournalError>),
    Claimed(Completion<CommandClaim>, Result<CommandClaim, JournalError>),
    Retried(
        Completion<Option<Delivery>>,
        Result<Option<Delivery>, JournalError>,
    ),
    Unit(Completion<()>, Result<(), JournalError>),
    Nothing,
}

/// Runs until every sender is gone, then returns (the connection closes, checkpointing the WAL).
pub(crate) fn run(mut conn: Connection, queue: mpsc::Receiver<Write>) {
    while let Ok(first) = queue.recv() {
        let mut batch = Vec::with_capacity(16);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        commit_batch(&mut conn, batch);
    }
}

fn commit_batch(conn: &mut Connection, batch: Vec<Write>) {
    let mut tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => return fail_all(batch, &storage_error(&e)),
    };
    let mut outcomes = Vec::with_capacity(batch.len());
    for write in batch {
        outcomes.push(apply_in_savepoint(&mut tx, write));
    }
    let committed = tx.commit().map_err(|e| uncertain_commit(&e));
    for outcome in outcomes {
        deliver(outcome, &committed);
    }
}

pub(crate) fn fail_all(batch: Vec<Write>, error: &JournalError) {
    for write in batch {
        match write {
            Write::Accept(_, done) => done.complete(Err(error.clone())),
            Write::Reset { done, .. } => done.complete(Err(error.clone())),
            Write::Cancel { done, .. } => done.complete(Err(error.clone())),
            Write::ClaimCommand { done, .. } => done.complete(Err(error.clone())),
            Write::RetryDelivery { done, .. } => done.complete(Err(error.clone())),
            Write::Start { done, .. }
            | Write::Finish { done, .. }
            | Write::MarkInterrupted { done, .. }
            | Write::NoteResumed { done, .. }
            | Write::MarkDelivered { done, .. }
            | Write::SetDraft { done, .. }
            | Write::FailDelivery { done, .. }
            | Write::SetOffset { done, .. }
            | Write::SetCursor { done, .. } => done.complete(Err(error.clone())),
        }
    }
}

fn deliver(outcome: Outcome, committed: &Result<(), JournalError>) {
    // A write that succeeded inside a transaction that then failed to commit did not happen.
    fn after<T>(
        result: Result<T, JournalError>,
        committed: &Result<(), JournalError>,
    ) -> Result<T, JournalError> {
        match committed {
            Ok(()) => result,
            Err(e) => Err(e.clone()),
        }
    }
    match outcome {
        Outcome::Accepted(done, result) => done.complete(after(result, committed)),
        Outcome::Reset(done, result) => done.complete(after(result, committed)),
        Outcome::Cancelled(done, result) => done.complete(after(result, committed)),
        Outcome::Claimed(done, result) => done.complete(after(result, committed)),
        Outcome::Retried(done, result) => done.complete(after(result, committed)),
        Outcome::Unit(done, result) => done.complete(after(result, committed)),
        Outcome::Nothing => {}
    }
}

fn apply_in_savepoint(tx: &mut Transaction<'_>, write: Write) -> Outcome {
    let mut savepoint = match tx.savepoint() {
        Ok(sp) => sp,
        Err(e) => {
            let error = storage_error(&e);
            fail_all(vec![write], &error);
            return Outcome::Nothing;
        }
    };
    let outcome = match write {
        Write::Accept(inbound, done) => {
            Outcome::Accepted(done, accept(&savepoint, &inbound).map_err(|e| storage_error(&e)))
        }
        Write::Start { turn_id, at_ms, done } => {
            let result = start(&savepoint, turn_id, at_ms);
            if let Err(e) = &result {
                // Usually nobody awaits this write: say so here, or nobody would know.
                tracing::warn!("cannot mark turn {turn_id} running: {e}");
            }
            Outcome::Unit(done, result.map_err(|e| storage_error(&e)))
        }
        Write::Finish {
            turn_id,
            reply,
            at_ms,
            done,
        } => Outcome::Unit(
            done,
            finish(&savepoint, turn_id, &reply, at_ms).map_err(|e| storage_error(&e)),
        ),
        Write::MarkInterrupted {
            turn_ids,
            at_ms,
            done,
        } => Outcome::Unit(
            done,
            mark_interrupted(&savepoint, &turn_ids, at_ms).map_err(|e| storage_error(&e)),
        ),
        Write::NoteResumed {
            turn_ids,
            at_ms,
            done,
        } => Outcome::Unit(
            done,
            note_resumed(&savepoint, &turn_ids, at_ms).map_err(|e| storage_error(&e)),
        ),
        Write::MarkDelivered { turn_id, at_ms, done } => Outcome::Unit(
            done,
            mark_delivered(&savepoint, turn_id, at_ms).map_err(|e| storage_error(&e)),
        ),
        Write::SetDraft { turn_id, draft, done } => Outcome::Unit(
            done,
            set_draft(&savepoint, turn_id, &draft).map_err(|e| storage_error(&e)),
        ),
        Write::FailDelivery {
            turn_id,
            error,
            at_ms,
            done,
        } => Outcome::Unit(
            done,
            fail_delivery(&savepoint, turn_id, &error, at_ms).map_err(|e| storage_error(&e)),
        ),
        Write::RetryDelivery { turn_id, done } => Outcome::Retried(
            done,
            retry_delivery(&savepoint, turn_id).map_err(|e| storage_error(&e)),
        ),
        Write::SetOffset {
            adapter,
            offset,
            at_ms,
            done,
        } => Outcome::Unit(
            done,
            set_offset(&savepoint, &adapter, offset, at_ms).map_err(|e| storage_error(&e)),
        ),
        Write::SetCursor {
            adapter,
            cursor,
            at_ms,
            done,
        } => Outcome::Unit(
            done,
            set_cursor(&savepoint, &adapter, &cursor, at_ms).map_err(|e| storage_error(&e)),
        ),
        Write::Reset { session, at_ms, done } => Outcome::Reset(
            done,
            reset(&savepoint, &session, at_ms).map_err(|e| storage_error(&e)),
        ),
        Write::Cancel {
            turn_id,
            notice,
            at_ms,
            done,
        } => Outcome::Cancelled(
            done,
            cancel(&savepoint, turn_id, &notice, at_ms).map_err(|e| storage_error(&e)),
        ),
        Write::ClaimCommand {
            session,
            message_id,
            command,
            reset,
            at_ms,
            done,
        } => Outcome::Claimed(
            done,
            claim_command(&savepoint, &session, &message_id, &command, reset, at_ms)
                .map_err(|e| storage_error(&e)),
        ),
    };
    let failed = match &outcome {
        Outcome::Accepted(_, r) => r.is_err(),
        Outcome::Reset(_, r) => r.is_err(),
        Outcome::Cancelled(_, r) => r.is_err(),
        Outcome::Claimed(_, r) => r.is_err(),
        Outcome::Retried(_, r) => r.is_err(),
        Outcome::Unit(_, r) => r.is_err(),
        Outcome::Nothing => false,
    };
    if failed {
        let _ = savepoint.rollback();
    }
    if let Err(e) = savepoint.commit() {
        tracing::warn!("cannot release a journal savepoint: {e}");
    }
    outcome
}

fn accept(conn: &Connection, inbound: &Inbound) -> rusqlite::Result<Accepted> {
    let (session_id, conversation): (i64, i64) = conn
        .prepare_cached(
            "INSERT INTO sessions (adapter, chat_id, created_ms, updated_ms) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (adapter, chat_id) DO UPDATE SET updated_ms = excluded.updated_ms
             RETURNING id, conversation",
        )?
        .query_row(
            params![
                inbound.session.adapter,
                inbound.session.chat_id,
                inbound.at_ms as i64
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
    let existing = conn
        .prepare_cached(
            "SELECT t.id, t.state,
                    (SELECT text FROM messages WHERE turn_id = t.id AND role = 'user'),
                    (SELECT text FROM messages WHERE turn_id = t.id AND role = 'assistant'),
                    (SELECT failed FROM messages WHERE turn_id = t.id AND role = 'assistant'),
                    t.number,
                    (SELECT files FROM messages WHERE turn_id = t.id AND role = 'assistant')
             FROM turns t WHERE t.session_id = ?1 AND t.message_id = ?2",
        )?
        .query_row(params![session_id, inbound.message_id], |r| {
            let state: String = r.get(1)?;
            let reply: Option<String> = r.get(3)?;
            let failed: Option<bool> = r.get(4)?;
            Ok(Accepted {
                turn_id: r.get(0)?,
                number: r.get::<_, i64>(5)?.max(0) as u64,
                new: false,
                state: TurnState::parse(&state).unwrap_or(TurnState::Failed),
                text: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                reply: reply.map(|text| Reply {
                    text,
                    failed: failed.unwrap_or(false),
                    files: crate::attachments_from(r.get(6).ok().flatten()),
                }),
            })
        })
        .optional()?;
    if let Some(existing) = existing {
        return Ok(existing);
    }
    // The session's next number, from its own count: one writer, inside its transaction, so no two turns
    // get the same one (and the unique index `turns_by_conversation` would refuse it if they did). The
    // session row was just written anyway: counting there adds no index work to the turn.
    let number: i64 = conn
        .prepare_cached("UPDATE sessions SET turns = turns + 1 WHERE id = ?1 RETURNING turns")?
        .query_row(params![session_id], |r| r.get(0))?;
    let turn_id: i64 = conn
        .prepare_cached(
            "INSERT INTO turns (session_id, message_id, state, created_ms, updated_ms, number, conversation,
                                attachments)
             VALUES (?1, ?2, 'pending', ?3, ?3, ?4, ?5, ?6)
             RETURNING id",
        )?
        .query_row(
            params![
                session_id,
                inbound.message_id,
                inbound.at_ms as i64,
                number,
                conversation,
                attachments_json(&inbound.attachments)
            ],
            |r| r.get(0),
        )?;
    conn.prepare_cached(
        "INSERT INTO messages (session_id, turn_id, role, text, created_ms) VALUES (?1, ?2, 'user', ?3, ?4)",
    )?
    .execute(params![session_id, turn_id, inbound.text, inbound.at_ms as i64])?;
    Ok(Accepted {
        turn_id,
        number: number.max(0) as u64,
        new: true,
        state: TurnState::Pending,
        text: inbound.text.clone(),
        reply: None,
    })
}

/// A turn's attachments (or a reply's files) as stored: `NULL` for none, else a JSON array.
fn attachments_json(attachments: &[herald_gateway::agent::Attachment]) -> Option<String> {
    if attachments.is_empty() {
        return None;
    }
    serde_json::to_string(attachments).ok()
}

/// Starts the session's next conversation, unless its current one has no turn yet (a repeated or retried
/// reset changes nothing). An unknown session is left unknown: it is at conversation 1 and fresh.
fn reset(conn: &Connection, session: &SessionKey, at_ms: u64) -> rusqlite::Result<Conversation> {
    let current: Option<(i64, i64)> = conn
        .prepare_cached("SELECT id, conversation FROM sessions WHERE adapter = ?1 AND chat_id = ?2")?
        .query_row(params![session.adapter, session.chat_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let Some((session_id, conversation)) = current else {
        return Ok(Conversation {
            number: 1,
            started: false,
        });
    };
    let used: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM turns WHERE session_id = ?1 AND conversation = ?2)")?
        .query_row(params![session_id, conversation], |r| r.get(0))?;
    if !used {
        return Ok(Conversation {
            number: conversation.max(1) as u64,
            started: false,
        });
    }
    let next: i64 = conn
        .prepare_cached(
            "UPDATE sessions SET conversation = conversation + 1, updated_ms = ?2 WHERE id = ?1
             RETURNING conversation",
        )?
        .query_row(params![session_id, at_ms as i64], |r| r.get(0))?;
    Ok(Conversation {
        number: next.max(1) as u64,
        started: true,
    })
}

/// Records a command message once; with `reset`, a first claim also starts the next conversation.
fn claim_command(
    conn: &Connection,
    session: &SessionKey,
    message_id: &str,
    command: &str,
    reset_too: bool,
    at_ms: u64,
) -> rusqlite::Result<CommandClaim> {
    let session_id: i64 = conn
        .prepare_cached(
            "INSERT INTO sessions (adapter, chat_id, created_ms, updated_ms) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (adapter, chat_id) DO UPDATE SET updated_ms = excluded.updated_ms
             RETURNING id",
        )?
        .query_row(params![session.adapter, session.chat_id, at_ms as i64], |r| {
            r.get(0)
        })?;
    let inserted = conn
        .prepare_cached(
            "INSERT INTO commands (session_id, message_id, command, created_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![session_id, message_id, command, at_ms as i64])?;
    let first = inserted == 1;
    let conversation = if first && reset_too {
        Some(reset(conn, session, at_ms)?)
    } else {
        None
    };
    Ok(CommandClaim { first, conversation })
}

/// Closes an unanswered turn as cancelled, its notice stored as a reply already delivered.
fn cancel(conn: &Connection, turn_id: i64, notice: &str, at_ms: u64) -> rusqlite::Result<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE turns SET state = 'failed', cancelled_ms = ?2, updated_ms = ?2
             WHERE id = ?1 AND state IN ('pending', 'running', 'interrupted')",
        )?
        .execute(params![turn_id, at_ms as i64])?;
    if changed == 0 {
        return Ok(false);
    }
    conn.prepare_cached(
        "INSERT INTO messages (session_id, turn_id, role, text, failed, created_ms, delivered_ms)
         SELECT session_id, id, 'assistant', ?2, 1, ?3, ?3 FROM turns WHERE id = ?1",
    )?
    .execute(params![turn_id, notice, at_ms as i64])?;
    Ok(true)
}

fn start(conn: &Connection, turn_id: i64, at_ms: u64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE turns SET state = 'running', updated_ms = ?2
         WHERE id = ?1 AND state IN ('pending', 'interrupted')",
    )?
    .execute(params![turn_id, at_ms as i64])?;
    Ok(())
}

fn finish(conn: &Connection, turn_id: i64, reply: &Reply, at_ms: u64) -> rusqlite::Result<()> {
    let state = if reply.failed { "failed" } else { "done" };
    let changed = conn
        .prepare_cached(
            "UPDATE turns SET state = ?2, updated_ms = ?3
             WHERE id = ?1 AND state IN ('pending', 'running', 'interrupted')",
        )?
        .execute(params![turn_id, state, at_ms as i64])?;
    if changed == 0 {
        // Already final (or unknown): the first reply stands.
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT INTO messages (session_id, turn_id, role, text, failed, created_ms, files)
         SELECT session_id, id, 'assistant', ?2, ?3, ?4, ?5 FROM turns WHERE id = ?1",
    )?
    .execute(params![
        turn_id,
        reply.text,
        reply.failed,
        at_ms as i64,
        attachments_json(&reply.files)
    ])?;
    conn.prepare_cached(
        "UPDATE sessions SET updated_ms = ?2 WHERE id = (SELECT session_id FROM turns WHERE id = ?1)",
    )?
    .execute(params![turn_id, at_ms as i64])?;
    Ok(())
}

fn mark_interrupted(conn: &Connection, turn_ids: &[i64], at_ms: u64) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "UPDATE turns SET state = 'interrupted', updated_ms = ?2
         WHERE id = ?1 AND state IN ('pending', 'running')",
    )?;
    for id in turn_ids {
        stmt.execute(params![id, at_ms as i64])?;
    }
    Ok(())
}

fn note_resumed(conn: &Connection, turn_ids: &[i64], at_ms: u64) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "UPDATE turns SET state = 'pending', updated_ms = ?2,
             resume_count = resume_count + (state IN ('running', 'interrupted'))
         WHERE id = ?1 AND state IN ('pending', 'running', 'interrupted')",
    )?;
    for id in turn_ids {
        stmt.execute(params![id, at_ms as i64])?;
    }
    Ok(())
}

fn mark_delivered(conn: &Connection, turn_id: i64, at_ms: u64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE messages SET delivered_ms = ?2
         WHERE turn_id = ?1 AND role = 'assistant' AND delivered_ms IS NULL",
    )?
    .execute(params![turn_id, at_ms as i64])?;
    Ok(())
}

fn fail_delivery(conn: &Connection, turn_id: i64, error: &str, at_ms: u64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE messages SET delivery_failed_ms = ?2, delivery_error = ?3
         WHERE turn_id = ?1 AND role = 'assistant' AND delivered_ms IS NULL",
    )?
    .execute(params![turn_id, at_ms as i64, error])?;
    Ok(())
}

/// Clears a reply's failure mark and reads it back for delivery (`None`: it had none).
fn retry_delivery(conn: &Connection, turn_id: i64) -> rusqlite::Result<Option<Delivery>> {
    let changed = conn
        .prepare_cached(
            "UPDATE messages SET delivery_failed_ms = NULL, delivery_error = NULL
             WHERE turn_id = ?1 AND role = 'assistant' AND delivery_failed_ms IS NOT NULL",
        )?
        .execute(params![turn_id])?;
    if changed == 0 {
        return Ok(None);
    }
    conn.prepare_cached(
        "SELECT m.turn_id, s.adapter, s.chat_id, t.message_id, m.text, m.failed, t.draft, m.files,
                m.created_ms
         FROM messages m
         JOIN sessions s ON s.id = m.session_id
         JOIN turns t ON t.id = m.turn_id
         WHERE m.turn_id = ?1 AND m.role = 'assistant'",
    )?
    .query_row(params![turn_id], |r| {
        Ok(Delivery {
            turn_id: r.get(0)?,
            session: herald_gateway::journal::SessionKey::new(r.get::<_, String>(1)?, r.get::<_, String>(2)?),
            message_id: r.get(3)?,
            reply: Reply {
                text: r.get(4)?,
                failed: r.get(5)?,
                files: crate::attachments_from(r.get(7)?),
            },
            draft: r.get(6)?,
            at_ms: r.get::<_, i64>(8)?.max(0) as u64,
        })
    })
    .optional()
}

fn set_draft(conn: &Connection, turn_id: i64, draft: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE turns SET draft = ?2 WHERE id = ?1")?
        .execute(params![turn_id, draft])?;
    Ok(())
}

fn set_offset(conn: &Connection, adapter: &str, offset: i64, at_ms: u64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO adapter_offsets (adapter, next_update, updated_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (adapter) DO UPDATE SET next_update = max(next_update, excluded.next_update),
                                             updated_ms = excluded.updated_ms",
    )?
    .execute(params![adapter, offset, at_ms as i64])?;
    Ok(())
}

fn set_cursor(conn: &Connection, adapter: &str, cursor: &str, at_ms: u64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO adapter_cursors (adapter, cursor, updated_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (adapter) DO UPDATE SET cursor = excluded.cursor, updated_ms = excluded.updated_ms",
    )?
    .execute(params![adapter, cursor, at_ms as i64])?;
    Ok(())
}

/// A failed `COMMIT` is never "certainly not stored": on a full disk SQLite may fail it after the
/// transaction's frames reached the write-ahead log, and the next reader then sees them. So its writes are
/// answered as a storage failure (retry with the same id — idempotent), never as "disk full, nothing was
/// stored", which a client may take as leave to send the text again under a new id. Only a write that
/// failed inside its own savepoint, before any commit, is certainly absent.
fn uncertain_commit(e: &rusqlite::Error) -> JournalError {
    JournalError::new(
        JournalErrorKind::Storage,
        format!("the journal could not confirm the commit ({e}); it may or may not be stored"),
    )
}

/// Classifies an SQLite error for the gateway (a full disk is worth telling apart).
pub(crate) fn storage_error(e: &rusqlite::Error) -> JournalError {
    let kind = match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => JournalErrorKind::Full,
        _ => JournalErrorKind::Storage,
    };
    let message = match kind {
        JournalErrorKind::Full => format!("the disk is full; nothing was stored ({e})"),
        _ => format!("journal error: {e}"),
    };
    JournalError::new(kind, message)
}

/// The journal-trait methods that only queue a [`Write`], the same for every backend: each expands inside
/// an `impl` of its trait for a type with `fn write<T>(&self, make: impl FnOnce(Completion<T>) -> Write)
/// -> Pending<T>` (the SQLite and the PostgreSQL journal). What differs between backends is how writes are
/// applied, never how they are queued.
macro_rules! queued_turn_writes {
    () => {
        fn accept(
            &self,
            inbound: herald_gateway::journal::Inbound,
        ) -> herald_gateway::journal::Pending<herald_gateway::journal::Accepted> {
            self.write(|done| $crate::writer::Write::Accept(Box::new(inbound), done))
        }

        fn start(&self, turn_id: i64, at_ms: u64) -> herald_gateway::journal::Pending<()> {
            self.write(|done| $crate::writer::Write::Start {
                turn_id,
                at_ms,
                done,
            })
        }

        fn finish(
            &self,
            turn_id: i64,
            reply: herald_gateway::journal::Reply,
            at_ms: u64,
        ) -> herald_gateway::journal::Pending<()> {
            self.write(|done| $crate::writer::Write::Finish {
                turn_id,
                reply,
                at_ms,
                done,
            })
        }

        fn mark_interrupted(&self, turn_ids: &[i64], at_ms: u64) -> herald_gateway::journal::Pending<()> {
            if turn_ids.is_empty() {
                return herald_gateway::journal::Pending::ready(Ok(()));
            }
            let turn_ids = turn_ids.to_vec();
            self.write(|done| $crate::writer::Write::MarkInterrupted {
                turn_ids,
                at_ms,
                done,
            })
        }

        fn cancel(&self, turn_id: i64, notice: &str, at_ms: u64) -> herald_gateway::journal::Pending<bool> {
            let notice = notice.to_owned();
            self.write(|done| $crate::writer::Write::Cancel {
                turn_id,
                notice,
                at_ms,
                done,
            })
        }

        fn note_resumed(&self, turn_ids: &[i64], at_ms: u64) -> herald_gateway::journal::Pending<()> {
            if turn_ids.is_empty() {
                return herald_gateway::journal::Pending::ready(Ok(()));
            }
            let turn_ids = turn_ids.to_vec();
            self.write(|done| $crate::writer::Write::NoteResumed {
                turn_ids,
                at_ms,
                done,
            })
        }
    };
}

/// See [`queued_turn_writes`]: `HistoryStore`'s writes.
macro_rules! queued_history_writes {
    () => {
        fn reset(
            &self,
            session: &herald_gateway::journal::SessionKey,
            at_ms: u64,
        ) -> herald_gateway::journal::Pending<herald_gateway::journal::Conversation> {
            let session = session.clone();
            self.write(|done| $crate::writer::Write::Reset {
                session,
                at_ms,
                done,
            })
        }

        fn claim_command(
            &self,
            session: &herald_gateway::journal::SessionKey,
            message_id: &str,
            command: &str,
            reset: bool,
            at_ms: u64,
        ) -> herald_gateway::journal::Pending<herald_gateway::journal::CommandClaim> {
            let (session, message_id, command) = (session.clone(), message_id.to_owned(), command.to_owned());
            self.write(|done| $crate::writer::Write::ClaimCommand {
                session,
                message_id,
                command,
                reset,
                at_ms,
                done,
            })
        }
    };
}

/// See [`queued_turn_writes`]: `AdapterStore`'s writes.
macro_rules! queued_adapter_writes {
    () => {
        fn mark_delivered(&self, turn_id: i64, at_ms: u64) -> herald_gateway::journal::Pending<()> {
            self.write(|done| $crate::writer::Write::MarkDelivered {
                turn_id,
                at_ms,
                done,
            })
        }

        fn fail_delivery(
            &self,
            turn_id: i64,
            error: &str,
            at_ms: u64,
        ) -> herald_gateway::journal::Pending<()> {
            let error = error.to_owned();
            self.write(|done| $crate::writer::Write::FailDelivery {
                turn_id,
                error,
                at_ms,
                done,
            })
        }

        fn retry_delivery(
            &self,
            turn_id: i64,
        ) -> herald_gateway::journal::Pending<Option<herald_gateway::journal::Delivery>> {
            self.write(|done| $crate::writer::Write::RetryDelivery { turn_id, done })
        }

        fn set_draft(&self, turn_id: i64, draft: &str, _at_ms: u64) -> herald_gateway::journal::Pending<()> {
            let draft = draft.to_owned();
            self.write(|done| $crate::writer::Write::SetDraft {
                turn_id,
                draft,
                done,
            })
        }

        fn set_adapter_offset(
            &self,
            adapter: &str,
            offset: i64,
            at_ms: u64,
        ) -> herald_gateway::journal::Pending<()> {
            let adapter = adapter.to_owned();
            self.write(|done| $crate::writer::Write::SetOffset {
                adapter,
                offset,
                at_ms,
                done,
            })
        }

        fn set_adapter_cursor(
            &self,
            adapter: &str,
            cursor: &str,
            at_ms: u64,
        ) -> herald_gateway::journal::Pending<()> {
            let (adapter, cursor) = (adapter.to_owned(), cursor.to_owned());
            self.write(|done| $crate::writer::Write::SetCursor {
                adapter,
                cursor,
                at_ms,
                done,
            })
        }
    };
}

pub(crate) use {queued_adapter_writes, queued_history_writes, queued_turn_writes};
