//! The secrets store, and the one answer to "what value does this variable have for the gateway".
//!
//! `herald.toml` names secrets by environment variable (`[agent.openai] api_key_env`, `[telegram]
//! token_env`, `[http] token_env`) and never holds them. A gateway that a service manager starts —
//! systemd, launchd, a Scheduled Task, the SCM — sees none of the user's shell environment, so a
//! variable exported in `~/.bashrc` never reaches it. The store (`secrets.json` in the home, written by
//! `herald secret set`) is the place every start reads, whatever started it.
//!
//! **Invariant:** a value is looked up in exactly two places, in this order: the process environment
//! (set and non-empty wins, so a one-off override needs no store edit), then the store. [`Variables`] is
//! that lookup; nothing else in Herald reads a named variable.
//!
//! **Invariant:** the store is readable by its user only, and a store that is not is refused, never
//! used: on Unix it is created 0600 and a store the group or others may read (or another user owns, or
//! a link) is an error naming the fix; on Windows it gets a protected DACL granting the user, `SYSTEM`
//! and `Administrators` only, and a DACL that lets anyone else read is refused the same way. Windows
//! uses an ACL rather than DPAPI on purpose: the Windows Service backend runs the gateway as
//! `LocalSystem`, which cannot decrypt what DPAPI sealed for the user, and machine-scope DPAPI would let
//! every local process decrypt — weaker than the ACL. The machine's principals can read any file anyway.
//!
//! **Invariant:** values never leave through `Debug`, `Display` or an error: those print names only.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Home;
use crate::atomic::{WriteError, write_atomic_private};
use crate::ownership::{UnsafePath, check_private_file};

/// The store's format version.
const VERSION: u32 = 1;
/// Largest store file read (far more than any number of keys and tokens).
const MAX_STORE_BYTES: u64 = 1024 * 1024;
/// Largest single value.
pub const MAX_VALUE_BYTES: usize = 16 * 1024;
/// Longest variable name.
pub const MAX_NAME_LEN: usize = 128;

/// A variable name the store accepts: what a POSIX shell and Windows both take as one —
/// `[A-Za-z_][A-Za-z0-9_]*`, at most [`MAX_NAME_LEN`] characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SecretName(String);

impl SecretName {
    pub fn new(name: &str) -> Result<SecretName, SecretsError> {
        let mut chars = name.chars();
        let ok = name.len() <= MAX_NAME_LEN
            && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if ok {
            Ok(SecretName(name.to_owned()))
        } else {
            Err(SecretsError::InvalidName(name.to_owned()))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A secret's value: surrounding whitespace (a pasted newline) removed, never empty, at most
/// [`MAX_VALUE_BYTES`], no control characters (an HTTP header or a URL could not carry them).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(raw: &str) -> Result<SecretValue, SecretsError> {
        let value = raw.trim();
        if value.is_empty() {
            return Err(SecretsError::InvalidValue("it is empty"));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(SecretsError::InvalidValue("it is longer than 16 KiB"));
        }
        if value.chars().any(char::is_control) {
            return Err(SecretsError::InvalidValue(
                "it contains control characters (a line break inside the value?)",
            ));
        }
        Ok(SecretValue(value.to_owned()))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// Why the store cannot be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(
        "`{0}` is not a variable name: use letters, digits and '_', not starting with a digit, at most \
         128 characters"
    )]
    InvalidName(String),
    #[error("the secret's value cannot be used: {0}")]
    InvalidValue(&'static str),
    #[error(transparent)]
    Unsafe(#[from] UnsafePath),
    #[error("cannot read the secrets store {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the secrets store {path} is damaged ({reason}); fix or remove it, then `herald secret set` again"
    )]
    Invalid { path: PathBuf, reason: String },
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Home(#[from] crate::paths::HomeError),
}

/// The file as written.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    version: u32,
    secrets: BTreeMap<String, String>,
}

/// The store of one home.
#[derive(Debug, Clone)]
pub struct SecretStore {
    path: PathBuf,
}

impl SecretStore {
    pub fn of(home: &Home) -> SecretStore {
        SecretStore {
            path: home.secrets_file(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the store; a missing store is an empty one.
    pub fn load(&self) -> Result<Secrets, SecretsError> {
        let Some(bytes) = self.read_checked()? else {
            return Ok(Secrets::default());
        };
        let invalid = |reason: String| SecretsError::Invalid {
            path: self.path.clone(),
            reason,
        };
        let file: StoreFile = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        if file.version != VERSION {
            return Err(invalid(format!(
                "format version {}; this herald understands version {VERSION}",
                file.version
            )));
        }
        let mut values = BTreeMap::new();
        for (name, value) in file.secrets {
            let name = SecretName::new(&name).map_err(|e| invalid(e.to_string()))?;
            let value = SecretValue::new(&value).map_err(|e| invalid(format!("{name}: {e}")))?;
            values.insert(name.0, value);
        }
        Ok(Secrets { values })
    }

    /// Stores `value` under `name`; true when it replaced a value.
    pub fn set(&self, name: &SecretName, value: SecretValue) -> Result<bool, SecretsError> {
        let mut secrets = self.load()?;
        let replaced = secrets.values.insert(name.0.clone(), value).is_some();
        self.save(&secrets)?;
        Ok(replaced)
    }

    /// Removes `name`; false when it was not there (nothing is written then).
    pub fn remove(&self, name: &SecretName) -> Result<bool, SecretsError> {
        let mut secrets = self.load()?;
        if secrets.values.remove(name.as_str()).is_none() {
            return Ok(false);
        }
        self.save(&secrets)?;
        Ok(true)
    }

    fn save(&self, secrets: &Secrets) -> Result<(), SecretsError> {
        let file = StoreFile {
            version: VERSION,
            secrets: secrets
                .values
                .iter()
                .map(|(name, value)| (name.clone(), value.0.clone()))
                .collect(),
        };
        let mut bytes = serde_json::to_vec_pretty(&file).map_err(|e| SecretsError::Invalid {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        bytes.push(b'\n');
        write_atomic_private(&self.path, &bytes)?;
        Ok(())
    }

    /// The store's bytes after its owner and permissions were judged on the opened file; `None` when
    /// there is no store.
    fn read_checked(&self) -> Result<Option<Vec<u8>>, SecretsError> {
        let read_err = |source| SecretsError::Read {
            path: self.path.clone(),
            source,
        };
        let mut options = OpenOptions::new();
        options.read(true);
        crate::ownership::no_follow(&mut options);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW | libc::O_NONBLOCK);
        let file = match options.open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if is_link(&self.path) => {
                let _ = e;
                return Err(UnsafePath {
                    path: self.path.clone(),
                    problem: crate::ownership::Problem::Link,
                }
                .into());
            }
            Err(e) => return Err(read_err(e)),
        };
        check_private_file(&self.path, &file)?;
        if !file.metadata().map_err(read_err)?.is_file() {
            return Err(read_err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a regular file",
            )));
        }
        let mut bytes = Vec::new();
        file.take(MAX_STORE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        if bytes.len() as u64 > MAX_STORE_BYTES {
            return Err(read_err(io::Error::new(
                io::ErrorKind::InvalidData,
                "larger than any store herald writes",
            )));
        }
        Ok(Some(bytes))
    }
}

fn is_link(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// The store's contents. `Debug` shows the names only.
#[derive(Clone, Default)]
pub struct Secrets {
    values: BTreeMap<String, SecretValue>,
}

impl Secrets {
    /// The stored names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }
    pub fn get(&self, name: &str) -> Option<&SecretValue> {
        self.values.get(name)
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.values.keys()).finish()
    }
}

/// Where a variable's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Environment,
    Store,
}

impl Origin {
    pub fn describe(self) -> &'static str {
        match self {
            Origin::Environment => "the environment",
            Origin::Store => "the secrets store",
        }
    }
}

/// A variable's value for the gateway, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found {
        value: SecretValue,
        origin: Origin,
    },
    /// Set in neither place (or set to only whitespace).
    Missing,
    /// Set in the environment, but not valid Unicode (and not in the store).
    NotUnicode,
}

/// The pure rule: an environment value that is set, Unicode and not blank wins; else the store's.
pub fn resolve(environment: Option<std::ffi::OsString>, store: Option<&SecretValue>) -> Lookup {
    let mut not_unicode = false;
    if let Some(raw) = environment {
        match raw.into_string() {
            Ok(text) => {
                if let Ok(value) = SecretValue::new(&text) {
                    return Lookup::Found {
                        value,
                        origin: Origin::Environment,
                    };
                }
            }
            Err(_) => not_unicode = true,
        }
    }
    match store {
        Some(value) => Lookup::Found {
            value: value.clone(),
            origin: Origin::Store,
        },
        None if not_unicode => Lookup::NotUnicode,
        None => Lookup::Missing,
    }
}

/// Every named variable's value for this process: the environment, then the store (see the module
/// docs). Built once per gateway start (and per reload).
#[derive(Debug, Clone, Default)]
pub struct Variables {
    secrets: Secrets,
}

impl Variables {
    /// The environment and the store of `home`.
    pub fn load(home: &Home) -> Result<Variables, SecretsError> {
        Ok(Variables {
            secrets: SecretStore::of(home).load()?,
        })
    }

    /// The environment over the given store contents.
    pub fn with_secrets(secrets: Secrets) -> Variables {
        Variables { secrets }
    }

    /// The environment alone.
    pub fn environment_only() -> Variables {
        Variables::default()
    }

    pub fn lookup(&self, name: &str) -> Lookup {
        resolve(std::env::var_os(name), self.secrets.get(name))
    }

    /// The value, when there is one.
    pub fn value(&self, name: &str) -> Option<String> {
        match self.lookup(name) {
            Lookup::Found { value, .. } => Some(value.0),
            _ => None,
        }
    }

    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> SecretValue {
        SecretValue::new(text).unwrap()
    }

    #[test]
    fn names_are_what_a_shell_takes() {
        for ok in ["OPENAI_API_KEY", "_x", "a1", &"A".repeat(128)] {
            assert!(SecretName::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "É", "A=B", &"A".repeat(129)] {
            assert!(SecretName::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_are_trimmed_and_checked() {
        assert_eq!(value("  sk-123\n").expose(), "sk-123");
        assert_eq!(value("sk-123\r\n").expose(), "sk-123");
        assert!(SecretValue::new(" \n").is_err());
        assert!(SecretValue::new("a\nb").is_err());
        assert!(SecretValue::new(&"x".repeat(MAX_VALUE_BYTES + 1)).is_err());
        assert_eq!(format!("{:?}", value("sk-123")), "SecretValue(<redacted>)");
    }

    #[test]
    fn the_environment_wins_and_the_store_fills_in() {
        let stored = value("from-store");
        let found = |v: &str, origin| Lookup::Found {
            value: value(v),
            origin,
        };
        assert_eq!(
            resolve(Some("from-env".into()), Some(&stored)),
            found("from-env", Origin::Environment)
        );
        assert_eq!(resolve(None, Some(&stored)), found("from-store", Origin::Store));
        // A blank variable is no value: the store's is used.
        assert_eq!(
            resolve(Some("  ".into()), Some(&stored)),
            found("from-store", Origin::Store)
        );
        assert_eq!(resolve(None, None), Lookup::Missing);
        assert_eq!(resolve(Some("".into()), None), Lookup::Missing);
    }

    #[cfg(unix)]
    #[test]
    fn a_variable_that_is_not_unicode_is_named_as_such() {
        use std::os::unix::ffi::OsStringExt;
        let raw = std::ffi::OsString::from_vec(vec![0xff, 0xfe]);
        assert_eq!(resolve(Some(raw.clone()), None), Lookup::NotUnicode);
        assert!(matches!(
            resolve(Some(raw), Some(&value("s"))),
            Lookup::Found {
                origin: Origin::Store,
                ..
            }
        ));
    }

    #[test]
    fn set_list_remove_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        home.ensure().unwrap();
        let store = SecretStore::of(&home);
        assert_eq!(store.load().unwrap().names().count(), 0);
        let name = SecretName::new("OPENAI_API_KEY").unwrap();
        assert!(!store.set(&name, value("sk-one")).unwrap());
        assert!(store.set(&name, value("sk-two")).unwrap());
        let other = SecretName::new("TG").unwrap();
        store.set(&other, value("123:abc")).unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded.names().collect::<Vec<_>>(), ["OPENAI_API_KEY", "TG"]);
        assert_eq!(loaded.get("OPENAI_API_KEY").unwrap().expose(), "sk-two");
        assert_eq!(format!("{loaded:?}"), r#"{"OPENAI_API_KEY", "TG"}"#);
        assert!(store.remove(&name).unwrap());
        assert!(!store.remove(&name).unwrap());
        assert_eq!(store.load().unwrap().names().collect::<Vec<_>>(), ["TG"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(store.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_damaged_store_is_an_error_not_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        home.ensure().unwrap();
        let store = SecretStore::of(&home);
        for bad in [
            &b"not json"[..],
            br#"{"version":2,"secrets":{}}"#,
            br#"{"version":1,"secrets":{"1BAD":"x"}}"#,
            br#"{"version":1,"secrets":{"K":""}}"#,
        ] {
            write_atomic_private(store.path(), bad).unwrap();
            let err = store.load().unwrap_err();
            assert!(matches!(err, SecretsError::Invalid { .. }), "{err}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_store_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        home.ensure().unwrap();
        let store = SecretStore::of(&home);
        store
            .set(&SecretName::new("K").unwrap(), value("s3cr3t-value"))
            .unwrap();
        std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = store.load().unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        // A link in the store's place is refused, not followed.
        std::fs::remove_file(store.path()).unwrap();
        let target = dir.path().join("elsewhere.json");
        std::fs::write(&target, br#"{"version":1,"secrets":{}}"#).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&target, store.path()).unwrap();
        let err = store.load().unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }

    /// Windows: a store whose DACL lets anyone else read (here: a file written the ordinary way, which
    /// gets what its directory passes on) is refused; the store `set` writes is not.
    #[cfg(windows)]
    #[test]
    fn a_store_others_can_read_is_refused_on_windows() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        home.ensure().unwrap();
        let store = SecretStore::of(&home);
        store.set(&SecretName::new("K").unwrap(), value("v")).unwrap();
        assert!(store.load().is_ok());
        let facts = crate::ownership::acl_facts_of(store.path()).unwrap();
        assert!(
            !facts
                .readers
                .iter()
                .any(|r| r == "S-1-1-0" || r == "S-1-5-32-545"),
            "{facts:?}"
        );
        std::fs::remove_file(store.path()).unwrap();
        std::fs::write(store.path(), br#"{"version":1,"secrets":{}}"#).unwrap();
        let readers = crate::ownership::acl_facts_of(store.path()).unwrap().readers;
        let me = crate::ownership::current_user_sid().unwrap();
        if readers
            .iter()
            .any(|r| *r != me && !r.starts_with("S-1-5-18") && r != "S-1-5-32-544")
        {
            let err = store.load().unwrap_err();
            assert!(err.to_string().contains("icacls"), "{err}");
        }
    }
}
