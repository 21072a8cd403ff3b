//! The journal contract, run against both backends: SQLite on real files, and PostgreSQL on a real
//! server (a database per test on the cluster `ci/peers/postgres.sh` starts, named by
//! `HERALD_TEST_POSTGRES_URL`; `CI=true` without it is a failure, elsewhere the PostgreSQL half is skipped
//! with a message). Idempotency, one reply per turn, resume bookkeeping, history and delivery bookkeeping
//! are one suite (`on_both_backends!` at the end); what happens to corrupt, newer and foreign files and
//! databases is each backend's own.

mod support;

use std::path::Path;

use herald_gateway::agent::Role;
use herald_gateway::journal::{
    HistoryQuery, HistoryStore, Inbound, Journal, JournalErrorKind, Reply, SessionKey, TurnState, TurnStore,
};
use herald_journal::{OpenError, SCHEMA_VERSION, SqliteJournal};
use support::Store;

fn inbound(chat: &str, id: &str, text: &str) -> Inbound {
    Inbound {
        session: SessionKey::new("http", chat),
        message_id: id.into(),
        text: text.into(),
        at_ms: 1_000,
        attachments: Vec::new(),
    }
}

fn reply(text: &str) -> Reply {
    Reply::text(text, false)
}

fn open(path: &Path) -> SqliteJournal {
    SqliteJournal::open(path).unwrap().0
}

async fn a_message_id_makes_one_turn_and_a_turn_gets_one_reply(store: Store) {
    let journal = store.open();
    let first = journal.accept(inbound("alice", "m1", "hello")).await.unwrap();
    assert!(first.new);
    assert_eq!(first.state, TurnState::Pending);

    let again = journal.accept(inbound("alice", "m1", "hello")).await.unwrap();
    assert!(!again.new);
    assert_eq!(again.turn_id, first.turn_id);
    assert_eq!(again.text, "hello");
    assert_eq!(again.reply, None);

    // The same id in another session is another message.
    let other = journal.accept(inbound("bob", "m1", "hi")).await.unwrap();
    assert!(other.new);
    assert_ne!(other.turn_id, first.turn_id);

    journal.start(first.turn_id, 1_001);
    journal
        .finish(first.turn_id, reply("echo: hello"), 1_002)
        .await
        .unwrap();
    // A second finish (a resumed turn racing its original, say) is ignored: the first reply stands.
    journal
        .finish(first.turn_id, reply("second"), 1_003)
        .await
        .unwrap();

    let done = journal.accept(inbound("alice", "m1", "hello")).await.unwrap();
    assert_eq!(done.state, TurnState::Done);
    assert_eq!(done.reply, Some(reply("echo: hello")));

    let history = journal
        .history(&SessionKey::new("http", "alice"), 100)
        .await
        .unwrap();
    let texts: Vec<_> = history
        .iter()
        .map(|m| (m.role, m.text.as_str(), m.status))
        .collect();
    assert_eq!(
        texts,
        vec![
            (Role::User, "hello", TurnState::Done),
            (Role::Assistant, "echo: hello", TurnState::Done)
        ]
    );
    assert!(history.iter().all(|m| m.message_id == "m1"));
}

async fn unfinished_turns_survive_reopening_and_count_their_resumes(store: Store) {
    let (a, b, c) = {
        let journal = store.open();
        let a = journal.accept(inbound("s", "a", "one")).await.unwrap().turn_id;
        let b = journal.accept(inbound("s", "b", "two")).await.unwrap().turn_id;
        let c = journal.accept(inbound("s", "c", "three")).await.unwrap().turn_id;
        journal.start(b, 2);
        journal.finish(c, reply("done"), 3).await.unwrap();
        journal.mark_interrupted(&[a], 4).await.unwrap();
        (a, b, c)
    };
    let journal = store.open();
    let unfinished = journal.unfinished().await.unwrap();
    let ids: Vec<_> = unfinished
        .iter()
        .map(|t| (t.turn_id, t.state, t.resume_count))
        .collect();
    assert_eq!(
        ids,
        vec![(a, TurnState::Interrupted, 0), (b, TurnState::Running, 0)]
    );
    assert_eq!(unfinished[0].text, "one");
    assert_eq!(unfinished[0].message_id, "a");
    assert!(!ids.iter().any(|(id, ..)| *id == c));

    // A turn that only waited in line (never started) is resumed without counting a resume.
    let d = journal.accept(inbound("s", "d", "four")).await.unwrap().turn_id;
    journal.note_resumed(&[a, b, d], 5).await.unwrap();
    journal.start(a, 6).await.unwrap();
    journal.note_resumed(&[a, d], 7).await.unwrap();
    let counts: Vec<_> = journal
        .unfinished()
        .await
        .unwrap()
        .iter()
        .map(|t| (t.turn_id, t.state, t.resume_count))
        .collect();
    assert_eq!(
        counts,
        vec![
            (a, TurnState::Pending, 2),
            (b, TurnState::Pending, 1),
            (d, TurnState::Pending, 0)
        ]
    );
}

/// Paging walks a session back to its start, each page within its byte budget (but never empty), every
/// message exactly once and in order.
async fn history_pages_respect_the_byte_budget_and_cover_everything_once(store: Store) {
    let journal = store.open();
    let session = SessionKey::new("http", "big");
    for i in 0..20 {
        let text = format!("{i:02}{}", "x".repeat(998));
        let t = journal
            .accept(inbound("big", &format!("m{i}"), &text))
            .await
            .unwrap();
        journal
            .finish(t.turn_id, reply(&format!("a{i:02}")), 10)
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut before = None;
    let mut pages = 0;
    loop {
        let page = journal
            .history_page(
                &session,
                HistoryQuery {
                    limit: 1000,
                    before,
                    max_bytes: 3000,
                },
            )
            .await
            .unwrap();
        pages += 1;
        assert!(!page.messages.is_empty());
        let bytes: usize = page.messages.iter().map(|m| m.text.len()).sum();
        assert!(
            bytes <= 3000 || page.messages.len() == 1,
            "page {pages}: {bytes} bytes"
        );
        let mut texts: Vec<String> = page.messages.into_iter().map(|m| m.text).collect();
        texts.extend(seen);
        seen = texts;
        match page.older {
            Some(cursor) => before = Some(cursor),
            None => break,
        }
        assert!(pages < 100, "paging does not end");
    }
    let all: Vec<String> = journal
        .history(&session, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(seen, all, "every message once, in order");
    assert_eq!(all.len(), 40);
    assert!(pages >= 7, "{pages} pages for 20 kB of messages in 3 kB pages");
    // A message larger than the budget still comes, alone.
    let huge = journal
        .history_page(
            &session,
            HistoryQuery {
                limit: 10,
                before: None,
                max_bytes: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!(huge.messages.len(), 1);
    assert!(huge.older.is_some());
}

async fn history_is_bounded_and_sessions_are_listed_by_activity(store: Store) {
    let journal = store.open();
    for i in 0..10 {
        let t = journal
            .accept(Inbound {
                at_ms: 10 + i,
                ..inbound("busy", &format!("m{i}"), &format!("q{i}"))
            })
            .await
            .unwrap();
        journal
            .finish(t.turn_id, reply(&format!("a{i}")), 10 + i)
            .await
            .unwrap();
    }
    journal
        .accept(Inbound {
            at_ms: 5,
            ..inbound("quiet", "x", "old")
        })
        .await
        .unwrap();
    let last3: Vec<_> = journal
        .history(&SessionKey::new("http", "busy"), 3)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(last3, vec!["a8", "q9", "a9"]);
    assert!(
        journal
            .history(&SessionKey::new("http", "nobody"), 3)
            .await
            .unwrap()
            .is_empty()
    );

    let sessions = journal.sessions(10).await.unwrap();
    let names: Vec<_> = sessions
        .iter()
        .map(|s| (s.session.chat_id.as_str(), s.messages))
        .collect();
    assert_eq!(names, vec![("busy", 20), ("quiet", 1)]);
}

async fn concurrent_writes_share_commits_and_none_is_lost(store: Store) {
    let journal = std::sync::Arc::new(store.open());
    let mut tasks = Vec::new();
    for i in 0..200 {
        let journal = journal.clone();
        tasks.push(tokio::spawn(async move {
            let t = journal
                .accept(inbound(&format!("s{}", i % 7), &format!("m{i}"), "x"))
                .await
                .unwrap();
            journal.finish(t.turn_id, reply("y"), 2).await.unwrap();
            t.turn_id
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap());
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 200);
    drop(journal);
    let journal = store.open();
    assert!(journal.unfinished().await.unwrap().is_empty());
    let total: u64 = journal
        .sessions(100)
        .await
        .unwrap()
        .iter()
        .map(|s| s.messages)
        .sum();
    assert_eq!(total, 400);
}

#[test]
fn a_corrupt_file_is_moved_aside_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::write(
        &path,
        b"this is not an sqlite database, it is garbage ".repeat(200),
    )
    .unwrap();
    let (journal, report) = SqliteJournal::open(&path).unwrap();
    let (aside, reason) = report.moved_aside.expect("moved aside");
    assert!(report.created);
    assert!(reason.contains("not a database"), "{reason}");
    assert!(
        aside
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("state.db.corrupt-")
    );
    assert!(
        std::fs::read(&aside)
            .unwrap()
            .starts_with(b"this is not an sqlite")
    );
    assert!(journal.unfinished().wait().unwrap().is_empty());
}

#[test]
fn a_damaged_page_is_found_and_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let journal = open(&path);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            for i in 0..300 {
                journal
                    .accept(inbound(&format!("s{i}"), "m", &"padding ".repeat(50)))
                    .await
                    .unwrap();
            }
        });
    }
    // Scribble over the middle of the file (past the header), as a bad sector would.
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 40_000, "{}", bytes.len());
    for b in &mut bytes[20_000..28_000] {
        *b = 0xA5;
    }
    std::fs::write(&path, &bytes).unwrap();
    let (_journal, report) = SqliteJournal::open(&path).unwrap();
    assert!(report.moved_aside.is_some(), "{report:?}");
}

#[test]
fn a_newer_schema_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(open(&path));
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = SqliteJournal::open(&path).unwrap_err();
    assert!(matches!(err, OpenError::NewerSchema { .. }), "{err}");
    assert!(err.to_string().contains("newer than this herald"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_foreign_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE photos (id INTEGER PRIMARY KEY);")
            .unwrap();
    }
    let err = SqliteJournal::open(&path).unwrap_err();
    assert!(matches!(err, OpenError::Foreign { .. }), "{err}");
}

#[cfg(unix)]
#[test]
fn the_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(open(&path));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

/// A journal left readable by others (an older herald, a restored copy) is made private when opened, and
/// so are its `-wal` and `-shm` files.
#[cfg(unix)]
#[tokio::test]
async fn an_existing_journal_is_made_private_with_its_wal() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let journal = open(&path);
    journal.close().await.unwrap();
    drop(journal);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let wal = dir.path().join("state.db-wal");
    std::fs::write(&wal, b"").unwrap();
    for p in [&path, &wal] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let journal = open(&path);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&wal), 0o600);
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let p = entry.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    journal.close().await.unwrap();
}

async fn writes_after_close_fail_cleanly(store: Store) {
    let journal = store.open();
    journal.close().await.unwrap();
    let err = journal.accept(inbound("s", "m", "t")).await.unwrap_err();
    assert_eq!(err.kind, JournalErrorKind::Closed);
    assert!(journal.mark_interrupted(&[1], 1).await.is_err());
}

async fn replies_stay_undelivered_until_marked_and_offsets_only_move_forward(store: Store) {
    let journal = store.open();
    let tg = |chat: &str, id: &str, text: &str| Inbound {
        session: SessionKey::new("telegram", chat),
        ..inbound(chat, id, text)
    };
    let a = journal.accept(tg("42", "u1", "one")).await.unwrap();
    let b = journal.accept(tg("43", "u2", "two")).await.unwrap();
    let h = journal.accept(inbound("alice", "m1", "http")).await.unwrap();
    for (turn, text) in [(a.turn_id, "r1"), (b.turn_id, "r2"), (h.turn_id, "rh")] {
        journal.finish(turn, reply(text), 2_000).await.unwrap();
    }
    let pending = journal.undelivered("telegram", 10).await.unwrap();
    let got: Vec<_> = pending
        .iter()
        .map(|d| (d.turn_id, d.session.chat_id.as_str(), d.reply.text.as_str()))
        .collect();
    assert_eq!(got, vec![(a.turn_id, "42", "r1"), (b.turn_id, "43", "r2")]);
    assert_eq!(journal.undelivered("telegram", 1).await.unwrap().len(), 1);
    journal.mark_delivered(a.turn_id, 3_000).await.unwrap();
    assert_eq!(journal.undelivered("telegram", 10).await.unwrap().len(), 1);

    assert_eq!(journal.adapter_offset("telegram").await.unwrap(), None);
    journal.set_adapter_offset("telegram", 10, 1).await.unwrap();
    journal.set_adapter_offset("telegram", 7, 2).await.unwrap();
    assert_eq!(journal.adapter_offset("telegram").await.unwrap(), Some(10));
    drop(journal);

    // Both survive reopening.
    let journal = store.open();
    assert_eq!(journal.adapter_offset("telegram").await.unwrap(), Some(10));
    let pending = journal.undelivered("telegram", 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].turn_id, b.turn_id);
}

async fn close_waits_for_queued_work_and_later_calls_fail_as_closed(store: Store) {
    let journal = store.open();
    let turn = journal.accept(inbound("s", "m", "q")).await.unwrap();
    // Queued before the close, awaited after it: both are carried out.
    let finishing = journal.finish(turn.turn_id, reply("a"), 2);
    let listing = journal.sessions(10);
    journal.close().await.unwrap();
    finishing.await.unwrap();
    assert_eq!(listing.await.unwrap().len(), 1);

    let session = SessionKey::new("http", "s");
    let closed = |e: herald_gateway::journal::JournalError| e.kind == JournalErrorKind::Closed;
    assert!(closed(journal.history(&session, 10).await.unwrap_err()));
    assert!(closed(journal.unfinished().await.unwrap_err()));
    assert!(closed(journal.adapter_offset("telegram").await.unwrap_err()));
    assert!(closed(journal.start(turn.turn_id, 3).await.unwrap_err()));
    // Closing twice is harmless.
    journal.close().await.unwrap();
    drop(journal);

    let journal = store.open();
    assert_eq!(journal.history(&session, 10).await.unwrap().len(), 2);
}

async fn reads_run_off_the_async_threads_and_see_every_completed_write(store: Store) {
    let journal = std::sync::Arc::new(store.open());
    let mut tasks = Vec::new();
    for i in 0..50 {
        let journal = journal.clone();
        tasks.push(tokio::spawn(async move {
            let chat = format!("c{i}");
            let t = journal.accept(inbound(&chat, "m", "q")).await.unwrap();
            journal.finish(t.turn_id, reply("a"), 2).await.unwrap();
            journal
                .history(&SessionKey::new("http", chat), 10)
                .await
                .unwrap()
                .len()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 2);
    }
}

/// Callers without a runtime (tools, tests) wait for a result in place.
#[test]
fn a_pending_result_can_be_waited_for_outside_async_code() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(&dir.path().join("state.db"));
    let turn = journal.accept(inbound("s", "m", "q")).wait().unwrap();
    journal.finish(turn.turn_id, reply("a"), 2).wait().unwrap();
    assert_eq!(journal.sessions(10).wait().unwrap()[0].messages, 2);
}

fn failed(text: &str) -> Reply {
    Reply::text(text, true)
}

/// The (role, text) pairs an agent is given as the history of `turn_id`.
async fn context(journal: &dyn Journal, turn_id: i64) -> Vec<(Role, String)> {
    journal
        .context(turn_id, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.role, m.text))
        .collect()
}

async fn turns_are_numbered_per_session_and_a_retry_keeps_its_number(store: Store) {
    let journal = store.open();
    let a1 = journal.accept(inbound("a", "1", "x")).await.unwrap();
    let b1 = journal.accept(inbound("b", "1", "x")).await.unwrap();
    let a2 = journal.accept(inbound("a", "2", "y")).await.unwrap();
    let again = journal.accept(inbound("a", "1", "x")).await.unwrap();
    assert_eq!((a1.number, b1.number, a2.number), (1, 1, 2));
    assert_eq!((again.new, again.number), (false, 1));
    let unfinished: Vec<_> = journal
        .unfinished()
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.session.chat_id, t.number))
        .collect();
    assert_eq!(unfinished, [("a".into(), 1), ("b".into(), 1), ("a".into(), 2)]);
}

async fn an_agent_never_sees_failure_notices_nor_later_turns(store: Store) {
    let journal = store.open();
    let t1 = journal.accept(inbound("s", "1", "q1")).await.unwrap().turn_id;
    let t2 = journal.accept(inbound("s", "2", "q2")).await.unwrap().turn_id;
    let t3 = journal.accept(inbound("s", "3", "q3")).await.unwrap().turn_id;
    let t4 = journal.accept(inbound("s", "4", "q4")).await.unwrap().turn_id;
    // Stored out of order (turns run side by side): the context is still in turn order.
    journal
        .finish(t2, failed("Sorry, the agent failed"), 2)
        .await
        .unwrap();
    journal.finish(t1, reply("a1"), 3).await.unwrap();
    journal.finish(t4, reply("a4"), 4).await.unwrap();
    assert_eq!(context(&*journal, t1).await, []);
    assert_eq!(
        context(&*journal, t3).await,
        [
            (Role::User, "q1".to_owned()),
            (Role::Assistant, "a1".to_owned()),
            (Role::User, "q2".to_owned()),
        ]
    );
    // People still see the apology, marked failed.
    let history = journal.history(&SessionKey::new("http", "s"), 100).await.unwrap();
    assert!(
        history
            .iter()
            .any(|m| m.text == "Sorry, the agent failed" && m.status == TurnState::Failed)
    );
    // The limit keeps the most recent messages.
    let last_two: Vec<_> = journal
        .context(t4, 2)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(last_two, ["q2", "q3"]);
}

async fn a_reset_starts_a_new_conversation_and_keeps_the_old_one(store: Store) {
    let session = SessionKey::new("http", "s");
    // An unknown session is fresh already; nothing is stored for it.
    let unknown = journal_reset(&*store.open(), "s").await;
    assert_eq!((unknown.number, unknown.started), (1, false));
    let journal = store.open();
    assert!(journal.sessions(10).await.unwrap().is_empty());

    let t1 = journal.accept(inbound("s", "1", "before")).await.unwrap().turn_id;
    journal.finish(t1, reply("old answer"), 2).await.unwrap();
    let reset = journal.reset(&session, 3).await.unwrap();
    assert_eq!((reset.number, reset.started), (2, true));
    // A second reset with nothing said since changes nothing (a retried `--new`).
    let again = journal.reset(&session, 4).await.unwrap();
    assert_eq!((again.number, again.started), (2, false));

    let t2 = journal.accept(inbound("s", "2", "after")).await.unwrap();
    assert_eq!(t2.number, 2, "turn numbers run on across conversations");
    assert_eq!(context(&*journal, t2.turn_id).await, []);
    journal.finish(t2.turn_id, reply("new answer"), 5).await.unwrap();
    let t3 = journal.accept(inbound("s", "3", "third")).await.unwrap();
    assert_eq!(
        context(&*journal, t3.turn_id).await,
        [
            (Role::User, "after".to_owned()),
            (Role::Assistant, "new answer".to_owned())
        ]
    );
    drop(journal);

    // Durable, and the whole history stays listed, each message with its conversation.
    let journal = store.open();
    let page = journal
        .history_page(
            &session,
            HistoryQuery {
                limit: 100,
                before: None,
                max_bytes: usize::MAX,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.conversation, 2);
    let listed: Vec<_> = page
        .messages
        .iter()
        .map(|m| (m.turn, m.conversation, m.text.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            (1, 1, "before"),
            (1, 1, "old answer"),
            (2, 2, "after"),
            (2, 2, "new answer"),
            (3, 2, "third"),
        ]
    );
    assert_eq!(journal.sessions(10).await.unwrap()[0].conversation, 2);
}

async fn journal_reset(journal: &dyn Journal, chat: &str) -> herald_gateway::journal::Conversation {
    journal.reset(&SessionKey::new("http", chat), 1).await.unwrap()
}

async fn a_cancelled_turn_is_final_silent_and_shown_as_cancelled(store: Store) {
    let journal = store.open();
    let turn = journal.accept(inbound("alice", "m1", "long job")).await.unwrap();
    journal.start(turn.turn_id, 1_001);
    assert!(journal.cancel(turn.turn_id, "Stopped.", 1_002).await.unwrap());
    // Exactly once: a second cancel, or a late reply, changes nothing.
    assert!(
        !journal
            .cancel(turn.turn_id, "Stopped again.", 1_003)
            .await
            .unwrap()
    );
    journal
        .finish(turn.turn_id, reply("late answer"), 1_004)
        .await
        .unwrap();
    assert!(journal.unfinished().await.unwrap().is_empty());
    assert!(
        journal.undelivered("http", 10).await.unwrap().is_empty(),
        "never sent"
    );
    let history = journal
        .history(&SessionKey::new("http", "alice"), 10)
        .await
        .unwrap();
    let shown: Vec<_> = history.iter().map(|m| (m.text.as_str(), m.status)).collect();
    assert_eq!(
        shown,
        [
            ("long job", TurnState::Cancelled),
            ("Stopped.", TurnState::Cancelled)
        ]
    );
    // Its notice is never an agent's context.
    let next = journal.accept(inbound("alice", "m2", "next")).await.unwrap();
    let context = journal.context(next.turn_id, 10).await.unwrap();
    assert_eq!(context.len(), 1, "only the question: {context:?}");
    assert_eq!(context[0].role, Role::User);
    // A final turn cannot be cancelled.
    journal.finish(next.turn_id, reply("done"), 1_005).await.unwrap();
    assert!(!journal.cancel(next.turn_id, "Stopped.", 1_006).await.unwrap());
}

async fn a_command_message_runs_once_and_a_new_conversation_starts_with_its_claim(store: Store) {
    let session = SessionKey::new("telegram", "42");
    {
        let journal = store.open();
        let turn = journal.accept(Inbound {
            session: session.clone(),
            ..inbound("42", "u1-m1", "hello")
        });
        turn.await.unwrap();
        let claim = journal
            .claim_command(&session, "u2-m2", "new", true, 2)
            .await
            .unwrap();
        assert!(claim.first);
        assert_eq!(claim.conversation.map(|c| (c.number, c.started)), Some((2, true)));
        let stop = journal
            .claim_command(&session, "u3-m3", "stop", false, 3)
            .await
            .unwrap();
        assert!(stop.first && stop.conversation.is_none());
        journal.close().await.unwrap();
    }
    // After a restart the same messages are known: nothing runs twice, the conversation stays 2.
    let journal = store.open();
    let again = journal
        .claim_command(&session, "u2-m2", "new", true, 4)
        .await
        .unwrap();
    assert!(!again.first);
    assert_eq!(again.conversation, None);
    assert!(
        !journal
            .claim_command(&session, "u3-m3", "stop", false, 5)
            .await
            .unwrap()
            .first
    );
    let sessions = journal.sessions(10).await.unwrap();
    assert_eq!(sessions[0].conversation, 2);
}

async fn a_replys_files_are_kept_with_it_for_delivery_and_for_a_retried_message(store: Store) {
    let journal = store.open();
    let message = Inbound {
        session: SessionKey::new("telegram", "42"),
        ..inbound("42", "u1", "draw it")
    };
    let turn = journal.accept(message.clone()).await.unwrap();
    let chart = herald_gateway::agent::Attachment {
        kind: "photo".into(),
        path: "/home/media/out/1/chart.png".into(),
        mime: "image/png".into(),
        name: Some("chart.png".into()),
        size: 123,
    };
    let answer = Reply {
        files: vec![chart.clone()],
        ..reply("here")
    };
    journal.finish(turn.turn_id, answer.clone(), 2_000).await.unwrap();
    drop(journal);

    let journal = store.open();
    let pending = journal.undelivered("telegram", 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        pending[0].reply, answer,
        "the files come back with the reply after a restart"
    );
    let again = journal.accept(message).await.unwrap();
    assert!(!again.new);
    assert_eq!(again.reply, Some(answer), "a retried message gets the files too");
}

async fn a_reply_set_aside_is_listed_not_redelivered_until_taken_back(store: Store) {
    let journal = store.open();
    let hook = |id: &str| Inbound {
        session: SessionKey::new("webhook", "n8n:s1"),
        ..inbound("n8n:s1", id, "ping")
    };
    let a = journal.accept(hook("w1")).await.unwrap();
    let b = journal.accept(hook("w2")).await.unwrap();
    journal.finish(a.turn_id, reply("pong 1"), 2_000).await.unwrap();
    journal.finish(b.turn_id, reply("pong 2"), 2_100).await.unwrap();
    journal
        .fail_delivery(a.turn_id, "HTTP 500 for 24 h", 9_000)
        .await
        .unwrap();
    drop(journal);

    let journal = store.open();
    let pending = journal.undelivered("webhook", 10).await.unwrap();
    assert_eq!(pending.len(), 1, "the reply set aside is not handed out again");
    assert_eq!((pending[0].turn_id, pending[0].at_ms), (b.turn_id, 2_100));
    let failed = journal.failed_deliveries(10).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        (
            failed[0].turn_id,
            failed[0].chat_id.as_str(),
            failed[0].message_id.as_str()
        ),
        (a.turn_id, "n8n:s1", "w1")
    );
    assert_eq!(
        (failed[0].error.as_str(), failed[0].failed_ms, failed[0].at_ms),
        ("HTTP 500 for 24 h", 9_000, 2_000)
    );

    let back = journal
        .retry_delivery(a.turn_id)
        .await
        .unwrap()
        .expect("set aside");
    assert_eq!(
        (back.turn_id, back.reply.text.as_str(), back.message_id.as_str()),
        (a.turn_id, "pong 1", "w1")
    );
    assert!(journal.failed_deliveries(10).await.unwrap().is_empty());
    assert_eq!(journal.undelivered("webhook", 10).await.unwrap().len(), 2);
    assert_eq!(
        journal.retry_delivery(a.turn_id).await.unwrap(),
        None,
        "not set aside any more"
    );
    // A reply already delivered cannot be set aside.
    journal.mark_delivered(b.turn_id, 3_000).await.unwrap();
    journal.fail_delivery(b.turn_id, "late", 9_500).await.unwrap();
    assert!(journal.failed_deliveries(10).await.unwrap().is_empty());
}

/// Each contract test, once per backend: `sqlite::NAME` and `postgres::NAME`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Store::sqlite()).await
                }
            )*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(store) = super::Store::postgres().await else { return };
                    super::$name(store).await
                }
            )*
        }
    };
}

on_both_backends!(
    a_message_id_makes_one_turn_and_a_turn_gets_one_reply,
    unfinished_turns_survive_reopening_and_count_their_resumes,
    history_pages_respect_the_byte_budget_and_cover_everything_once,
    history_is_bounded_and_sessions_are_listed_by_activity,
    concurrent_writes_share_commits_and_none_is_lost,
    writes_after_close_fail_cleanly,
    replies_stay_undelivered_until_marked_and_offsets_only_move_forward,
    close_waits_for_queued_work_and_later_calls_fail_as_closed,
    reads_run_off_the_async_threads_and_see_every_completed_write,
    turns_are_numbered_per_session_and_a_retry_keeps_its_number,
    an_agent_never_sees_failure_notices_nor_later_turns,
    a_reset_starts_a_new_conversation_and_keeps_the_old_one,
    a_cancelled_turn_is_final_silent_and_shown_as_cancelled,
    a_command_message_runs_once_and_a_new_conversation_starts_with_its_claim,
    a_replys_files_are_kept_with_it_for_delivery_and_for_a_retried_message,
    a_reply_set_aside_is_listed_not_redelivered_until_taken_back,
);

/// What is PostgreSQL's own: its schema check, its URL, its connection.
#[cfg(feature = "postgres")]
mod postgres_only {
    use super::*;
    use crate::support::TestDatabase;
    use herald_gateway::journal::AdapterStore;
    use herald_journal::postgres::ReplicaOptions;
    use herald_journal::{PG_SCHEMA_VERSION, PgJournal, PgOpenError, PgOptions};
    use std::time::Duration;

    fn inbound_on(adapter: &str, chat: &str, id: &str) -> Inbound {
        Inbound {
            session: SessionKey::new(adapter, chat),
            ..inbound(chat, id, "q")
        }
    }

    #[tokio::test]
    async fn a_fresh_database_gets_the_tables_once_and_a_newer_schema_is_refused_untouched() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let (journal, report) = PgJournal::open(&db.options()).unwrap();
        assert!(report.created && report.migrated_from.is_none(), "{report:?}");
        journal.accept(inbound("s", "m", "kept")).await.unwrap();
        drop(journal);
        let (_journal, report) = PgJournal::open(&db.options()).unwrap();
        assert!(!report.created && report.migrated_from.is_none(), "{report:?}");

        let client = db.connect().await;
        client
            .execute(
                "UPDATE herald_journal SET schema_version = $1",
                &[&(PG_SCHEMA_VERSION as i32 + 1)],
            )
            .await
            .unwrap();
        let err = PgJournal::open(&db.options()).unwrap_err();
        assert!(matches!(err, PgOpenError::NewerSchema { .. }), "{err}");
        assert!(err.to_string().contains("newer than this herald"), "{err}");
        let texts: i64 = client
            .query_one("SELECT count(*) FROM messages WHERE text = 'kept'", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(texts, 1, "left alone");
    }

    /// Writes issued together share a commit; one the database refuses (a NUL character, which
    /// PostgreSQL text cannot hold) fails alone, as what it is, and the others are stored.
    #[tokio::test]
    async fn a_refused_write_fails_alone_and_its_batch_is_stored() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let (journal, _) = PgJournal::open(&db.options()).unwrap();
        let pending: Vec<_> = (0..20)
            .map(|i| {
                let text = if i == 7 {
                    "bad \0 text".to_owned()
                } else {
                    format!("fine {i}")
                };
                journal.accept(inbound(&format!("c{}", i % 3), &format!("m{i}"), &text))
            })
            .collect();
        let mut stored = 0;
        for (i, result) in futures_join(pending).await.into_iter().enumerate() {
            match result {
                Ok(accepted) => {
                    assert!(accepted.new);
                    stored += 1;
                }
                Err(e) => {
                    assert_eq!(i, 7, "{e}");
                    assert_eq!(e.kind, JournalErrorKind::Unstorable, "{e}");
                    assert!(e.message.contains("cannot store this text"), "{e}");
                }
            }
        }
        assert_eq!(stored, 19);
        assert_eq!(journal.unfinished().await.unwrap().len(), 19);
        // The store stays healthy and numbering has no gap.
        let next = journal.accept(inbound("c1", "m-last", "later")).await.unwrap();
        assert_eq!(next.number, 7, "c1 had 6 fine turns before it");
    }

    async fn futures_join<T>(
        pending: Vec<herald_gateway::journal::Pending<T>>,
    ) -> Vec<Result<T, herald_gateway::journal::JournalError>> {
        let mut out = Vec::new();
        for p in pending {
            out.push(p.await);
        }
        out
    }

    #[tokio::test]
    async fn a_database_with_someone_elses_tables_is_refused() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        db.connect()
            .await
            .batch_execute("CREATE TABLE sessions (id INTEGER PRIMARY KEY, cookie TEXT)")
            .await
            .unwrap();
        let err = PgJournal::open(&db.options()).unwrap_err();
        assert!(matches!(err, PgOpenError::Foreign { .. }), "{err}");
        assert!(err.to_string().contains("not a Herald journal"), "{err}");
    }

    /// A replica of its own on `db`, with a `ttl_ms` lease.
    fn replica(db: &TestDatabase, ttl_ms: u64) -> PgJournal {
        let options = db.options().with_replica(ReplicaOptions {
            name: "test".into(),
            lease_ttl: Duration::from_millis(ttl_ms),
        });
        PgJournal::open(&options).unwrap().0
    }

    /// Ends `journal`'s lease in the database (as a pause past it would): the others may take its turns.
    async fn expire(db: &TestDatabase, journal: &PgJournal) {
        db.connect()
            .await
            .execute(
                "UPDATE herald_replicas SET lease_until = now() - interval '1 second' WHERE id = $1",
                &[&journal.replica_id()],
            )
            .await
            .unwrap();
    }

    fn cluster(journal: &PgJournal) -> std::sync::Arc<dyn herald_gateway::cluster::Cluster> {
        herald_gateway::journal::Journal::cluster(journal).unwrap()
    }

    fn http(id: &str) -> Inbound {
        inbound("s", id, "q")
    }

    /// Gateways starting together on an empty database: the schema is made once and all of them run
    /// as replicas, a message id is one turn across them, and a stopped replica's turns are taken at
    /// once by the next.
    #[tokio::test]
    async fn replicas_open_one_database_together_and_share_it() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let options = db.options();
        let opened: Vec<PgJournal> = (0..4)
            .map(|_| {
                let options = options.clone();
                std::thread::spawn(move || PgJournal::open(&options))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap().unwrap().0)
            .collect();
        opened[0].accept(inbound("s", "m", "q")).await.unwrap();
        let again = opened[1].accept(inbound("s", "m", "q")).await.unwrap();
        assert!(!again.new, "a message id is one turn across replicas");
        // Reads of tools take nothing.
        let report =
            tokio::task::spawn_blocking(move || herald_journal::postgres::delivery_report(&options, 10))
                .await
                .unwrap()
                .unwrap();
        assert!(report.failed.is_empty());
        // Closed, its turns are free for the next gateway at once (no lease to wait for).
        let mut opened = opened;
        opened.remove(0).close().await.unwrap();
        let next = replica(&db, 10_000);
        assert_eq!(next.unfinished().await.unwrap().len(), 1);
    }

    /// A push adapter's lease: one holder at a time; a holder whose lease ran out is replaced under the
    /// next fence, its cursor commits and delivery marks are refused and counted, and it learns that it
    /// was replaced. A holder that stops hands the lease over at once.
    #[tokio::test]
    async fn a_push_adapters_lease_has_one_holder_and_fences_the_one_it_replaced() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let (old, other) = (replica(&db, 3_000), replica(&db, 10_000));
        assert!(cluster(&old).take_lease("telegram").await.unwrap());
        assert!(
            !cluster(&other).take_lease("telegram").await.unwrap(),
            "one holder"
        );
        old.set_adapter_offset("telegram", 5, 1).await.unwrap();
        let turn = old
            .accept(inbound_on("telegram", "c", "u1"))
            .await
            .unwrap()
            .turn_id;
        old.finish(turn, reply("a"), 2).await.unwrap();
        // Its lease runs out (as if it had been paused): the other takes it, under the next fence.
        let admin = db.connect().await;
        admin
            .execute(
                "UPDATE herald_leases SET expires_at = now() - interval '1 second'",
                &[],
            )
            .await
            .unwrap();
        assert!(cluster(&other).take_lease("telegram").await.unwrap());
        assert!(cluster(&other).leads("telegram"));
        // The old holder's cursor commit and delivery mark are refused, and counted; the new one's pass.
        let stale = old.set_adapter_offset("telegram", 9, 3).await.unwrap_err();
        assert_eq!(stale.kind, JournalErrorKind::Fenced, "{stale}");
        let stale = old.mark_delivered(turn, 4).await.unwrap_err();
        assert_eq!(stale.kind, JournalErrorKind::Fenced, "{stale}");
        assert_eq!(other.adapter_offset("telegram").await.unwrap(), Some(5));
        other.set_adapter_offset("telegram", 7, 5).await.unwrap();
        other.mark_delivered(turn, 6).await.unwrap();
        let counted: i64 = admin
            .query_one(
                "SELECT stale_writes FROM herald_leases WHERE name = 'telegram'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(counted, 2);
        // HTTP writes need no lease.
        let http_turn = old.accept(http("h")).await.unwrap().turn_id;
        old.finish(http_turn, reply("a"), 7).await.unwrap();
        old.mark_delivered(http_turn, 8).await.unwrap();
        // Its next renewal finds the lease gone: it stops.
        let mut lost = cluster(&old).lost();
        tokio::time::timeout(Duration::from_secs(5), lost.wait_for(Option::is_some))
            .await
            .expect("the old holder learns it was replaced")
            .unwrap();
        assert!(lost.borrow().as_deref().unwrap().contains("telegram"));
        // A holder that stops hands the lease over at once.
        other.close().await.unwrap();
        let third = replica(&db, 10_000);
        assert!(cluster(&third).take_lease("telegram").await.unwrap());
        let view = tokio::time::timeout(Duration::from_secs(10), async {
            let mut view = cluster(&third).view();
            view.wait_for(|v| {
                v.as_ref()
                    .is_some_and(|v| v.replicas.iter().any(|r| r.me && !r.adapters.is_empty()))
            })
            .await
            .unwrap()
            .clone()
            .unwrap()
        })
        .await
        .unwrap();
        let me = view.replicas.iter().find(|r| r.me).unwrap();
        assert_eq!(me.adapters, ["telegram"]);
    }

    /// A replica whose lease ran out loses its turns to the live replicas, each turn to exactly one of
    /// them, and only for the adapters they serve; its late reply and its new messages are refused,
    /// and it learns that it was replaced.
    #[tokio::test]
    async fn a_dead_replicas_turns_are_adopted_once_and_its_late_writes_are_fenced() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let old = replica(&db, 3_000);
        let mut ids = Vec::new();
        for i in 0..40 {
            ids.push(old.accept(http(&format!("m{i}"))).await.unwrap().turn_id);
        }
        let chat = old
            .accept(inbound_on("telegram", "c", "t1"))
            .await
            .unwrap()
            .turn_id;
        let lost = cluster(&old).lost();
        // Its lease runs out (as if it had been paused): the others may take its turns.
        expire(&db, &old).await;
        let (a, b) = (replica(&db, 10_000), replica(&db, 10_000));
        let adapters = vec!["http".to_owned()];
        let (took_a, took_b) = tokio::join!(a.adopt(&adapters), b.adopt(&adapters));
        let (took_a, took_b) = (took_a.unwrap(), took_b.unwrap());
        let mut taken: Vec<i64> = took_a.iter().chain(&took_b).map(|t| t.turn_id).collect();
        taken.sort_unstable();
        assert_eq!(taken, ids, "every turn adopted, each by one replica");
        assert!(
            !taken.contains(&chat),
            "a Telegram turn waits for a replica that runs Telegram"
        );
        // The old replica's reply and message are refused; a live owner's reply is stored.
        let late = old.finish(ids[0], reply("late"), 9).await.unwrap_err();
        assert_eq!(late.kind, JournalErrorKind::Fenced, "{late}");
        let new = old.accept(http("after")).await.unwrap_err();
        assert_eq!(new.kind, JournalErrorKind::Fenced, "{new}");
        let owner = if took_a.iter().any(|t| t.turn_id == ids[0]) {
            &a
        } else {
            &b
        };
        owner.finish(ids[0], reply("a"), 10).await.unwrap();
        let history = owner.history(&SessionKey::new("http", "s"), 100).await.unwrap();
        assert_eq!(history.iter().filter(|m| m.role == Role::Assistant).count(), 1);
        // Its next renewal finds it replaced.
        let mut lost = lost;
        tokio::time::timeout(Duration::from_secs(5), lost.wait_for(Option::is_some))
            .await
            .expect("the old replica learns it was replaced")
            .unwrap();
        // A replica that runs Telegram takes the Telegram turn.
        let chat_replica = replica(&db, 10_000);
        let took = chat_replica.adopt(&["telegram".to_owned()]).await.unwrap();
        assert_eq!(took.iter().map(|t| t.turn_id).collect::<Vec<_>>(), vec![chat]);
    }

    /// The unsent replies of an adapter every replica runs (webhook callbacks) are their turn's owner's
    /// to send: nobody else gets them while it lives. Once it is gone, each is claimed by exactly one
    /// replica; a claimer that stops passes on those it did not send.
    #[tokio::test]
    async fn unsent_replies_are_claimed_from_replicas_that_are_gone_each_once() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let old = replica(&db, 3_000);
        let mut ids = Vec::new();
        for i in 0..30 {
            let turn = old
                .accept(inbound_on("webhook", "w", &format!("m{i}")))
                .await
                .unwrap()
                .turn_id;
            old.finish(turn, reply("r"), 2).await.unwrap();
            ids.push(turn);
        }
        let sent = old
            .accept(inbound_on("webhook", "w", "sent"))
            .await
            .unwrap()
            .turn_id;
        old.finish(sent, reply("r"), 2).await.unwrap();
        old.mark_delivered(sent, 3).await.unwrap();
        let (a, b) = (replica(&db, 10_000), replica(&db, 10_000));
        // The owner lives (and is sending them): nothing for anyone else.
        assert!(a.claim_undelivered("webhook", 100).await.unwrap().is_empty());
        assert_eq!(old.undelivered("webhook", 100).await.unwrap().len(), ids.len());
        // Gone: its lease ran out and an adoption removed it from the registry.
        expire(&db, &old).await;
        a.adopt(&["http".to_owned()]).await.unwrap();
        let (by_a, by_b) = tokio::join!(
            a.claim_undelivered("webhook", 100),
            b.claim_undelivered("webhook", 100)
        );
        let (by_a, by_b) = (by_a.unwrap(), by_b.unwrap());
        let mut claimed: Vec<i64> = by_a.iter().chain(&by_b).map(|d| d.turn_id).collect();
        claimed.sort_unstable();
        assert_eq!(
            claimed, ids,
            "every unsent reply claimed, each once, never the sent one"
        );
        let one = by_a.first().or(by_b.first()).unwrap();
        assert_eq!(one.session, SessionKey::new("webhook", "w"));
        assert_eq!(one.reply.text, "r");
        assert!(a.claim_undelivered("webhook", 100).await.unwrap().is_empty());
        assert!(b.claim_undelivered("webhook", 100).await.unwrap().is_empty());
        // `a` sends one of its own and stops: what it did not send goes to `b`.
        let mut left: Vec<i64> = by_a.iter().map(|d| d.turn_id).collect();
        if let Some(first) = left.first().copied() {
            a.mark_delivered(first, 4).await.unwrap();
            left.remove(0);
        }
        a.close().await.unwrap();
        let mut passed: Vec<i64> = b
            .claim_undelivered("webhook", 100)
            .await
            .unwrap()
            .iter()
            .map(|d| d.turn_id)
            .collect();
        passed.sort_unstable();
        left.sort_unstable();
        assert_eq!(passed, left);
    }

    /// A database at schema version 2 (the replicas, before the claims of unsent replies) is migrated
    /// to this build's, keeping what it holds.
    #[tokio::test]
    async fn a_version_2_database_is_migrated_and_keeps_its_turns() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let (journal, _) = PgJournal::open(&db.options()).unwrap();
        journal.accept(inbound("s", "m", "kept")).await.unwrap();
        journal.close().await.unwrap();
        drop(journal);
        // Version 3 only added herald_claim_replies: without it, this is a version 2 database.
        let client = db.connect().await;
        client
            .batch_execute(
                "DROP FUNCTION herald_claim_replies(BIGINT, TEXT, BIGINT);
                 UPDATE herald_journal SET schema_version = 2;",
            )
            .await
            .unwrap();
        let (journal, report) = PgJournal::open(&db.options()).unwrap();
        assert_eq!(report.migrated_from, Some(2), "{report:?}");
        assert_eq!(PG_SCHEMA_VERSION, 3);
        let version: i32 = client
            .query_one("SELECT schema_version FROM herald_journal", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(version, 3);
        let history = journal.history(&SessionKey::new("http", "s"), 10).await.unwrap();
        assert!(history.iter().any(|m| m.text == "kept"), "{history:?}");
        assert!(journal.claim_undelivered("webhook", 10).await.unwrap().is_empty());
    }

    /// A replica whose lease ran out while nobody took its turns (a pause, an outage with no other
    /// replica) keeps them: its renewal finds its row and carries on.
    #[tokio::test]
    async fn a_replica_back_before_anyone_took_its_turns_keeps_them() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let journal = replica(&db, 3_000);
        let turn = journal.accept(http("m")).await.unwrap().turn_id;
        expire(&db, &journal).await;
        let cluster = cluster(&journal);
        let mut view = cluster.view();
        tokio::time::timeout(
            Duration::from_secs(5),
            view.wait_for(|v| v.as_ref().is_some_and(|v| v.replicas.iter().all(|r| r.alive))),
        )
        .await
        .expect("renewed")
        .unwrap();
        assert!(cluster.lost().borrow().is_none());
        assert!(cluster.holds_lease());
        assert_eq!(view.borrow().as_ref().unwrap().replicas[0].turns, 1);
        journal.finish(turn, reply("a"), 5).await.unwrap();
        let view = tokio::time::timeout(
            Duration::from_secs(5),
            view.wait_for(|v| v.as_ref().is_some_and(|v| v.replicas[0].turns == 0)),
        )
        .await
        .expect("the view follows")
        .unwrap()
        .clone()
        .unwrap();
        assert_eq!(view.replicas.len(), 1);
        assert!(view.replicas[0].me);
    }

    #[tokio::test]
    async fn a_wrong_password_is_a_clear_error_that_never_shows_a_password() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let options = PgOptions::new(&db.url(), Some("not-the-password-x9"), None).unwrap();
        let err = PgJournal::open(&options).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, PgOpenError::Connect { .. }), "{text}");
        assert!(text.contains(&db.url()) && text.contains("password"), "{text}");
        assert!(
            !text.contains("not-the-password-x9") && !text.contains(db.password()),
            "{text}"
        );
        assert!(!format!("{options:?}").contains("not-the-password-x9"));
        // A URL with a password in it is refused before anything is tried.
        let err = PgOptions::new("postgres://herald:secret@127.0.0.1:1/db", None, None).unwrap_err();
        assert!(err.to_string().contains("password_env"), "{err}");
    }

    #[test]
    fn nothing_listening_is_a_clear_error_after_the_open_patience() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let options =
            PgOptions::new(&format!("postgres://herald@127.0.0.1:{port}/herald"), None, None).unwrap();
        let started = std::time::Instant::now();
        let err = PgJournal::open(&options).unwrap_err();
        assert!(matches!(err, PgOpenError::Connect { .. }), "{err}");
        assert!(err.to_string().contains("cannot connect"), "{err}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }

    /// Tools without a runtime open it and wait in place, as with SQLite.
    #[test]
    fn a_pending_result_can_be_waited_for_outside_async_code() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let Some(db) = runtime.block_on(TestDatabase::create()) else {
            return;
        };
        let (journal, _) = PgJournal::open(&db.options()).unwrap();
        let turn = journal.accept(inbound("s", "m", "q")).wait().unwrap();
        journal.finish(turn.turn_id, reply("a"), 2).wait().unwrap();
        assert_eq!(journal.sessions(10).wait().unwrap()[0].messages, 2);
        drop(journal);
        drop(runtime);
    }

    /// PostgreSQL restarted (`pg_ctl restart -m fast`) under load, on a cluster of this test's own: every
    /// accept that was answered "stored" is there afterwards, a write the restart cut is either retried by
    /// the journal or answered as a storage failure (and a retry under the same id then stores it once),
    /// and the journal's health shows the outage and its end.
    // The cluster is started by a shell script: not from a Windows test binary under Wine.
    #[cfg(unix)]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_restart_under_load_loses_no_acknowledged_message() {
        let Some(cluster) = crate::support::PrivateCluster::start() else {
            return;
        };
        let options = PgOptions::new(&cluster.url, Some(&cluster.password), None).unwrap();
        let journal = std::sync::Arc::new(PgJournal::open(&options).unwrap().0);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..8 {
            let (journal, stop) = (journal.clone(), stop.clone());
            writers.push(tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                let mut failures = 0u32;
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let id = format!("w{w}-{i}");
                    // A failed accept is retried with the same id, as a client does.
                    loop {
                        match journal.accept(inbound(&format!("c{w}"), &id, &id)).await {
                            Ok(accepted) => {
                                acknowledged.push((id.clone(), accepted.turn_id));
                                break;
                            }
                            Err(e) => {
                                assert_eq!(e.kind, JournalErrorKind::Storage, "{e}");
                                failures += 1;
                                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            }
                        }
                    }
                    i += 1;
                }
                (acknowledged, failures)
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        cluster.pg_ctl(&["restart", "-m", "fast", "-w"]);
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut acknowledged = Vec::new();
        let mut failures = 0;
        for writer in writers {
            let (mut acks, failed) = writer.await.unwrap();
            acknowledged.append(&mut acks);
            failures += failed;
        }
        eprintln!(
            "{} accepted, {failures} answered as failed and retried",
            acknowledged.len()
        );
        assert!(acknowledged.len() > 50, "{} accepted", acknowledged.len());
        assert!(
            journal.health().outage().is_none(),
            "{:?}",
            journal.health().outage()
        );
        assert!(journal.health().outages() >= 1, "the restart was seen");
        // Every acknowledged message is stored, once, under the turn it was acknowledged with.
        let client = cluster.connect().await;
        let rows = client
            .query("SELECT t.message_id, t.id FROM turns t", &[])
            .await
            .unwrap();
        let stored: std::collections::HashMap<String, i64> =
            rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        for (id, turn) in &acknowledged {
            assert_eq!(stored.get(id), Some(turn), "{id}");
        }
        assert_eq!(
            stored.len(),
            acknowledged.len(),
            "nothing stored twice nor unacknowledged"
        );
        let messages: i64 = client
            .query_one("SELECT count(*) FROM messages", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(messages as usize, acknowledged.len());
    }
}
