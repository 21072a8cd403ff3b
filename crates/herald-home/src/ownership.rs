//! A home belongs to the user who runs it, and Herald never follows a link inside it.
//!
//! The home holds what the gateway executes (`herald.toml` names the agent's command) and where it writes
//! (records, the control socket, logs, the journal). If another user owns it, or can write to it, they
//! decide what the gateway runs and where its writes land: a `run` link pointing at a directory of
//! root's made a root-run `herald start` chmod and fill that directory, and a planted config made it run
//! the planter's command as root. So before a gateway uses a home:
//!
//! - the home, `run/`, `run/stop/` and `logs/` must be directories owned by the effective user, and none
//!   may be writable by group or others; `run/`, `run/stop/` and `logs/` must not be symbolic links (the
//!   home itself may be one — `~/.herald` moved to another disk — and its target is what is checked);
//! - `herald.toml`, when present, must be owned by the effective user and not writable by group or
//!   others;
//! - files in the home are opened without following links (`O_NOFOLLOW`: the lock, the lifecycle log,
//!   the stdio log).
//!
//! A violation is refused with the path and the fix (exit 78: a restart will not help), never repaired
//! silently — a home someone else could write to may already hold their files.
//!
//! **Invariant:** the judgement is a pure function of (owner, mode, link?, me) — [`judge`] — tested on every
//! OS. On Windows there are no Unix owners and modes: the home lives in the user's own profile with its
//! inherited ACL, and the Windows Service (LocalSystem) legitimately serves a user's home, so nothing is
//! judged there.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

/// What is wrong with a path in the home.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// Owned by another user than the one running Herald.
    Foreign { owner: u32, me: u32 },
    /// Writable by the group or by everyone (`mode` is the permission bits).
    Writable { mode: u32 },
    /// A symbolic link where Herald needs the real thing.
    Link,
    /// Not a directory where one is needed.
    NotADirectory,
}

/// A path in the home that a gateway must not use, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe(path, *problem))]
pub struct UnsafePath {
    pub path: PathBuf,
    pub problem: Problem,
}

fn describe(path: &Path, problem: Problem) -> String {
    let p = path.display();
    match problem {
        Problem::Foreign { owner, me } => format!(
            "{p} belongs to uid {owner}, not to this user (uid {me}): a gateway only runs on its own user's \
             home (run herald as that user, or use a home of your own)"
        ),
        Problem::Writable { mode } => format!(
            "{p} is writable by other users (mode {mode:03o}): they could plant files the gateway trusts; \
             run `chmod go-w '{p}'` and try again"
        ),
        Problem::Link => format!(
            "{p} is a symbolic link: Herald never follows links inside its home; replace it with a directory"
        ),
        Problem::NotADirectory => format!("{p} exists but is not a directory"),
    }
}

/// The facts [`judge`] decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub owner: u32,
    pub mode: u32,
    pub is_link: bool,
    pub is_dir: bool,
}

/// What is wrong with a directory of the home (`link_allowed`: the home root itself) or a file
/// (`want_dir` false), if anything.
pub fn judge(facts: Facts, me: u32, want_dir: bool, link_allowed: bool) -> Option<Problem> {
    if facts.is_link && !link_allowed {
        return Some(Problem::Link);
    }
    if want_dir && !facts.is_dir {
        return Some(Problem::NotADirectory);
    }
    if facts.owner != me {
        return Some(Problem::Foreign {
            owner: facts.owner,
            me,
        });
    }
    if facts.mode & 0o022 != 0 {
        return Some(Problem::Writable {
            mode: facts.mode & 0o7777,
        });
    }
    None
}

/// Checks a directory of the home that exists. `link_allowed` for the home root only.
pub fn check_dir(path: &Path, link_allowed: bool) -> Result<(), UnsafePath> {
    check(path, true, link_allowed)
}

/// Checks a file the gateway trusts (`herald.toml`); a missing file is fine.
pub fn check_file(path: &Path) -> Result<(), UnsafePath> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    check(path, false, true)
}

#[cfg(unix)]
fn check(path: &Path, want_dir: bool, link_allowed: bool) -> Result<(), UnsafePath> {
    use std::os::unix::fs::MetadataExt;
    let Ok(link) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let is_link = link.file_type().is_symlink();
    // A link the caller allows is judged by its target.
    let meta = if is_link && link_allowed {
        match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(_) => return Ok(()),
        }
    } else {
        link
    };
    let facts = Facts {
        owner: meta.uid(),
        mode: meta.mode(),
        is_link,
        is_dir: meta.is_dir(),
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    match judge(facts, me, want_dir, link_allowed) {
        None => Ok(()),
        Some(problem) => Err(UnsafePath {
            path: path.to_path_buf(),
            problem,
        }),
    }
}

#[cfg(not(unix))]
fn check(_path: &Path, _want_dir: bool, _link_allowed: bool) -> Result<(), UnsafePath> {
    Ok(())
}

/// The effective user, as a name for per-user paths: the uid on Unix, `user` elsewhere (where per-user
/// paths come from the profile).
pub fn current_user() -> String {
    #[cfg(unix)]
    {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() }.to_string()
    }
    #[cfg(not(unix))]
    {
        "user".to_owned()
    }
}

/// Opens without following a final symbolic link (`O_NOFOLLOW` on Unix): a link planted at a file's
/// place in the home fails to open instead of redirecting the write.
pub fn no_follow(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(options, libc::O_NOFOLLOW);
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: u32 = 1000;

    fn dir(owner: u32, mode: u32) -> Facts {
        Facts {
            owner,
            mode: 0o040000 | mode,
            is_link: false,
            is_dir: true,
        }
    }

    #[test]
    fn my_private_directories_pass() {
        assert_eq!(judge(dir(ME, 0o700), ME, true, false), None);
        assert_eq!(
            judge(dir(ME, 0o755), ME, true, false),
            None,
            "readable is not writable"
        );
    }

    #[test]
    fn another_users_home_is_refused_even_for_root() {
        assert_eq!(
            judge(dir(65534, 0o700), 0, true, true),
            Some(Problem::Foreign { owner: 65534, me: 0 })
        );
    }

    #[test]
    fn group_or_world_writable_is_refused() {
        assert_eq!(
            judge(dir(ME, 0o770), ME, true, false),
            Some(Problem::Writable { mode: 0o770 })
        );
        assert_eq!(
            judge(dir(ME, 0o1777), ME, true, false),
            Some(Problem::Writable { mode: 0o1777 })
        );
        let config = Facts {
            owner: ME,
            mode: 0o100666,
            is_link: false,
            is_dir: false,
        };
        assert_eq!(
            judge(config, ME, false, true),
            Some(Problem::Writable { mode: 0o666 })
        );
    }

    #[test]
    fn links_are_refused_inside_the_home_but_the_root_may_be_one() {
        let link = Facts {
            is_link: true,
            ..dir(ME, 0o777)
        };
        assert_eq!(judge(link, ME, true, false), Some(Problem::Link));
        // The root: judged by its target's facts (the caller passes them; here a private directory).
        let root = Facts {
            is_link: true,
            ..dir(ME, 0o700)
        };
        assert_eq!(judge(root, ME, true, true), None);
    }

    #[test]
    fn messages_name_the_path_and_the_fix() {
        let e = UnsafePath {
            path: "/h/run".into(),
            problem: Problem::Writable { mode: 0o777 },
        };
        assert!(e.to_string().contains("chmod go-w '/h/run'"), "{e}");
    }
}
