//! Who may talk to the agent beyond the config's lists: the users let in by pairing, and the pairing
//! codes not yet used.
//!
//! **Invariant:** one file per fact, so no two processes ever read-modify-write the same file. The CLI
//! (`herald pair`, `herald access revoke`) and the running gateway (someone sends `/pair CODE`) change
//! access at the same moment without sharing a lock:
//!
//! * A pairing code is the file `access/pairing/<SHA-256 of the code>.json`. The code itself is stored
//!   nowhere (until used it is a password). Redeeming a code *removes* its file, and only the process
//!   whose removal succeeded lets its user in, so a code is single use even when two people send it at
//!   the same instant. An expired code is refused and removed.
//! * A grant is the file `access/<adapter>/<user>.json`. Revoking removes it. The gateway looks for it
//!   on every message from a user its config does not list, so a revocation holds from that user's next
//!   message, without a reload or a restart.
//!
//! Everything is read without following a link (see [`crate::atomic`]); a grant that cannot be read is
//! no grant (access fails closed), and its error says which file to look at. The directories are made
//! like the home's own: private (0700), owned by this user, never a link.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::atomic::{self, Record, RecordRead};
use crate::paths::Home;

/// How long a pairing code can be used.
pub const CODE_TTL: Duration = Duration::from_secs(3600);

/// Letters a pairing code is made of: no 0/O or 1/I to misread, 32 of them (5 bits each).
const CODE_ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// Letters in a code: 40 bits, about 10^12 codes. Wrong guesses are rate limited by the gateway, and a
/// code lives an hour: guessing one is hopeless.
const CODE_LEN: usize = 8;

/// The sub-folder of pairing codes (an adapter is never called this).
const PAIRING: &str = "pairing";

/// What a user let in may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLevel {
    /// Talks to the agent, stops their own turns, sees their own chat's status.
    User,
    /// Also stops anyone's turn and sees the whole gateway's status.
    Admin,
}

impl AccessLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessLevel::User => "user",
            AccessLevel::Admin => "admin",
        }
    }
}

/// A user let in by pairing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Grant {
    pub version: u32,
    /// `telegram`, ...
    pub adapter: String,
    /// The adapter's id for the user (a Telegram user id).
    pub user: String,
    pub level: AccessLevel,
    /// A name to recognise them by (a Telegram `@username` or first name), as they gave it when pairing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub granted_ms: u64,
}

impl Record for Grant {
    const VERSION: u32 = 1;
    const KIND: &'static str = "access grant";
}

/// A pairing code not yet used (stored under its hash; see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PairingCode {
    pub version: u32,
    /// The adapter whose users it lets in.
    pub adapter: String,
    /// The level it grants.
    pub level: AccessLevel,
    pub created_ms: u64,
    pub expires_ms: u64,
}

impl Record for PairingCode {
    const VERSION: u32 = 1;
    const KIND: &'static str = "pairing code";
}

/// A code just made: shown once, to the person who asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCode {
    /// As people type it: `ABCD-EFGH`.
    pub code: String,
    pub expires_ms: u64,
}

/// Why access could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("{0:?} is not an adapter name (lowercase letters, digits and _)")]
    BadAdapter(String),
    #[error("cannot use {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}; access through it is refused until it is fixed or removed")]
    Invalid { path: PathBuf, reason: String },
    #[error(transparent)]
    Write(#[from] atomic::WriteError),
    #[error(transparent)]
    Home(#[from] crate::paths::HomeError),
    #[error("no random numbers from the operating system: {0}")]
    Random(String),
}

/// Why a pairing code was refused.
#[derive(Debug, thiserror::Error)]
pub enum RedeemError {
    #[error("that is not a pairing code (8 letters and digits, like ABCD-EFGH)")]
    Malformed,
    #[error("unknown or already used pairing code")]
    Unknown,
    #[error("that pairing code has expired")]
    Expired,
    #[error("that pairing code is for {0}, not this chat service")]
    OtherAdapter(String),
    #[error(transparent)]
    Access(#[from] AccessError),
}

/// Makes a pairing code for `adapter` granting `level`, valid for `ttl` from `now_ms`.
pub fn issue_code(
    home: &Home,
    adapter: &str,
    level: AccessLevel,
    ttl: Duration,
    now_ms: u64,
) -> Result<IssuedCode, AccessError> {
    check_adapter(adapter)?;
    let mut random = [0u8; CODE_LEN];
    getrandom::getrandom(&mut random).map_err(|e| AccessError::Random(e.to_string()))?;
    let code: String = random
        .iter()
        .map(|b| char::from(CODE_ALPHABET[usize::from(b & 31)]))
        .collect();
    let dir = ensure_dir(home, PAIRING)?;
    let expires_ms = now_ms.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
    let record = PairingCode {
        version: PairingCode::VERSION,
        adapter: adapter.to_owned(),
        level,
        created_ms: now_ms,
        expires_ms,
    };
    atomic::write_record(&dir.join(code_file(&code)), &record)?;
    Ok(IssuedCode {
        code: format!("{}-{}", &code[..4], &code[4..]),
        expires_ms,
    })
}

/// Redeems `text` (a code as typed: any case, spaces and dashes ignored) for `user` of `adapter`: on
/// success the code is gone and the user has a grant (an existing one is replaced only by a higher
/// level).
pub fn redeem(
    home: &Home,
    adapter: &str,
    text: &str,
    user: &str,
    name: Option<&str>,
    now_ms: u64,
) -> Result<Grant, RedeemError> {
    check_adapter(adapter)?;
    let code = normalize_code(text).ok_or(RedeemError::Malformed)?;
    let path = home.access_dir().join(PAIRING).join(code_file(&code));
    let stored = match atomic::read_record::<PairingCode>(&path) {
        RecordRead::Present(stored) => stored,
        RecordRead::Missing => return Err(RedeemError::Unknown),
        RecordRead::Invalid { reason } => {
            return Err(AccessError::Invalid { path, reason }.into());
        }
    };
    // Whoever removes the file owns the code: single use, whatever else races for it.
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(RedeemError::Unknown),
        Err(source) => return Err(AccessError::Io { path, source }.into()),
    }
    if stored.expires_ms <= now_ms {
        return Err(RedeemError::Expired);
    }
    if stored.adapter != adapter {
        return Err(RedeemError::OtherAdapter(stored.adapter));
    }
    let level = match grant_of(home, adapter, user) {
        Ok(Some(existing)) => existing.level.max(stored.level),
        _ => stored.level,
    };
    let grant = Grant {
        version: Grant::VERSION,
        adapter: adapter.to_owned(),
        user: user.to_owned(),
        level,
        name: name.map(|n| n.chars().take(64).collect()),
        granted_ms: now_ms,
    };
    let dir = ensure_dir(home, adapter)?;
    atomic::write_record(&dir.join(user_file(user)), &grant).map_err(AccessError::from)?;
    Ok(grant)
}

/// The grant of `user` of `adapter`, if pairing let them in.
pub fn grant_of(home: &Home, adapter: &str, user: &str) -> Result<Option<Grant>, AccessError> {
    check_adapter(adapter)?;
    let path = home.access_dir().join(adapter).join(user_file(user));
    match atomic::read_record::<Grant>(&path) {
        RecordRead::Present(grant) if grant.adapter == adapter && grant.user == user => Ok(Some(grant)),
        RecordRead::Present(_) => Err(AccessError::Invalid {
            path,
            reason: "names another user".into(),
        }),
        RecordRead::Missing => Ok(None),
        RecordRead::Invalid { reason } => Err(AccessError::Invalid { path, reason }),
    }
}

/// Every grant, by adapter then user. A file that cannot be read is reported in the second list.
pub fn grants(home: &Home) -> (Vec<Grant>, Vec<AccessError>) {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for dir in entries(&home.access_dir()) {
        let Some(adapter) = dir.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if adapter == PAIRING || check_adapter(&adapter).is_err() {
            continue;
        }
        for file in entries(&dir) {
            if file.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match atomic::read_record::<Grant>(&file) {
                RecordRead::Present(grant) => found.push(grant),
                RecordRead::Missing => {}
                RecordRead::Invalid { reason } => problems.push(AccessError::Invalid { path: file, reason }),
            }
        }
    }
    found.sort_by(|a, b| (&a.adapter, &a.user).cmp(&(&b.adapter, &b.user)));
    (found, problems)
}

/// Removes the grant of `user` of `adapter`; returns it, or `None` if there was none.
pub fn revoke(home: &Home, adapter: &str, user: &str) -> Result<Option<Grant>, AccessError> {
    check_adapter(adapter)?;
    let path = home.access_dir().join(adapter).join(user_file(user));
    let grant = match atomic::read_record::<Grant>(&path) {
        RecordRead::Present(grant) => Some(grant),
        RecordRead::Missing => return Ok(None),
        // A damaged grant is removed all the same: revoking is what the person asked for.
        RecordRead::Invalid { .. } => None,
    };
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(grant.or_else(|| {
            Some(Grant {
                version: Grant::VERSION,
                adapter: adapter.to_owned(),
                user: user.to_owned(),
                level: AccessLevel::User,
                name: None,
                granted_ms: 0,
            })
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(AccessError::Io { path, source }),
    }
}

/// The codes not yet used nor expired, soonest to expire first; expired ones are removed on the way.
pub fn open_codes(home: &Home, now_ms: u64) -> Vec<PairingCode> {
    let mut open = Vec::new();
    for file in entries(&home.access_dir().join(PAIRING)) {
        if file.extension().is_none_or(|e| e != "json") {
            continue;
        }
        match atomic::read_record::<PairingCode>(&file) {
            RecordRead::Present(code) if code.expires_ms > now_ms => open.push(code),
            RecordRead::Present(_) => {
                let _ = atomic::remove_if_exists(&file);
            }
            _ => {}
        }
    }
    open.sort_by_key(|c| c.expires_ms);
    open
}

/// The code in `text` as stored (upper case, no separators), if it can be one.
pub fn normalize_code(text: &str) -> Option<String> {
    let code: String = text
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '_'))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == CODE_LEN && code.bytes().all(|b| CODE_ALPHABET.contains(&b))).then_some(code)
}

fn code_file(code: &str) -> String {
    let digest = Sha256::digest(code.as_bytes());
    let mut name = String::with_capacity(69);
    for byte in digest {
        name.push_str(&format!("{byte:02x}"));
    }
    name.push_str(".json");
    name
}

/// A user id as a file name: itself when it is plainly safe (a Telegram id), hex otherwise (a Matrix
/// `@user:server` has characters Windows refuses).
fn user_file(user: &str) -> String {
    let plain = !user.is_empty()
        && user.len() <= 64
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain {
        format!("{user}.json")
    } else {
        let hex: String = user.bytes().map(|b| format!("{b:02x}")).collect();
        format!("x{hex}.json")
    }
}

fn check_adapter(adapter: &str) -> Result<(), AccessError> {
    let ok = !adapter.is_empty()
        && adapter != PAIRING
        && adapter.len() <= 32
        && adapter
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(AccessError::BadAdapter(adapter.to_owned()))
    }
}

fn ensure_dir(home: &Home, name: &str) -> Result<PathBuf, AccessError> {
    home.ensure()?;
    let access = home.access_dir();
    crate::paths::create_private_dir(&access, false)?;
    let dir = access.join(name);
    crate::paths::create_private_dir(&dir, false)?;
    Ok(dir)
}

/// The entries of a directory, none if it cannot be read (nothing granted there).
fn entries(dir: &Path) -> Vec<PathBuf> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = read.flatten().map(|e| e.path()).collect();
    paths.sort();
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home() -> (tempfile::TempDir, Home) {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("home"));
        (dir, home)
    }

    const NOW: u64 = 1_000_000;

    #[test]
    fn a_code_lets_one_user_in_once() {
        let (_dir, home) = home();
        let issued = issue_code(&home, "telegram", AccessLevel::User, CODE_TTL, NOW).unwrap();
        assert_eq!(issued.code.len(), 9);
        let grant = redeem(
            &home,
            "telegram",
            &issued.code.to_lowercase(),
            "42",
            Some("ann"),
            NOW + 1,
        )
        .unwrap();
        assert_eq!((grant.user.as_str(), grant.level), ("42", AccessLevel::User));
        assert_eq!(grant_of(&home, "telegram", "42").unwrap(), Some(grant));
        assert!(matches!(
            redeem(&home, "telegram", &issued.code, "43", None, NOW + 2),
            Err(RedeemError::Unknown)
        ));
        assert_eq!(grant_of(&home, "telegram", "43").unwrap(), None);
    }

    #[test]
    fn the_code_itself_is_stored_nowhere() {
        let (_dir, home) = home();
        let issued = issue_code(&home, "telegram", AccessLevel::Admin, CODE_TTL, NOW).unwrap();
        let bare = normalize_code(&issued.code).unwrap();
        for file in entries(&home.access_dir().join(PAIRING)) {
            let name = file.file_name().unwrap().to_string_lossy().to_string();
            assert!(!name.to_uppercase().contains(&bare));
            assert!(!std::fs::read_to_string(&file).unwrap().contains(&bare));
        }
    }

    #[test]
    fn expired_and_foreign_codes_are_refused_and_used_up() {
        let (_dir, home) = home();
        let issued = issue_code(&home, "telegram", AccessLevel::User, Duration::from_secs(60), NOW).unwrap();
        assert!(matches!(
            redeem(&home, "telegram", &issued.code, "1", None, NOW + 60_000),
            Err(RedeemError::Expired)
        ));
        assert!(matches!(
            redeem(&home, "telegram", &issued.code, "1", None, NOW),
            Err(RedeemError::Unknown)
        ));
        let other = issue_code(&home, "matrix", AccessLevel::User, CODE_TTL, NOW).unwrap();
        assert!(matches!(
            redeem(&home, "telegram", &other.code, "1", None, NOW),
            Err(RedeemError::OtherAdapter(a)) if a == "matrix"
        ));
        assert!(matches!(
            redeem(&home, "telegram", "hello", "1", None, NOW),
            Err(RedeemError::Malformed)
        ));
        assert!(matches!(
            redeem(&home, "telegram", "ABCD-EFG0", "1", None, NOW),
            Err(RedeemError::Malformed)
        ));
    }

    #[test]
    fn pairing_again_never_lowers_a_level() {
        let (_dir, home) = home();
        let admin = issue_code(&home, "telegram", AccessLevel::Admin, CODE_TTL, NOW).unwrap();
        redeem(&home, "telegram", &admin.code, "7", None, NOW).unwrap();
        let user = issue_code(&home, "telegram", AccessLevel::User, CODE_TTL, NOW).unwrap();
        assert_eq!(
            redeem(&home, "telegram", &user.code, "7", None, NOW)
                .unwrap()
                .level,
            AccessLevel::Admin
        );
    }

    #[test]
    fn grants_are_listed_and_revoked() {
        let (_dir, home) = home();
        for user in ["5", "@bob:example.org"] {
            let code = issue_code(&home, "telegram", AccessLevel::User, CODE_TTL, NOW).unwrap();
            redeem(&home, "telegram", &code.code, user, None, NOW).unwrap();
        }
        issue_code(&home, "telegram", AccessLevel::User, CODE_TTL, NOW).unwrap();
        let (listed, problems) = grants(&home);
        assert!(problems.is_empty());
        let users: Vec<_> = listed.iter().map(|g| g.user.as_str()).collect();
        assert_eq!(users, ["5", "@bob:example.org"]);
        assert_eq!(open_codes(&home, NOW).len(), 1);
        assert_eq!(
            open_codes(&home, NOW + CODE_TTL.as_millis() as u64).len(),
            0,
            "expired ones go"
        );
        assert!(revoke(&home, "telegram", "5").unwrap().is_some());
        assert!(revoke(&home, "telegram", "5").unwrap().is_none());
        assert_eq!(grant_of(&home, "telegram", "5").unwrap(), None);
    }

    #[test]
    fn a_damaged_grant_fails_closed() {
        let (_dir, home) = home();
        let dir = ensure_dir(&home, "telegram").unwrap();
        std::fs::write(dir.join("9.json"), b"{ not json").unwrap();
        assert!(matches!(
            grant_of(&home, "telegram", "9"),
            Err(AccessError::Invalid { .. })
        ));
        assert_eq!(grants(&home).1.len(), 1);
        assert!(revoke(&home, "telegram", "9").unwrap().is_some());
    }

    #[cfg(unix)]
    #[test]
    fn a_grant_planted_as_a_link_is_not_followed() {
        let (dir, home) = home();
        let grant_dir = ensure_dir(&home, "telegram").unwrap();
        let elsewhere = dir.path().join("elsewhere.json");
        let forged = Grant {
            version: 1,
            adapter: "telegram".into(),
            user: "9".into(),
            level: AccessLevel::Admin,
            name: None,
            granted_ms: 0,
        };
        std::fs::write(&elsewhere, serde_json::to_vec(&forged).unwrap()).unwrap();
        std::os::unix::fs::symlink(&elsewhere, grant_dir.join("9.json")).unwrap();
        assert!(grant_of(&home, "telegram", "9").is_err());
    }

    #[test]
    fn adapter_names_cannot_escape() {
        let (_dir, home) = home();
        for bad in ["", "..", "pairing", "a/b", "Telegram"] {
            assert!(
                matches!(grant_of(&home, bad, "1"), Err(AccessError::BadAdapter(_))),
                "{bad}"
            );
        }
    }
}
