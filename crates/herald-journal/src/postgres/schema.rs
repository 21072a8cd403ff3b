//! The journal's tables in PostgreSQL: create them in an empty database, migrate an older Herald schema,
//! refuse a newer one and a database that holds somebody else's tables.
//!
//! **Invariant:** the schema is checked and changed in one transaction that holds an advisory lock, so
//! replicas starting together never migrate twice nor see half a schema; a database is only ever
//! changed once it is known to be empty or Herald's.

use tokio_postgres::Client;

use super::PgOpenError;

/// `pg_advisory_xact_lock` key of a schema check: "HRLD" followed by "SCHM".
const SCHEMA_LOCK: i64 = 0x4852_4c44_5343_484d;

/// Each entry migrates from version `index` to `index + 1`. Never edit a released entry; append.
///
/// Version 1 is the SQLite journal's version 7 in PostgreSQL's types: the same tables, columns and
/// constraints, so both backends keep the same promises (one turn per message id and session, one
/// reply per turn) in the store itself.
pub(super) const MIGRATIONS: &[&str] = &[r"
    CREATE TABLE herald_journal (
        singleton       BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
        schema_version  INTEGER NOT NULL,
        created_ms      BIGINT NOT NULL
    );
    CREATE TABLE sessions (
        id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        adapter       TEXT NOT NULL,
        chat_id       TEXT NOT NULL,
        created_ms    BIGINT NOT NULL,
        updated_ms    BIGINT NOT NULL,
        conversation  BIGINT NOT NULL DEFAULT 1,
        turns         BIGINT NOT NULL DEFAULT 0,
        UNIQUE (adapter, chat_id)
    );
    CREATE INDEX sessions_by_activity ON sessions (updated_ms DESC, id DESC);
    CREATE TABLE turns (
        id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        session_id    BIGINT NOT NULL REFERENCES sessions (id),
        message_id    TEXT NOT NULL,
        state         TEXT NOT NULL
                      CHECK (state IN ('pending', 'running', 'done', 'failed', 'interrupted')),
        resume_count  INTEGER NOT NULL DEFAULT 0,
        created_ms    BIGINT NOT NULL,
        updated_ms    BIGINT NOT NULL,
        number        BIGINT NOT NULL,
        conversation  BIGINT NOT NULL,
        attachments   TEXT,
        draft         TEXT,
        cancelled_ms  BIGINT,
        UNIQUE (session_id, message_id)
    );
    CREATE INDEX turns_unfinished ON turns (id) WHERE state IN ('pending', 'running', 'interrupted');
    CREATE UNIQUE INDEX turns_by_conversation ON turns (session_id, conversation, number);
    CREATE TABLE messages (
        id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        session_id          BIGINT NOT NULL REFERENCES sessions (id),
        turn_id             BIGINT NOT NULL REFERENCES turns (id),
        role                TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
        text                TEXT NOT NULL,
        failed              BOOLEAN NOT NULL DEFAULT FALSE,
        created_ms          BIGINT NOT NULL,
        delivered_ms        BIGINT,
        files               TEXT,
        delivery_failed_ms  BIGINT,
        delivery_error      TEXT
    );
    CREATE INDEX messages_by_session ON messages (session_id, id);
    CREATE INDEX messages_by_turn ON messages (turn_id);
    -- A turn has at most one reply: the store itself refuses a second.
    CREATE UNIQUE INDEX one_reply_per_turn ON messages (turn_id) WHERE role = 'assistant';
    CREATE INDEX undelivered_replies ON messages (session_id, id)
        WHERE role = 'assistant' AND delivered_ms IS NULL;
    CREATE TABLE commands (
        session_id  BIGINT NOT NULL REFERENCES sessions (id),
        message_id  TEXT NOT NULL,
        command     TEXT NOT NULL,
        created_ms  BIGINT NOT NULL,
        PRIMARY KEY (session_id, message_id)
    );
    CREATE TABLE adapter_offsets (
        adapter      TEXT PRIMARY KEY,
        next_update  BIGINT NOT NULL,
        updated_ms   BIGINT NOT NULL
    );
    CREATE TABLE adapter_cursors (
        adapter     TEXT PRIMARY KEY,
        cursor      TEXT NOT NULL,
        updated_ms  BIGINT NOT NULL
    );
"];

/// The PostgreSQL schema version this build writes.
pub const PG_SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Tables whose presence, without `herald_journal`, means the database is somebody else's.
const OURS: &[&str] = &[
    "sessions",
    "turns",
    "messages",
    "commands",
    "adapter_offsets",
    "adapter_cursors",
];

/// Brings the database to [`PG_SCHEMA_VERSION`]; returns the version it was migrated from (`None`:
/// nothing to do, `Some(0)`: created).
pub(super) async fn prepare(
    client: &mut Client,
    target: &str,
    now_ms: u64,
) -> Result<Option<u32>, PgOpenError> {
    let query = |source| PgOpenError::Query {
        target: target.to_owned(),
        source,
    };
    let tx = client.transaction().await.map_err(query)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(query)?;
    let known: bool = tx
        .query_one("SELECT to_regclass('herald_journal') IS NOT NULL", &[])
        .await
        .map_err(query)?
        .get(0);
    let version: u32 = if known {
        let row = tx
            .query_opt("SELECT schema_version FROM herald_journal", &[])
            .await
            .map_err(query)?;
        match row {
            Some(row) => row.get::<_, i32>(0).max(0) as u32,
            None => {
                return Err(PgOpenError::Foreign {
                    target: target.to_owned(),
                });
            }
        }
    } else {
        let names: Vec<String> = OURS.iter().map(|s| (*s).to_owned()).collect();
        let taken: i64 = tx
            .query_one(
                "SELECT count(*) FROM pg_catalog.pg_tables
                 WHERE schemaname = current_schema() AND tablename = ANY($1)",
                &[&names],
            )
            .await
            .map_err(query)?
            .get(0);
        if taken > 0 {
            return Err(PgOpenError::Foreign {
                target: target.to_owned(),
            });
        }
        0
    };
    if version > PG_SCHEMA_VERSION {
        return Err(PgOpenError::NewerSchema {
            target: target.to_owned(),
            found: version,
            supported: PG_SCHEMA_VERSION,
        });
    }
    if version == PG_SCHEMA_VERSION {
        tx.commit().await.map_err(query)?;
        return Ok(None);
    }
    let migrate = |source| PgOpenError::Migrate {
        target: target.to_owned(),
        from: version,
        source,
    };
    for (index, step) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.batch_execute(step).await.map_err(migrate)?;
        tracing::info!("journal schema (PostgreSQL) migrated to version {}", index + 1);
    }
    let to = PG_SCHEMA_VERSION as i32;
    tx.execute(
        "INSERT INTO herald_journal (schema_version, created_ms) VALUES ($1, $2)
         ON CONFLICT (singleton) DO UPDATE SET schema_version = excluded.schema_version",
        &[&to, &(now_ms as i64)],
    )
    .await
    .map_err(migrate)?;
    tx.commit().await.map_err(migrate)?;
    Ok(Some(version))
}

/// What a database holds, read without changing anything (`herald doctor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// No table of Herald's: the first start makes them.
    Empty,
    /// A Herald journal at this schema version.
    Journal(u32),
    /// Tables of Herald's names without Herald's marker: somebody else's.
    Foreign,
}

pub(super) async fn inspect(client: &Client) -> Result<Found, tokio_postgres::Error> {
    let known: bool = client
        .query_one("SELECT to_regclass('herald_journal') IS NOT NULL", &[])
        .await?
        .get(0);
    if known {
        let row = client
            .query_opt("SELECT schema_version FROM herald_journal", &[])
            .await?;
        return Ok(row.map_or(Found::Foreign, |r| {
            Found::Journal(r.get::<_, i32>(0).max(0) as u32)
        }));
    }
    let names: Vec<String> = OURS.iter().map(|s| (*s).to_owned()).collect();
    let taken: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = ANY($1)",
            &[&names],
        )
        .await?
        .get(0);
    Ok(if taken > 0 { Found::Foreign } else { Found::Empty })
}
