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
pub(super) const MIGRATIONS: &[&str] = &[
    r"
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
    -- A message stored as a new pending turn, or the turn its id already has in its session: one call,
    -- one round trip. The session row is locked first (the upsert), so two gateways accepting the same
    -- id in the same session wait for each other and the second finds the first's turn.
    CREATE FUNCTION herald_accept(p_adapter TEXT, p_chat TEXT, p_message TEXT, p_text TEXT, p_at BIGINT,
                                  p_attachments TEXT)
    RETURNS TABLE (o_turn BIGINT, o_number BIGINT, o_new BOOLEAN, o_state TEXT, o_text TEXT,
                   o_reply TEXT, o_failed BOOLEAN, o_files TEXT)
    LANGUAGE plpgsql AS $$
    DECLARE
        v_session BIGINT;
        v_conversation BIGINT;
        v_number BIGINT;
        v_turn BIGINT;
    BEGIN
        INSERT INTO sessions AS s (adapter, chat_id, created_ms, updated_ms)
            VALUES (p_adapter, p_chat, p_at, p_at)
            ON CONFLICT (adapter, chat_id) DO UPDATE SET updated_ms = GREATEST(s.updated_ms, excluded.updated_ms)
            RETURNING s.id, s.conversation INTO v_session, v_conversation;
        RETURN QUERY
            SELECT t.id, t.number, FALSE, t.state, u.text, a.text, a.failed, a.files
            FROM turns t
            LEFT JOIN messages u ON u.turn_id = t.id AND u.role = 'user'
            LEFT JOIN messages a ON a.turn_id = t.id AND a.role = 'assistant'
            WHERE t.session_id = v_session AND t.message_id = p_message;
        IF FOUND THEN
            RETURN;
        END IF;
        UPDATE sessions SET turns = turns + 1 WHERE id = v_session RETURNING turns INTO v_number;
        INSERT INTO turns (session_id, message_id, state, created_ms, updated_ms, number, conversation,
                           attachments)
            VALUES (v_session, p_message, 'pending', p_at, p_at, v_number, v_conversation, p_attachments)
            RETURNING id INTO v_turn;
        INSERT INTO messages (session_id, turn_id, role, text, created_ms)
            VALUES (v_session, v_turn, 'user', p_text, p_at);
        RETURN QUERY SELECT v_turn, v_number, TRUE, 'pending'::TEXT, p_text, NULL::TEXT, NULL::BOOLEAN,
                            NULL::TEXT;
    END
    $$;
    -- A turn's reply and final state, once: a turn already final keeps its first reply.
    CREATE FUNCTION herald_finish(p_turn BIGINT, p_text TEXT, p_failed BOOLEAN, p_at BIGINT, p_files TEXT)
    RETURNS VOID
    LANGUAGE plpgsql AS $$
    DECLARE
        v_session BIGINT;
    BEGIN
        UPDATE turns SET state = CASE WHEN p_failed THEN 'failed' ELSE 'done' END, updated_ms = p_at
            WHERE id = p_turn AND state IN ('pending', 'running', 'interrupted')
            RETURNING session_id INTO v_session;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        INSERT INTO messages (session_id, turn_id, role, text, failed, created_ms, files)
            VALUES (v_session, p_turn, 'assistant', p_text, p_failed, p_at, p_files);
        UPDATE sessions SET updated_ms = GREATEST(updated_ms, p_at) WHERE id = v_session;
    END
    $$;
",
    r"
    -- Version 2: replicas. Every gateway sharing the database registers itself with a lease it renews;
    -- a turn belongs to the replica that stored (or adopted) it; a replica whose lease ran out is removed
    -- and its turns taken over, in one transaction, by a live one.
    CREATE TABLE herald_replicas (
        id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name         TEXT NOT NULL,
        pid          BIGINT NOT NULL,
        version      TEXT NOT NULL,
        started_ms   BIGINT NOT NULL,
        seen_at      TIMESTAMPTZ NOT NULL,
        lease_until  TIMESTAMPTZ NOT NULL
    );
    -- NULL: no replica's (stored before version 2, or released by a replica that stopped).
    ALTER TABLE turns ADD COLUMN owner BIGINT;
    CREATE INDEX turns_unfinished_by_owner ON turns (owner, id)
        WHERE state IN ('pending', 'running', 'interrupted');
    DROP FUNCTION herald_accept(TEXT, TEXT, TEXT, TEXT, BIGINT, TEXT);
    DROP FUNCTION herald_finish(BIGINT, TEXT, BOOLEAN, BIGINT, TEXT);
    CREATE FUNCTION herald_accept(p_adapter TEXT, p_chat TEXT, p_message TEXT, p_text TEXT, p_at BIGINT,
                                  p_attachments TEXT, p_owner BIGINT)
    RETURNS TABLE (o_turn BIGINT, o_number BIGINT, o_new BOOLEAN, o_state TEXT, o_text TEXT,
                   o_reply TEXT, o_failed BOOLEAN, o_files TEXT)
    LANGUAGE plpgsql AS $$
    DECLARE
        v_session BIGINT;
        v_conversation BIGINT;
        v_number BIGINT;
        v_turn BIGINT;
    BEGIN
        INSERT INTO sessions AS s (adapter, chat_id, created_ms, updated_ms)
            VALUES (p_adapter, p_chat, p_at, p_at)
            ON CONFLICT (adapter, chat_id) DO UPDATE SET updated_ms = GREATEST(s.updated_ms, excluded.updated_ms)
            RETURNING s.id, s.conversation INTO v_session, v_conversation;
        RETURN QUERY
            SELECT t.id, t.number, FALSE, t.state, u.text, a.text, a.failed, a.files
            FROM turns t
            LEFT JOIN messages u ON u.turn_id = t.id AND u.role = 'user'
            LEFT JOIN messages a ON a.turn_id = t.id AND a.role = 'assistant'
            WHERE t.session_id = v_session AND t.message_id = p_message;
        IF FOUND THEN
            RETURN;
        END IF;
        -- A replica removed from the registry stores nothing more (its turns are being taken over); the
        -- lock keeps it registered until this commits, so its removal sees this turn.
        PERFORM 1 FROM herald_replicas WHERE id = p_owner FOR KEY SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'herald replica % is no longer registered', p_owner USING ERRCODE = 'HR001';
        END IF;
        UPDATE sessions SET turns = turns + 1 WHERE id = v_session RETURNING turns INTO v_number;
        INSERT INTO turns (session_id, message_id, state, created_ms, updated_ms, number, conversation,
                           attachments, owner)
            VALUES (v_session, p_message, 'pending', p_at, p_at, v_number, v_conversation, p_attachments,
                    p_owner)
            RETURNING id INTO v_turn;
        INSERT INTO messages (session_id, turn_id, role, text, created_ms)
            VALUES (v_session, v_turn, 'user', p_text, p_at);
        RETURN QUERY SELECT v_turn, v_number, TRUE, 'pending'::TEXT, p_text, NULL::TEXT, NULL::BOOLEAN,
                            NULL::TEXT;
    END
    $$;
    -- A turn's reply and final state, once, from the replica that owns it: 'stored'; 'final' when the
    -- turn was final already (it keeps its first reply); 'fenced' when another replica owns it now.
    CREATE FUNCTION herald_finish(p_turn BIGINT, p_text TEXT, p_failed BOOLEAN, p_at BIGINT, p_files TEXT,
                                  p_owner BIGINT)
    RETURNS TEXT
    LANGUAGE plpgsql AS $$
    DECLARE
        v_session BIGINT;
        v_owner BIGINT;
    BEGIN
        SELECT session_id, owner INTO v_session, v_owner FROM turns
            WHERE id = p_turn AND state IN ('pending', 'running', 'interrupted')
            FOR UPDATE;
        IF NOT FOUND THEN
            RETURN 'final';
        END IF;
        IF v_owner IS DISTINCT FROM p_owner THEN
            RETURN 'fenced';
        END IF;
        UPDATE turns SET state = CASE WHEN p_failed THEN 'failed' ELSE 'done' END, updated_ms = p_at
            WHERE id = p_turn;
        INSERT INTO messages (session_id, turn_id, role, text, failed, created_ms, files)
            VALUES (v_session, p_turn, 'assistant', p_text, p_failed, p_at, p_files);
        UPDATE sessions SET updated_ms = GREATEST(updated_ms, p_at) WHERE id = v_session;
        RETURN 'stored';
    END
    $$;
    -- Removes the replicas whose lease ran out (each by exactly one caller: the delete locks its row) and
    -- releases their unfinished turns, then gives `p_me` the released turns of `p_adapters` (NULL: every
    -- adapter). Each step is a statement of its own, so each sees what the one before it waited for (a
    -- turn stored by a replica while it was being removed). A turn another caller is taking is skipped,
    -- not waited for, and rechecked under its lock, so each is adopted once. Returns how many it took,
    -- or -1 when `p_me` itself is no longer registered (it must take nothing: it lost its turns).
    CREATE FUNCTION herald_adopt(p_me BIGINT, p_adapters TEXT[])
    RETURNS BIGINT
    LANGUAGE plpgsql AS $$
    DECLARE
        v_dead BIGINT[];
        v_taken BIGINT;
    BEGIN
        PERFORM 1 FROM herald_replicas WHERE id = p_me FOR KEY SHARE;
        IF NOT FOUND THEN
            RETURN -1;
        END IF;
        WITH dead AS (DELETE FROM herald_replicas WHERE lease_until < now() AND id <> p_me RETURNING id)
        SELECT coalesce(array_agg(id), '{}') INTO v_dead FROM dead;
        UPDATE turns SET owner = NULL
            WHERE owner = ANY (v_dead) AND state IN ('pending', 'running', 'interrupted');
        WITH taken AS (
            UPDATE turns SET owner = p_me
            WHERE id IN (
                SELECT t.id FROM turns t JOIN sessions s ON s.id = t.session_id
                WHERE t.state IN ('pending', 'running', 'interrupted') AND t.owner IS NULL
                  AND (p_adapters IS NULL OR s.adapter = ANY (p_adapters))
                ORDER BY t.id
                FOR UPDATE OF t SKIP LOCKED)
            RETURNING 1)
        SELECT count(*) INTO v_taken FROM taken;
        RETURN v_taken;
    END
    $$;
    -- A push adapter (Telegram, Matrix, webhook callbacks) runs on the replica holding its lease. Each
    -- new holder gets the next fence; every cursor commit and delivery mark of the adapter names the
    -- fence it was made under and is refused (and counted in stale_writes) unless it is still the
    -- current one and held by its replica.
    CREATE TABLE herald_leases (
        name          TEXT PRIMARY KEY,
        holder        BIGINT,
        fence         BIGINT NOT NULL,
        expires_at    TIMESTAMPTZ NOT NULL,
        stale_writes  BIGINT NOT NULL DEFAULT 0
    );
    -- Takes lease `p_name` for `p_me` unless another replica holds it unexpired: its fence, or NULL.
    CREATE FUNCTION herald_lease_take(p_name TEXT, p_me BIGINT, p_ttl_ms DOUBLE PRECISION)
    RETURNS BIGINT
    LANGUAGE plpgsql AS $$
    DECLARE
        v_fence BIGINT;
    BEGIN
        INSERT INTO herald_leases AS l (name, holder, fence, expires_at)
            VALUES (p_name, p_me, 1, now() + p_ttl_ms * interval '1 millisecond')
            ON CONFLICT (name) DO UPDATE
                SET holder = p_me,
                    fence = CASE WHEN l.holder = p_me THEN l.fence ELSE l.fence + 1 END,
                    expires_at = now() + p_ttl_ms * interval '1 millisecond'
                WHERE l.holder IS NULL OR l.holder = p_me OR l.expires_at < now()
            RETURNING l.fence INTO v_fence;
        RETURN v_fence;
    END
    $$;
    -- Whether a write of `p_adapter`'s may be stored by `p_me`, which holds the leases `p_names` under
    -- `p_fences`: yes for an adapter no replica leads (the HTTP API); otherwise only under the current
    -- fence, held by `p_me` (the row stays locked until the write commits, so a takeover waits for it).
    -- A refusal is counted.
    CREATE FUNCTION herald_fenced(p_adapter TEXT, p_me BIGINT, p_names TEXT[], p_fences BIGINT[])
    RETURNS BOOLEAN
    LANGUAGE plpgsql AS $$
    DECLARE
        v_holder BIGINT;
        v_fence BIGINT;
    BEGIN
        SELECT holder, fence INTO v_holder, v_fence FROM herald_leases WHERE name = p_adapter FOR SHARE;
        IF NOT FOUND THEN
            RETURN TRUE;
        END IF;
        IF v_holder = p_me AND v_fence = p_fences[array_position(p_names, p_adapter)] THEN
            RETURN TRUE;
        END IF;
        UPDATE herald_leases SET stale_writes = stale_writes + 1 WHERE name = p_adapter;
        RETURN FALSE;
    END
    $$;
    CREATE FUNCTION herald_set_offset(p_adapter TEXT, p_offset BIGINT, p_at BIGINT, p_me BIGINT,
                                      p_names TEXT[], p_fences BIGINT[])
    RETURNS BOOLEAN
    LANGUAGE plpgsql AS $$
    BEGIN
        IF NOT herald_fenced(p_adapter, p_me, p_names, p_fences) THEN
            RETURN FALSE;
        END IF;
        INSERT INTO adapter_offsets (adapter, next_update, updated_ms) VALUES (p_adapter, p_offset, p_at)
            ON CONFLICT (adapter) DO UPDATE
                SET next_update = GREATEST(adapter_offsets.next_update, excluded.next_update),
                    updated_ms = excluded.updated_ms;
        RETURN TRUE;
    END
    $$;
    CREATE FUNCTION herald_set_cursor(p_adapter TEXT, p_cursor TEXT, p_at BIGINT, p_me BIGINT,
                                      p_names TEXT[], p_fences BIGINT[])
    RETURNS BOOLEAN
    LANGUAGE plpgsql AS $$
    BEGIN
        IF NOT herald_fenced(p_adapter, p_me, p_names, p_fences) THEN
            RETURN FALSE;
        END IF;
        INSERT INTO adapter_cursors (adapter, cursor, updated_ms) VALUES (p_adapter, p_cursor, p_at)
            ON CONFLICT (adapter) DO UPDATE SET cursor = excluded.cursor, updated_ms = excluded.updated_ms;
        RETURN TRUE;
    END
    $$;
    -- A reply handed to its chat (`p_error` NULL), or set aside as undeliverable (`p_error` says why).
    CREATE FUNCTION herald_delivered(p_turn BIGINT, p_at BIGINT, p_error TEXT, p_me BIGINT, p_names TEXT[],
                                     p_fences BIGINT[])
    RETURNS BOOLEAN
    LANGUAGE plpgsql AS $$
    DECLARE
        v_adapter TEXT;
    BEGIN
        SELECT s.adapter INTO v_adapter FROM turns t JOIN sessions s ON s.id = t.session_id WHERE t.id = p_turn;
        IF FOUND AND NOT herald_fenced(v_adapter, p_me, p_names, p_fences) THEN
            RETURN FALSE;
        END IF;
        IF p_error IS NULL THEN
            UPDATE messages SET delivered_ms = p_at
                WHERE turn_id = p_turn AND role = 'assistant' AND delivered_ms IS NULL;
        ELSE
            UPDATE messages SET delivery_failed_ms = p_at, delivery_error = p_error
                WHERE turn_id = p_turn AND role = 'assistant' AND delivered_ms IS NULL;
        END IF;
        RETURN TRUE;
    END
    $$;
    -- A replica that stops hands its unfinished turns and its leases over (released, for a live replica
    -- to take at once) and leaves the registry.
    CREATE FUNCTION herald_leave(p_me BIGINT)
    RETURNS VOID
    LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE turns SET owner = NULL
            WHERE owner = p_me AND state IN ('pending', 'running', 'interrupted');
        UPDATE herald_leases SET holder = NULL, expires_at = now() WHERE holder = p_me;
        DELETE FROM herald_replicas WHERE id = p_me;
    END
    $$;
",
    // Version 3: the replies of an adapter every replica runs (webhook callbacks) are sent by the replica
    // that owns their turn; those whose owner left the registry are claimed, each by one replica.
    r"
    -- Gives `p_me` the undelivered replies of `p_adapter` whose turn's owner is no longer registered
    -- (or never was), oldest first, at most `p_limit`; returns their turn ids. A reply a live replica
    -- owns is its own to send (it is sending it, or will). A turn another caller is taking is skipped,
    -- not waited for, and rechecked under its lock, so each reply is claimed once. Nothing when `p_me`
    -- itself is no longer registered.
    CREATE FUNCTION herald_claim_replies(p_me BIGINT, p_adapter TEXT, p_limit BIGINT)
    RETURNS SETOF BIGINT
    LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM 1 FROM herald_replicas WHERE id = p_me FOR KEY SHARE;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        RETURN QUERY
            UPDATE turns SET owner = p_me
            WHERE id IN (
                SELECT t.id FROM turns t
                JOIN sessions s ON s.id = t.session_id
                JOIN messages m ON m.turn_id = t.id AND m.role = 'assistant' AND m.delivered_ms IS NULL
                               AND m.delivery_failed_ms IS NULL
                WHERE s.adapter = p_adapter
                  AND (t.owner IS NULL
                       OR NOT EXISTS (SELECT 1 FROM herald_replicas r WHERE r.id = t.owner))
                ORDER BY t.id
                LIMIT p_limit
                FOR UPDATE OF t SKIP LOCKED)
            AND (owner IS NULL OR NOT EXISTS (SELECT 1 FROM herald_replicas r WHERE r.id = owner))
            RETURNING id;
    END
    $$;
",
];

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
    "herald_replicas",
    "herald_leases",
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
