//! Copies of a whole journal, for `herald upgrade`: its schema version read without changing anything, a
//! consistent snapshot taken while a gateway may be writing, and that snapshot put back.
//!
//! **Invariant:** a snapshot is one SQLite transaction's view (`VACUUM INTO`), never a byte copy of a
//! file some other process is writing — so it is consistent whatever the gateway does meanwhile, and it
//! folds the `-wal` file in. Putting one back happens only while no gateway holds the home (the caller
//! checks the lock), and removes the journal's `-wal` and `-shm` first: a write-ahead log left beside a
//! restored file would be replayed into it.

use std::path::{Path, PathBuf};

/// Why a snapshot could not be taken or put back.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Open(#[from] crate::OpenError),
    #[error("cannot read the journal {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The journal's schema version (`user_version`), read-only; `None` when there is no journal yet.
pub fn schema_version(path: &Path) -> Result<Option<u32>, SnapshotError> {
    if !path.exists() {
        return Ok(None);
    }
    let conn = crate::schema::open_reader(path)?;
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .map(Some)
        .map_err(|source| SnapshotError::Sqlite {
            path: path.to_path_buf(),
            source,
        })
}

/// Writes a consistent copy of the journal at `path` to `dest` (which must not exist), readable by
/// its owner only. Returns `false`, writing nothing, when there is no journal.
pub fn take(path: &Path, dest: &Path) -> Result<bool, SnapshotError> {
    if !path.exists() {
        return Ok(false);
    }
    let sqlite = |source| SnapshotError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    // Created empty and private first: SQLite would create it with the umask's permissions.
    herald_home::atomic::private_create(dest).map_err(|source| SnapshotError::Io {
        path: dest.to_path_buf(),
        source,
    })?;
    let conn = crate::schema::open_reader(path)?;
    let dest_text = dest.to_string_lossy();
    conn.execute("VACUUM INTO ?1", [dest_text.as_ref()])
        .map_err(sqlite)?;
    Ok(true)
}

/// Puts the snapshot `from` back as the journal at `path` (through a temporary file beside it and a
/// rename), the journal's `-wal` and `-shm` removed first. `from` is kept. Only while no gateway has
/// the journal open.
pub fn restore(from: &Path, path: &Path) -> Result<(), SnapshotError> {
    let io = |at: &Path| {
        let at = at.to_path_buf();
        move |source| SnapshotError::Io { path: at, source }
    };
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        herald_home::atomic::remove_if_exists(Path::new(&name)).map_err(io(Path::new(&name)))?;
    }
    let mut staged = path.as_os_str().to_owned();
    staged.push(".restoring");
    let staged = PathBuf::from(staged);
    herald_home::atomic::remove_if_exists(&staged).map_err(io(&staged))?;
    {
        let mut out = herald_home::atomic::private_create(&staged).map_err(io(&staged))?;
        let mut input = std::fs::File::open(from).map_err(io(from))?;
        std::io::copy(&mut input, &mut out).map_err(io(&staged))?;
        out.sync_all().map_err(io(&staged))?;
    }
    std::fs::rename(&staged, path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn a_snapshot_is_consistent_and_goes_back_over_a_changed_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        assert_eq!(schema_version(&path).unwrap(), None);
        assert!(!take(&path, &dir.path().join("none.db")).unwrap());

        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "wal").unwrap();
        conn.execute_batch("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('before');")
            .unwrap();
        conn.pragma_update(None, "user_version", 6).unwrap();
        let snapshot = dir.path().join("snapshot.db");
        // Taken while the writer's connection is open and its pages are in the -wal file.
        assert!(take(&path, &snapshot).unwrap());
        conn.execute_batch("INSERT INTO t VALUES ('after'); PRAGMA user_version = 7;")
            .unwrap();
        assert_eq!(schema_version(&path).unwrap(), Some(7));
        drop(conn);

        restore(&snapshot, &path).unwrap();
        assert_eq!(schema_version(&path).unwrap(), Some(6));
        let conn = Connection::open(&path).unwrap();
        let rows: Vec<String> = conn
            .prepare("SELECT v FROM t")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows, ["before"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for file in [&snapshot, &path] {
                let mode = std::fs::metadata(file).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{}", file.display());
            }
        }
    }
}
