//! The media store: files that came with chat messages, kept in the home (`media/<adapter>/<chat>/`)
//! for the agent to read, and removed after the retention period.
//!
//! **Invariant:** a file's name is fixed by what the chat service says identifies it (Telegram's
//! `file_unique_id`), so an update handed over again after a crash finds its file already stored and
//! does not download it twice; it is written atomically and privately (0600, see [`crate::atomic`]), so a
//! reader never sees half a file. Names are made of safe characters only: nothing a chat sends can
//! reach outside the store.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::atomic;
use crate::paths::Home;

/// Where a file identified by `id` (from `adapter`, in `chat`) is stored, with `extension`.
pub fn path_for(home: &Home, adapter: &str, chat: &str, id: &str, extension: &str) -> PathBuf {
    let extension: String = safe(extension).chars().take(10).collect();
    let name = if extension.is_empty() {
        safe(id)
    } else {
        format!("{}.{extension}", safe(id))
    };
    home.media_dir().join(safe(adapter)).join(safe(chat)).join(name)
}

/// The folder of turn `turn_id`'s outgoing files (`media/out/<turn id>/`), created privately (0700): the
/// one place an agent may leave files for its chat (see `herald_gateway::agent::outfiles`). A resumed turn
/// finds the folder of its earlier run.
pub fn out_dir(home: &Home, turn_id: i64) -> Result<PathBuf, MediaError> {
    home.ensure()?;
    let mut dir = home.media_dir();
    crate::paths::create_private_dir(&dir, false)?;
    for part in ["out".to_owned(), turn_id.to_string()] {
        dir.push(part);
        crate::paths::create_private_dir(&dir, false)?;
    }
    Ok(dir)
}

/// Whether `path` holds a stored file of `size` bytes (`None`: any size) — a retried message's file.
pub fn is_stored(path: &Path, size: Option<u64>) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && size.is_none_or(|s| m.len() == s))
}

/// Stores `bytes` at `path` (made by [`path_for`]), creating its folders privately.
pub fn store(home: &Home, path: &Path, bytes: &[u8]) -> Result<(), MediaError> {
    home.ensure()?;
    let mut dir = home.media_dir();
    crate::paths::create_private_dir(&dir, false)?;
    let relative = path
        .parent()
        .and_then(|p| p.strip_prefix(&dir).ok())
        .ok_or_else(|| MediaError::Outside(path.to_path_buf()))?;
    for part in relative.components() {
        dir.push(part);
        crate::paths::create_private_dir(&dir, false)?;
    }
    atomic::write_atomic(path, bytes)?;
    Ok(())
}

/// Removes stored files last changed more than `keep` ago (and folders left empty); returns how many
/// files went. A file that cannot be removed is left for the next time.
pub fn prune(home: &Home, keep: Duration, now: SystemTime) -> usize {
    fn walk(dir: &Path, cutoff: SystemTime, removed: &mut usize) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                walk(&path, cutoff, removed);
                // Only removes it if empty, and not if it is new: a turn's fresh folder of outgoing
                // files waits empty while its agent works.
                if meta.modified().is_ok_and(|m| m < cutoff) {
                    let _ = std::fs::remove_dir(&path);
                }
            } else if meta.modified().is_ok_and(|m| m < cutoff) && std::fs::remove_file(&path).is_ok() {
                *removed += 1;
            }
        }
    }
    let mut removed = 0;
    if let Some(cutoff) = now.checked_sub(keep) {
        walk(&home.media_dir(), cutoff, &mut removed);
    }
    removed
}

/// Why a file could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error(transparent)]
    Home(#[from] crate::paths::HomeError),
    #[error(transparent)]
    Write(#[from] atomic::WriteError),
    #[error("{0} is not inside the media store")]
    Outside(PathBuf),
}

/// Letters, digits, `-` and `_` only (anything else becomes `_`); never empty, never `.`/`..`.
fn safe(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "_".to_owned()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_stored_privately_once_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("home"));
        let path = path_for(&home, "telegram", "-100", "AgADBQ", "jpg");
        assert!(path.ends_with("media/telegram/-100/AgADBQ.jpg"));
        assert!(!is_stored(&path, Some(3)));
        store(&home, &path, b"abc").unwrap();
        assert!(is_stored(&path, Some(3)) && is_stored(&path, None) && !is_stored(&path, Some(4)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert_eq!(
            prune(&home, Duration::from_secs(3600), SystemTime::now()),
            0,
            "fresh"
        );
        let later = SystemTime::now() + Duration::from_secs(7200);
        assert_eq!(prune(&home, Duration::from_secs(3600), later), 1);
        assert!(!path.exists());
        assert!(
            !home.media_dir().join("telegram").exists(),
            "empty folders go too"
        );
    }

    #[test]
    fn hostile_names_stay_inside_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("home"));
        let path = path_for(&home, "telegram", "../../etc", "../passwd", "sh/../x");
        assert!(path.starts_with(home.media_dir()), "{}", path.display());
        assert!(!path.components().any(|c| c == std::path::Component::ParentDir));
    }
}
