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
//! On Windows the same rules read the security descriptor instead of owner and mode bits: the owner must
//! be this user, and no access-allowed entry of the DACL may let anyone else write (add or delete files,
//! change the DACL or the owner) — inherit-only entries included, since they are what the files created
//! in a directory get. The machine's own principals (`SYSTEM`, `Administrators`, service SIDs) are not
//! "anyone else": they can write every file anyway. A home at the root of a drive (`C:\herald`, which
//! inherits "Authenticated Users: Modify") is therefore refused, with the fix. The Windows Service runs as
//! `LocalSystem` on the home of the user who registered it (`herald install --service`, an
//! administrator's explicit decision): as `LocalSystem`, a home owned by another account is accepted, and
//! its DACL is still judged.
//!
//! **Invariant:** the judgement is a pure function of the facts — [`judge`] (owner, mode, link?, me) and
//! [`judge_acl`] (owner SID, writer SIDs, link?, my SID) — tested on every OS; only reading the facts is
//! an OS leaf (`ownership/windows.rs` for the security descriptor).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

#[cfg(windows)]
#[path = "ownership/windows.rs"]
mod os;

#[cfg(windows)]
pub use os::SecurityDescriptor;

/// What is wrong with a path in the home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Owned by another user than the one running Herald.
    Foreign { owner: u32, me: u32 },
    /// Writable by the group or by everyone (`mode` is the permission bits).
    Writable { mode: u32 },
    /// Windows: owned by another account (SIDs as `S-1-…` text).
    ForeignOwner { owner: String, me: String },
    /// Windows: the DACL lets another account or group write (`trustee` as `S-1-…` text), or there is no
    /// DACL at all (`trustee` is `Everyone`).
    WritableBy { trustee: String },
    /// A private file (the secrets store) that the group or everyone may read (`mode`: permission bits).
    Readable { mode: u32 },
    /// Windows: a private file whose DACL lets another account or group read it.
    ReadableBy { trustee: String },
    /// A symbolic link where Herald needs the real thing.
    Link,
    /// Not a directory where one is needed.
    NotADirectory,
}

/// A path in the home that a gateway must not use, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe(path, problem))]
pub struct UnsafePath {
    pub path: PathBuf,
    pub problem: Problem,
}

fn describe(path: &Path, problem: &Problem) -> String {
    let p = path.display();
    match problem {
        Problem::ForeignOwner { owner, me } => format!(
            "{p} is owned by {}, not by this account ({me}): a gateway only runs on its own user's home \
             (run herald as that user, or take ownership: `takeown /f \"{p}\"`)",
            well_known(owner)
        ),
        Problem::WritableBy { trustee } => format!(
            "{p} can be written by {} as well as by you: they could plant files the gateway trusts; use a \
             home inside your profile (the default), or remove their write access: \
             `icacls \"{p}\" /inheritance:r /grant:r \"%USERNAME%:(OI)(CI)F\"`",
            well_known(trustee)
        ),
        Problem::Foreign { owner, me } => format!(
            "{p} belongs to uid {owner}, not to this user (uid {me}): a gateway only runs on its own user's \
             home (run herald as that user, or use a home of your own)"
        ),
        Problem::Writable { mode } => format!(
            "{p} is writable by other users (mode {mode:03o}): they could plant files the gateway trusts; \
             run `chmod go-w '{p}'` and try again"
        ),
        Problem::Readable { mode } => format!(
            "{p} can be read by other users (mode {mode:03o}) and holds secrets: run `chmod 600 '{p}'`, \
             and change the secrets it holds if others may have read them"
        ),
        Problem::ReadableBy { trustee } => format!(
            "{p} can be read by {} and holds secrets: remove their access \
             (`icacls \"{p}\" /inheritance:r /grant:r \"%USERNAME%:F\"`), and change the secrets it holds \
             if others may have read them",
            well_known(trustee)
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

/// A SID with its well-known name, when it has one.
fn well_known(sid: &str) -> String {
    let name = match sid {
        "S-1-1-0" => "Everyone",
        "S-1-5-11" => "Authenticated Users",
        "S-1-5-32-545" => "Users",
        "S-1-5-32-546" => "Guests",
        "S-1-5-4" => "Interactive",
        "S-1-5-7" => "Anonymous Logon",
        _ => return sid.to_owned(),
    };
    format!("{name} ({sid})")
}

/// The Windows facts [`judge_acl`] decides on: the owner's SID and the SIDs the DACL lets write.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AclFacts {
    pub owner: String,
    /// Trustees of access-allowed entries with a write right (inherit-only ones included).
    pub writers: Vec<String>,
    /// Trustees of access-allowed entries with a right to read data.
    pub readers: Vec<String>,
    /// No DACL at all: everyone may do anything.
    pub null_dacl: bool,
}

/// `LocalSystem`.
const LOCAL_SYSTEM: &str = "S-1-5-18";

/// Principals that can write every file of the machine anyway: trusting them exposes nothing.
fn is_machine_principal(sid: &str) -> bool {
    // SYSTEM, Administrators, CREATOR OWNER (becomes the creator: this user), and service SIDs (NT
    // SERVICE\…, TrustedInstaller among them).
    matches!(sid, LOCAL_SYSTEM | "S-1-5-32-544" | "S-1-3-0") || sid.starts_with("S-1-5-80-")
}

/// Windows: what is wrong with a path of the home given its [`AclFacts`], if anything. `me` is this
/// process's user SID; `is_link`, `is_dir`, `want_dir` and `link_allowed` as for [`judge`].
pub fn judge_acl(
    facts: &AclFacts,
    me: &str,
    is_link: bool,
    is_dir: bool,
    want_dir: bool,
    link_allowed: bool,
) -> Option<Problem> {
    if is_link && !link_allowed {
        return Some(Problem::Link);
    }
    if want_dir && !is_dir {
        return Some(Problem::NotADirectory);
    }
    let trusted_owner = facts.owner == me || is_machine_principal(&facts.owner);
    // As LocalSystem: the Windows Service on the home an administrator registered.
    if !trusted_owner && me != LOCAL_SYSTEM {
        return Some(Problem::ForeignOwner {
            owner: facts.owner.clone(),
            me: me.to_owned(),
        });
    }
    if facts.null_dacl {
        return Some(Problem::WritableBy {
            trustee: "S-1-1-0".to_owned(),
        });
    }
    facts
        .writers
        .iter()
        .find(|w| **w != me && **w != facts.owner && !is_machine_principal(w))
        .map(|w| Problem::WritableBy { trustee: w.clone() })
}

/// What is wrong with a private file of the home (the secrets store), if anything: it must be no link,
/// owned by this user, and neither readable nor writable by the group or others.
pub fn judge_private(facts: Facts, me: u32) -> Option<Problem> {
    if let Some(problem) = judge(facts, me, false, false) {
        return Some(problem);
    }
    if facts.mode & 0o077 != 0 {
        return Some(Problem::Readable {
            mode: facts.mode & 0o7777,
        });
    }
    None
}

/// Windows: what is wrong with a private file of the home given its [`AclFacts`], if anything: what
/// [`judge_acl`] says of a file, and then any reader but this user, the owner and the machine's
/// principals.
pub fn judge_private_acl(facts: &AclFacts, me: &str, is_link: bool) -> Option<Problem> {
    if let Some(problem) = judge_acl(facts, me, is_link, false, false, false) {
        return Some(problem);
    }
    facts
        .readers
        .iter()
        .find(|r| **r != me && **r != facts.owner && !is_machine_principal(r))
        .map(|r| Problem::ReadableBy { trustee: r.clone() })
}

/// Checks a private file of the home that exists (the secrets store): see [`judge_private`] and
/// [`judge_private_acl`]. On Unix the facts come from `file`, the descriptor the caller opened (without
/// following a link), so what is judged is what is read.
pub fn check_private_file(path: &Path, file: &std::fs::File) -> Result<(), UnsafePath> {
    check_private(path, file).map_err(|problem| UnsafePath {
        path: path.to_path_buf(),
        problem,
    })
}

#[cfg(unix)]
fn check_private(_path: &Path, file: &std::fs::File) -> Result<(), Problem> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().map_err(|_| Problem::Readable { mode: 0o777 })?;
    let facts = Facts {
        owner: meta.uid(),
        mode: meta.mode(),
        is_link: false,
        is_dir: meta.is_dir(),
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    judge_private(facts, me).map_or(Ok(()), Err)
}

#[cfg(windows)]
fn check_private(path: &Path, _file: &std::fs::File) -> Result<(), Problem> {
    let unreadable = |e: std::io::Error| Problem::ReadableBy {
        trustee: format!("anyone, as far as Herald can tell (cannot read its permissions: {e})"),
    };
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let facts = os::acl_facts(path).map_err(unreadable)?;
    let me = my_sid().map_err(unreadable)?;
    judge_private_acl(&facts, &me, is_link).map_or(Ok(()), Err)
}

#[cfg(not(any(unix, windows)))]
fn check_private(_path: &Path, _file: &std::fs::File) -> Result<(), Problem> {
    Ok(())
}

/// Creates a new file (`O_EXCL`, never through a link) readable by its user only: 0600 on Unix; on
/// Windows with a protected DACL granting this user, `SYSTEM` (a Windows Service serving the home runs
/// as it) and `Administrators`, set at creation instead of what the directory would pass on.
pub fn create_private_new(path: &Path) -> std::io::Result<std::fs::File> {
    #[cfg(windows)]
    return os::create_private_new(path);
    #[cfg(not(windows))]
    {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        no_follow(&mut options);
        options.open(path)
    }
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

#[cfg(windows)]
fn check(path: &Path, want_dir: bool, link_allowed: bool) -> Result<(), UnsafePath> {
    let Ok(link) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    // Symbolic links and junctions alike (std reports both as links).
    let is_link = link.file_type().is_symlink();
    let is_dir = if is_link && link_allowed {
        match std::fs::metadata(path) {
            Ok(meta) => meta.is_dir(),
            Err(_) => return Ok(()),
        }
    } else {
        link.is_dir()
    };
    let unsafe_path = |problem| UnsafePath {
        path: path.to_path_buf(),
        problem,
    };
    if is_link && !link_allowed {
        return Err(unsafe_path(Problem::Link));
    }
    // Facts that cannot be read cannot be vouched for: refused, with the reason.
    let unreadable = |e: std::io::Error| {
        unsafe_path(Problem::WritableBy {
            trustee: format!("anyone, as far as Herald can tell (cannot read its permissions: {e})"),
        })
    };
    let facts = os::acl_facts(path).map_err(unreadable)?;
    let me = my_sid().map_err(unreadable)?;
    match judge_acl(&facts, &me, is_link, is_dir, want_dir, link_allowed) {
        None => Ok(()),
        Some(problem) => Err(unsafe_path(problem)),
    }
}

/// This process's user SID, read once.
#[cfg(windows)]
fn my_sid() -> std::io::Result<String> {
    static ME: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    ME.get_or_init(|| os::current_user_sid().map_err(|e| e.to_string()))
        .clone()
        .map_err(std::io::Error::other)
}

/// Windows: this process's user SID as `S-1-…` text (the control channel grants it access).
#[cfg(windows)]
pub fn current_user_sid() -> std::io::Result<String> {
    my_sid()
}

/// Windows: the owner of `path` and who may write or read it.
#[cfg(windows)]
pub fn acl_facts_of(path: &Path) -> std::io::Result<AclFacts> {
    os::acl_facts(path)
}

/// Windows: the owner of `path` as `S-1-…` text.
#[cfg(windows)]
pub fn owner_sid(path: &Path) -> std::io::Result<String> {
    os::owner_sid(path)
}

#[cfg(not(any(unix, windows)))]
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

    const MY_SID: &str = "S-1-5-21-1-2-3-1001";
    const OTHER_SID: &str = "S-1-5-21-1-2-3-1002";

    fn acl(owner: &str, writers: &[&str]) -> AclFacts {
        AclFacts {
            owner: owner.to_owned(),
            writers: writers.iter().map(|w| (*w).to_owned()).collect(),
            readers: Vec::new(),
            null_dacl: false,
        }
    }

    #[test]
    fn a_private_file_is_readable_by_its_user_only() {
        let file = |owner, mode| Facts {
            owner,
            mode,
            is_link: false,
            is_dir: false,
        };
        assert_eq!(judge_private(file(1000, 0o100600), 1000), None);
        assert_eq!(judge_private(file(1000, 0o100400), 1000), None);
        assert_eq!(
            judge_private(file(1000, 0o100640), 1000),
            Some(Problem::Readable { mode: 0o640 })
        );
        assert_eq!(
            judge_private(file(1000, 0o100604), 1000),
            Some(Problem::Readable { mode: 0o604 })
        );
        assert_eq!(
            judge_private(file(0, 0o100600), 1000),
            Some(Problem::Foreign { owner: 0, me: 1000 })
        );
        let link = Facts {
            is_link: true,
            ..file(1000, 0o120777)
        };
        assert_eq!(judge_private(link, 1000), Some(Problem::Link));
        let message = UnsafePath {
            path: "/h/secrets.json".into(),
            problem: Problem::Readable { mode: 0o644 },
        }
        .to_string();
        assert!(message.contains("chmod 600"), "{message}");
    }

    #[test]
    fn a_private_file_on_windows_is_readable_by_its_user_and_the_machine_only() {
        let me = "S-1-5-21-1-2-3-1001";
        let mut facts = acl(me, &[me, "S-1-5-18", "S-1-5-32-544"]);
        facts.readers = vec![me.into(), "S-1-5-18".into(), "S-1-5-32-544".into()];
        assert_eq!(judge_private_acl(&facts, me, false), None);
        facts.readers.push("S-1-5-32-545".into());
        assert_eq!(
            judge_private_acl(&facts, me, false),
            Some(Problem::ReadableBy {
                trustee: "S-1-5-32-545".into()
            })
        );
        assert_eq!(judge_private_acl(&facts, me, true), Some(Problem::Link));
        let message = UnsafePath {
            path: r"C:\h\secrets.json".into(),
            problem: Problem::ReadableBy {
                trustee: "S-1-5-32-545".into(),
            },
        }
        .to_string();
        assert!(message.contains("Users (S-1-5-32-545)"), "{message}");
    }

    #[test]
    fn a_profile_home_passes_on_windows() {
        // What a directory under %USERPROFILE% inherits: SYSTEM, Administrators and the user.
        let profile = acl(MY_SID, &["S-1-5-18", "S-1-5-32-544", MY_SID]);
        assert_eq!(judge_acl(&profile, MY_SID, false, true, true, false), None);
        // Made by an elevated prompt: owned by Administrators, which can write everything anyway.
        let elevated = acl("S-1-5-32-544", &["S-1-5-32-544", MY_SID, "S-1-3-0"]);
        assert_eq!(judge_acl(&elevated, MY_SID, false, true, true, false), None);
    }

    #[test]
    fn another_accounts_home_is_refused_on_windows_except_for_the_service() {
        let theirs = acl(OTHER_SID, &[OTHER_SID]);
        assert_eq!(
            judge_acl(&theirs, MY_SID, false, true, true, true),
            Some(Problem::ForeignOwner {
                owner: OTHER_SID.into(),
                me: MY_SID.into()
            })
        );
        // The Windows Service (LocalSystem) on the home of the user who registered it.
        assert_eq!(judge_acl(&theirs, LOCAL_SYSTEM, false, true, true, true), None);
    }

    #[test]
    fn a_dacl_that_lets_others_write_is_refused_on_windows() {
        // C:\herald: inherits "Authenticated Users: Modify" from the drive's root.
        let drive_root = acl(MY_SID, &["S-1-5-18", "S-1-5-32-544", "S-1-5-11", MY_SID]);
        assert_eq!(
            judge_acl(&drive_root, MY_SID, false, true, true, true),
            Some(Problem::WritableBy {
                trustee: "S-1-5-11".into()
            })
        );
        // Even as LocalSystem: the service trusts the owner, not everyone.
        assert!(judge_acl(&drive_root, LOCAL_SYSTEM, false, true, true, true).is_some());
        let shared = acl(MY_SID, &[MY_SID, OTHER_SID]);
        assert!(judge_acl(&shared, MY_SID, false, false, false, true).is_some());
        let no_dacl = AclFacts {
            null_dacl: true,
            ..acl(MY_SID, &[])
        };
        assert_eq!(
            judge_acl(&no_dacl, MY_SID, false, true, true, true),
            Some(Problem::WritableBy {
                trustee: "S-1-1-0".into()
            })
        );
        let e = UnsafePath {
            path: r"C:\herald".into(),
            problem: Problem::WritableBy {
                trustee: "S-1-5-11".into(),
            },
        };
        assert!(e.to_string().contains("Authenticated Users (S-1-5-11)"), "{e}");
        assert!(e.to_string().contains("icacls"), "{e}");
    }

    #[test]
    fn links_and_files_are_judged_alike_on_windows() {
        let mine = acl(MY_SID, &[MY_SID]);
        assert_eq!(
            judge_acl(&mine, MY_SID, true, true, true, false),
            Some(Problem::Link)
        );
        assert_eq!(judge_acl(&mine, MY_SID, true, true, true, true), None);
        assert_eq!(
            judge_acl(&mine, MY_SID, false, false, true, false),
            Some(Problem::NotADirectory)
        );
    }

    #[test]
    fn messages_name_the_path_and_the_fix() {
        let e = UnsafePath {
            path: "/h/run".into(),
            problem: Problem::Writable { mode: 0o777 },
        };
        assert!(e.to_string().contains("chmod go-w '/h/run'"), "{e}");
    }

    /// The Windows leaf on real files: a new directory of this user's passes; one whose DACL lets
    /// Everyone write is refused, naming Everyone.
    #[cfg(windows)]
    #[test]
    fn the_windows_leaf_reads_real_descriptors() {
        use std::os::windows::ffi::OsStrExt;
        use windows_sys::Win32::Foundation::LocalFree;
        use windows_sys::Win32::Security::Authorization::{
            ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1, SE_FILE_OBJECT,
            SetNamedSecurityInfoW,
        };
        use windows_sys::Win32::Security::{
            ACL, DACL_SECURITY_INFORMATION, GetSecurityDescriptorDacl, PSECURITY_DESCRIPTOR,
        };

        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let facts = os::acl_facts(&home).unwrap();
        assert_eq!(facts.owner, my_sid().unwrap(), "{facts:?}");
        check_dir(&home, true).unwrap();

        // D:P(A;OICI;FA;;;<me>)(A;OICI;FA;;;WD): full control for this user and for Everyone.
        let sddl = format!("D:P(A;OICI;FA;;;{})(A;OICI;FA;;;WD)", my_sid().unwrap());
        let sddl: Vec<u16> = sddl.encode_utf16().chain(std::iter::once(0)).collect();
        let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: NUL-terminated SDDL, valid out pointer, optional size pointer null.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                sddl.as_ptr(),
                SDDL_REVISION_1,
                &mut descriptor,
                std::ptr::null_mut(),
            )
        };
        assert_ne!(ok, 0, "{}", std::io::Error::last_os_error());
        let (mut present, mut defaulted) = (0, 0);
        let mut dacl: *mut ACL = std::ptr::null_mut();
        // SAFETY: `descriptor` is valid; the out pointers are valid.
        let ok = unsafe { GetSecurityDescriptorDacl(descriptor, &mut present, &mut dacl, &mut defaulted) };
        assert_ne!(ok, 0, "{}", std::io::Error::last_os_error());
        let wide: Vec<u16> = home.as_os_str().encode_wide().chain(std::iter::once(0)).collect();
        // SAFETY: NUL-terminated path; `dacl` points into the live descriptor; no owner/group/SACL.
        let rc = unsafe {
            SetNamedSecurityInfoW(
                wide.as_ptr(),
                SE_FILE_OBJECT,
                DACL_SECURITY_INFORMATION,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                dacl,
                std::ptr::null(),
            )
        };
        // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW; freed once.
        unsafe { LocalFree(descriptor) };
        assert_eq!(
            rc,
            0,
            "SetNamedSecurityInfoW: {}",
            std::io::Error::from_raw_os_error(rc as i32)
        );
        let err = check_dir(&home, true).unwrap_err();
        assert_eq!(
            err.problem,
            Problem::WritableBy {
                trustee: "S-1-1-0".into()
            },
            "{err}"
        );
        assert!(err.to_string().contains("Everyone"), "{err}");
    }
}
