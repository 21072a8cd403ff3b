//! Opening `state.db`: recognise it, move a corrupt one aside, migrate an old one, refuse a newer one.
//!
//! **Invariant:** a file is only ever modified once it is known to be a Herald journal of a version this
//! build understands. A corrupt file is renamed (with its `-wal` and `-shm` companions), never deleted,
//! so a person can still recover from it; a newer schema or a foreign database is refused with a message
//! saying what to do, and left untouched.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, OpenFlags};

/// `PRAGMA application_id`: "HRLD". Tells a Herald journal from any other SQLite file.
pub const APPLICATION_ID: i32 = 0x4852_4c44;

/// Each entry migrates from version `index` to `index + 1`. Never edit a released entry; append.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 0 → 1: sessions, turns, messages.
    r"
    CREATE TABLE sessions (
        id          INTEGER PRIMARY KEY,
        adapter     TEXT NOT NULL,
        chat_id     TEXT NOT NULL,
        created_ms  INTEGER NOT NULL,
        updated_ms  INTEGER NOT NULL,
        UNIQUE (adapter, chat_id)
    );
    CREATE INDEX sessions_by_activity ON sessions (updated_ms DESC);
    CREATE TABLE turns (
        id            INTEGER PRIMARY KEY,
        session_id    INTEGER NOT NULL REFERENCES sessions (id),
        message_id    TEXT NOT NULL,
        state         TEXT NOT NULL
                      CHECK (state IN ('pending', 'running', 'done', 'failed', 'interrupted')),
        resume_count  INTEGER NOT NULL DEFAULT 0,
        created_ms    INTEGER NOT NULL,
        updated_ms    INTEGER NOT NULL,
        UNIQUE (session_id, message_id)
    );
    CREATE INDEX turns_unfinished ON turns (id) WHERE state IN ('pending', 'running', 'interrupted');
    CREATE TABLE messages (
        id          INTEGER PRIMARY KEY,
        session_id  INTEGER NOT NULL REFERENCES sessions (id),
        turn_id     INTEGER NOT NULL REFERENCES turns (id),
        role        TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
        text        TEXT NOT NULL,
        failed      INTEGER NOT NULL DEFAULT 0,
        created_ms  INTEGER NOT NULL
    );
    CREATE INDEX messages_by_session ON messages (session_id, id);
    -- A turn has at most one reply: the store itself refuses a second.
    CREATE UNIQUE INDEX one_reply_per_turn ON messages (turn_id) WHERE role = 'assistant';
    ",
    // 1 → 2: push adapters. A reply's delivery mark (replies a push adapter has not yet handed to its
    // chat are re-sent at startup), and each adapter's confirmed update offset. Replies stored before
    // this version count as delivered: their adapter (HTTP) showed them when asked.
    r"
    ALTER TABLE messages ADD COLUMN delivered_ms INTEGER;
    UPDATE messages SET delivered_ms = created_ms WHERE role = 'assistant';
    CREATE INDEX undelivered_replies ON messages (session_id, id)
        WHERE role = 'assistant' AND delivered_ms IS NULL;
    CREATE TABLE adapter_offsets (
        adapter     TEXT PRIMARY KEY,
        next_update INTEGER NOT NULL,
        updated_ms  INTEGER NOT NULL
    );
    ",
    // 2 → 3: conversations. Each session numbers its turns 1, 2, 3… (`turns.number`; the turns already
    // stored are numbered here, in the order they were stored), and a reset starts the session's next
    // conversation (`sessions.conversation`, copied to each turn it takes): an agent is shown only its
    // turn's conversation, read turn by turn (newest first, so a long conversation costs only the
    // messages shown). Everything stored so far is conversation 1. Failure notices need nothing:
    // they have been stored as such (`messages.failed`) since version 1.
    r"
    ALTER TABLE sessions ADD COLUMN conversation INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE turns ADD COLUMN number INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE turns ADD COLUMN conversation INTEGER NOT NULL DEFAULT 1;
    UPDATE turns SET number = numbered.number
        FROM (SELECT id, row_number() OVER (PARTITION BY session_id ORDER BY id) AS number FROM turns)
             AS numbered
        WHERE turns.id = numbered.id;
    -- Each session counts its turns: a new turn's number is one more (no index to search for it).
    ALTER TABLE sessions ADD COLUMN turns INTEGER NOT NULL DEFAULT 0;
    UPDATE sessions SET turns = (SELECT count(*) FROM turns WHERE turns.session_id = sessions.id);
    CREATE UNIQUE INDEX turns_by_conversation ON turns (session_id, conversation, number);
    -- An agent's context reads the messages of each earlier turn.
    CREATE INDEX messages_by_turn ON messages (turn_id);
    ",
    // 3 → 4: in-chat commands. A turn stopped by `/stop` is `failed` with `cancelled_ms` set (SQLite
    // cannot widen the `state` CHECK in place, and a cancelled turn is final and answered by a notice,
    // as a failed one is). Each command that changes something (`/new`, `/stop`) is recorded under its
    // message id, so a message handed over again (after a crash) does not run it twice.
    //
    // Drafts: a streamed answer is shown in its chat as a message edited as it grows; that message's id
    // (`turns.draft`, the adapter's own reference) is stored as soon as it exists, so a turn resumed
    // after a kill edits the same message instead of leaving a partial answer beside a new one.
    //
    // Media: the files that came with a turn's message (JSON, paths into the home's media store).
    r"
    ALTER TABLE turns ADD COLUMN attachments TEXT;
    ALTER TABLE turns ADD COLUMN draft TEXT;
    ALTER TABLE turns ADD COLUMN cancelled_ms INTEGER;
    CREATE TABLE commands (
        session_id  INTEGER NOT NULL REFERENCES sessions (id),
        message_id  TEXT NOT NULL,
        command     TEXT NOT NULL,
        created_ms  INTEGER NOT NULL,
        PRIMARY KEY (session_id, message_id)
    ) WITHOUT ROWID;
    ",
    // 4 → 5: files out. The files an agent made for its chat, kept with its reply (JSON, paths into the
    // media store) so a reply sent again after a restart sends them too.
    r"
    ALTER TABLE messages ADD COLUMN files TEXT;
    ",
    // 5 → 6: replies set aside. A reply its service refused for good, or whose retries ran out (a
    // webhook callback that never came up), is marked instead of being retried forever, and listed
    // (`herald deliveries list --failed`) until taken back (`herald deliveries retry`).
    r"
    ALTER TABLE messages ADD COLUMN delivery_failed_ms INTEGER;
    ALTER TABLE messages ADD COLUMN delivery_error TEXT;
    ",
    // 6 → 7: text cursors. A platform whose position is an opaque token rather than a number (Matrix's
    // `since`/`next_batch`) keeps it here, committed only after the events before it are handled, like
    // `adapter_offsets`.
    r"
    CREATE TABLE adapter_cursors (
        adapter     TEXT PRIMARY KEY,
        cursor      TEXT NOT NULL,
        updated_ms  INTEGER NOT NULL
    );
    ",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Why the journal cannot be opened. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "{path} has journal schema version {found}, newer than this herald understands ({supported}); \
         run the newer herald, or move the file away to start with an empty journal"
    )]
    NewerSchema {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error(
        "{path} is an SQLite database that is not a Herald journal; move it away (herald keeps its journal \
         in this file)"
    )]
    Foreign { path: PathBuf },
    /// The file opens, but only for reading (immutable, a read-only mount): every message would fail.
    #[error(
        "{path} cannot be written (it opened read-only: an immutable file, a read-only file system?); the \
         gateway would refuse every message"
    )]
    ReadOnly { path: PathBuf },
    #[error("{path} is corrupt ({reason}) and could not be moved aside: {source}")]
    MoveAside {
        path: PathBuf,
        reason: String,
        source: std::io::Error,
    },
    #[error("cannot create the journal {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("cannot open the journal {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("cannot migrate the journal {path} from version {from}: {source}")]
    Migrate {
        path: PathBuf,
        from: u32,
        source: rusqlite::Error,
    },
}

/// What opening found and did, for the lifecycle log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// The file did not exist (or was moved aside) and a new journal was made.
    pub created: bool,
    /// A corrupt file was renamed to this path, for the reason given.
    pub moved_aside: Option<(PathBuf, String)>,
    /// The schema was migrated from this version to [`SCHEMA_VERSION`].
    pub migrated_from: Option<u32>,
}

/// Opens (creating, recovering or migrating as needed) the journal at `path` for writing.
pub(crate) fn open_writer(path: &Path, now_ms: u64) -> Result<(Connection, OpenReport), OpenError> {
    let mut report = OpenReport::default();
    if path.exists()
        && let Err(reason) = check_readable(path)
    {
        let aside = move_aside(path, &reason, now_ms)?;
        tracing::error!(
            "the journal {} is corrupt ({reason}); moved it to {}",
            path.display(),
            aside.display()
        );
        report.moved_aside = Some((aside, reason));
    }
    if !path.exists() {
        report.created = true;
        herald_home::atomic::private_create(path).map_err(|source| OpenError::Create {
            path: path.to_path_buf(),
            source,
        })?;
    }
    make_private(path);
    let sqlite = |source| OpenError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let mut conn = Connection::open(path).map_err(sqlite)?;
    if conn.is_readonly(rusqlite::MAIN_DB).map_err(sqlite)? {
        return Err(OpenError::ReadOnly {
            path: path.to_path_buf(),
        });
    }
    configure(&conn).map_err(sqlite)?;
    let app_id: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(sqlite)?;
    let version: u32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sqlite)?;
    if app_id != APPLICATION_ID {
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(sqlite)?;
        if app_id != 0 || tables > 0 {
            return Err(OpenError::Foreign {
                path: path.to_path_buf(),
            });
        }
    }
    if version > SCHEMA_VERSION {
        return Err(OpenError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version < SCHEMA_VERSION {
        migrate(&mut conn, version).map_err(|source| OpenError::Migrate {
            path: path.to_path_buf(),
            from: version,
            source,
        })?;
        if version > 0 {
            report.migrated_from = Some(version);
        }
    }
    Ok((conn, report))
}

/// Opens a read-only connection to a journal [`open_writer`] has prepared.
pub(crate) fn open_reader(path: &Path) -> Result<Connection, OpenError> {
    let sqlite = |source| OpenError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(sqlite)?;
    Ok(conn)
}

/// WAL (readers never block the writer), and `synchronous = FULL`: a commit is on disk before it
/// returns, which is what lets an acknowledgement survive a power cut.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!("the journal could not switch to WAL mode (got {mode}); continuing");
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

fn migrate(conn: &mut Connection, from: u32) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for (index, step) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        tx.execute_batch(step)?;
        tracing::info!("journal schema migrated to version {}", index + 1);
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()
}

/// Reads enough of the file to know it is a sound SQLite database: the header, the schema, and a
/// structural check of every page.
fn check_readable(path: &Path) -> Result<(), String> {
    let conn = match Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE) {
        Ok(conn) => conn,
        Err(e) if is_corruption(&e) => return Err(e.to_string()),
        // Permission problems and the like are not corruption: let the real open report them.
        Err(_) => return Ok(()),
    };
    let check = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0))
        .and_then(|_| conn.query_row("PRAGMA quick_check(1)", [], |r| r.get::<_, String>(0)));
    match check {
        Ok(verdict) if verdict == "ok" => Ok(()),
        Ok(verdict) => Err(format!("integrity check: {verdict}")),
        Err(e) if is_corruption(&e) => Err(e.to_string()),
        Err(_) => Ok(()),
    }
}

fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
    )
}

/// Renames the file and its companions to `<name>.corrupt-<ms>[-wal|-shm]`.
fn move_aside(path: &Path, reason: &str, now_ms: u64) -> Result<PathBuf, OpenError> {
    let aside = PathBuf::from(format!("{}.corrupt-{now_ms}", path.display()));
    std::fs::rename(path, &aside).map_err(|source| OpenError::MoveAside {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
        source,
    })?;
    for suffix in ["-wal", "-shm"] {
        let companion = PathBuf::from(format!("{}{suffix}", path.display()));
        if companion.exists() {
            let _ = std::fs::rename(&companion, format!("{}{suffix}", aside.display()));
        }
    }
    Ok(aside)
}

/// Makes the journal and its `-wal`/`-shm` files owner-only (Unix), however they were created — an older
/// herald, a restored backup, a copy made under another umask. SQLite creates `-wal` and `-shm` with the
/// database file's permissions, so a private database keeps them private too. Best effort: a file that
/// cannot be changed is reported by the open that follows, if it matters.
fn make_private(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            let file = Path::new(&name);
            if std::fs::symlink_metadata(file)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o077 != 0)
            {
                let _ = std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}
