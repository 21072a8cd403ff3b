//! Atomic, private record files and tolerant reading.
//!
//! **Invariant:** a reader never observes a half-written record. Every write goes to a temporary file in
//! the same directory, is flushed to disk, then renamed over the target, so a crash or a full disk leaves
//! either the old record or the new one. Files are created 0600 on Unix.
//!
//! Reading is the other half of the contract: a record may be missing, empty, truncated, garbage or from a
//! different format version (a crash before the first write, a downgrade, a user's editor). Those all read
//! as [`RecordRead::Missing`] or [`RecordRead::Invalid`] with a reason, never as a panic or a hard error,
//! because a status probe that dies on a bad file is worse than no probe.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest record we will read; anything bigger is not one of ours.
const MAX_RECORD_BYTES: u64 = 1024 * 1024;

/// A versioned JSON record kept in a home.
pub trait Record: Serialize + DeserializeOwned {
    /// The format version this build writes and accepts.
    const VERSION: u32;
    /// A human name for messages ("PID record").
    const KIND: &'static str;
}

/// The outcome of reading a record. Only `Present` carries data; the other two say why not.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordRead<T> {
    Present(T),
    Missing,
    Invalid { reason: String },
}

impl<T> RecordRead<T> {
    pub fn present(self) -> Option<T> {
        match self {
            RecordRead::Present(t) => Some(t),
            _ => None,
        }
    }
    pub fn as_present(&self) -> Option<&T> {
        match self {
            RecordRead::Present(t) => Some(t),
            _ => None,
        }
    }
    /// `None` when present or missing; the reason when the file exists but cannot be used.
    pub fn invalid_reason(&self) -> Option<&str> {
        match self {
            RecordRead::Invalid { reason } => Some(reason),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct WriteError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Writes `bytes` to `path` atomically (temp file + fsync + rename) with owner-only permissions.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    write_atomic_inner(path, bytes, false).map_err(|source| WriteError {
        path: path.to_path_buf(),
        source,
    })
}

/// As [`write_atomic`], for a file that holds secrets: on Windows the new file gets a DACL for this user
/// (and the machine's principals) only, from its creation, instead of what the directory passes on (see
/// [`crate::ownership::create_private_new`]); on Unix 0600 already says as much.
pub fn write_atomic_private(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    write_atomic_inner(path, bytes, true).map_err(|source| WriteError {
        path: path.to_path_buf(),
        source,
    })
}

/// Serializes `record` as pretty JSON and writes it atomically.
pub fn write_record<T: Record>(path: &Path, record: &T) -> Result<(), WriteError> {
    let mut bytes = serde_json::to_vec_pretty(record).map_err(|e| WriteError {
        path: path.to_path_buf(),
        source: io::Error::other(e),
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Reads a record, classifying every way it can be unusable.
pub fn read_record<T: Record>(path: &Path) -> RecordRead<T> {
    let bytes = match read_bounded(path) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return RecordRead::Missing,
        Err(e) => {
            return RecordRead::Invalid {
                reason: format!("cannot read {}: {e}", path.display()),
            };
        }
    };
    parse_record(&bytes)
}

/// Parses record bytes (separate from I/O so fuzzers and tests can drive it).
pub fn parse_record<T: Record>(bytes: &[u8]) -> RecordRead<T> {
    #[derive(serde::Deserialize)]
    struct Header {
        version: Option<u32>,
    }
    let invalid = |reason: String| RecordRead::Invalid {
        reason: format!("{} {reason}", T::KIND),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return invalid("is empty".into());
    }
    let header: Header = match serde_json::from_slice(bytes) {
        Ok(h) => h,
        Err(e) => return invalid(format!("is not valid JSON ({e})")),
    };
    match header.version {
        Some(v) if v == T::VERSION => {}
        Some(v) => {
            return invalid(format!(
                "has format version {v}; this herald understands version {}",
                T::VERSION
            ));
        }
        None => return invalid("has no format version".into()),
    }
    match serde_json::from_slice(bytes) {
        Ok(record) => RecordRead::Present(record),
        Err(e) => invalid(format!("is malformed ({e})")),
    }
}

/// Removes a file, treating "already gone" as success.
pub fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Reads a record file: a regular file only (a FIFO or device planted at a record's path would block the
/// reader or feed it forever), opened without blocking and without following a link.
fn read_bounded(path: &Path) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut options = OpenOptions::new();
    options.read(true);
    crate::ownership::no_follow(&mut options);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW | libc::O_NONBLOCK);
    let file = match options.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "is not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_RECORD_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_RECORD_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "larger than any record herald writes",
        ));
    }
    Ok(Some(bytes))
}

fn write_atomic_inner(path: &Path, bytes: &[u8], restrict: bool) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "record path has no file name"))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(
        ".tmp.{:016x}",
        unpredictable(COUNTER.fetch_add(1, Ordering::Relaxed))
    ));
    let tmp = dir.join(tmp_name);

    let result = (|| {
        let mut file = if restrict {
            crate::ownership::create_private_new(&tmp)?
        } else {
            private_create_new(&tmp)?
        };
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        rename_replacing(&tmp, path)?;
        sync_dir(dir);
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates (truncating) a file readable and writable by its owner only, never through a link.
pub fn private_create(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    crate::ownership::no_follow(&mut options);
    options.open(path)
}

/// Creates a new file (`O_EXCL`: never an existing one, never through a link), owner-only.
fn private_create_new(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    crate::ownership::no_follow(&mut options);
    options.open(path)
}

/// A temp-file suffix nobody can guess ahead: SipHash with this process's random keys over the time and a
/// counter. (Guessing it would let another user plant a link where a record is about to be written; with
/// `O_EXCL` the write would then fail rather than follow it, but it would fail.)
fn unpredictable(counter: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static KEYS: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
    let mut hasher = KEYS.get_or_init(std::hash::RandomState::new).build_hasher();
    hasher.write_u64(counter);
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// `rename` that replaces the target. On Windows a reader holding the target open without
/// `FILE_SHARE_DELETE` makes the rename fail with "access denied" for a moment; retry briefly.
fn rename_replacing(from: &Path, to: &Path) -> io::Result<()> {
    let mut attempt = 0;
    loop {
        match fs::rename(from, to) {
            Err(e) if cfg!(windows) && e.kind() == io::ErrorKind::PermissionDenied && attempt < 50 => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            other => return other,
        }
    }
}

/// Makes the rename itself durable (Unix). Best effort: some file systems refuse to fsync a directory.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Demo {
        version: u32,
        n: u32,
    }
    impl Record for Demo {
        const VERSION: u32 = 1;
        const KIND: &'static str = "demo record";
    }

    #[test]
    fn round_trip_and_no_temp_files_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        write_record(&path, &Demo { version: 1, n: 7 }).unwrap();
        write_record(&path, &Demo { version: 1, n: 8 }).unwrap();
        assert_eq!(
            read_record::<Demo>(&path),
            RecordRead::Present(Demo { version: 1, n: 8 })
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("r.json")]);
    }

    /// The old temp names were `<record>.tmp.<pid>.<counter>`: another user could plant links at them and
    /// have a record write land outside the home. Now the names cannot be guessed, and a temp file is only
    /// ever created new, never through a link.
    #[cfg(unix)]
    #[test]
    fn a_planted_link_at_a_temp_name_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::write(&outside, b"precious").unwrap();
        let home = dir.path().join("home");
        fs::create_dir(&home).unwrap();
        for n in 0..64 {
            let planted = home.join(format!("r.json.tmp.{}.{n}", std::process::id()));
            std::os::unix::fs::symlink(&outside, planted).unwrap();
        }
        let path = home.join("r.json");
        for n in 0..64 {
            write_record(&path, &Demo { version: 1, n }).unwrap();
        }
        assert_eq!(fs::read(&outside).unwrap(), b"precious");
        assert_eq!(
            read_record::<Demo>(&path),
            RecordRead::Present(Demo { version: 1, n: 63 })
        );
        let a = unpredictable(1);
        let b = unpredictable(2);
        assert_ne!(a, b);
        assert_ne!(a.wrapping_add(1), b, "not a counter");
    }

    /// A FIFO planted at a record's path (the stop marker, say) must not block its reader: it reads as
    /// invalid at once.
    #[cfg(unix)]
    #[test]
    fn a_fifo_at_a_record_path_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stop.marker");
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(read_record::<Demo>(&path));
        });
        let read = finished
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("reading a FIFO blocked");
        assert!(matches!(read, RecordRead::Invalid { .. }), "{read:?}");
    }

    #[cfg(unix)]
    #[test]
    fn records_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        write_record(&path, &Demo { version: 1, n: 7 }).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn every_kind_of_bad_record_reads_as_invalid_or_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        assert_eq!(read_record::<Demo>(&path), RecordRead::Missing);
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"  \n", "empty"),
            (b"{\"version\":1,\"n\":", "not valid JSON"),
            (b"\xff\xfe garbage", "not valid JSON"),
            (b"[1,2]", "not valid JSON"),
            (b"{\"n\":1}", "no format version"),
            (b"{\"version\":2,\"n\":1}", "format version 2"),
            (b"{\"version\":1,\"n\":\"x\"}", "malformed"),
            (b"{\"version\":1}", "malformed"),
        ];
        for (bytes, expect) in cases {
            fs::write(&path, bytes).unwrap();
            match read_record::<Demo>(&path) {
                RecordRead::Invalid { reason } => {
                    assert!(reason.contains(expect), "{reason:?} should mention {expect:?}");
                    assert!(reason.starts_with("demo record"), "{reason}");
                }
                other => panic!("{bytes:?} read as {other:?}"),
            }
        }
    }

    #[test]
    fn oversized_records_are_rejected_without_reading_them_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        fs::write(&path, vec![b' '; (MAX_RECORD_BYTES + 10) as usize]).unwrap();
        assert!(
            read_record::<Demo>(&path)
                .invalid_reason()
                .unwrap()
                .contains("larger")
        );
    }

    #[test]
    fn a_failed_write_leaves_the_old_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        write_record(&path, &Demo { version: 1, n: 1 }).unwrap();
        // A directory in the way of the temp file's rename target makes the write fail.
        let bad = dir.path().join("missing-dir").join("r.json");
        assert!(write_record(&bad, &Demo { version: 1, n: 2 }).is_err());
        assert_eq!(read_record::<Demo>(&path).present().unwrap().n, 1);
    }
}
