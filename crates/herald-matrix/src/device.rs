//! The bot's device: which one it is (`matrix/device.json`), and whether its keys are still there.
//!
//! **Invariant:** the device id is kept across restarts and the keys that go with it are never
//! silently replaced. Encrypted rooms share their keys with a *device*: a bot that logged in as a new
//! device at each start would lose every room key it was sent, and one whose key store vanished would
//! upload new identity keys over the old device's (which the homeserver refuses, and which other
//! people's clients would flag). So the record names the device, and a record without its store is
//! reported ([`StoreCheck::Lost`]) for a person to decide, never repaired behind their back.
//!
//! The record holds no secret: the user id, the device id and the homeserver. The password or access
//! token comes from the environment or the secrets store at each start.

use std::path::{Path, PathBuf};

use herald_home::Home;

/// The file in the Matrix folder that names the device.
pub const RECORD: &str = "device.json";

/// The client library's stores (state, crypto, event cache, media).
pub const STORE: &str = "store";

/// The client library's end-to-end encryption store in [`STORE`].
pub const CRYPTO_STORE: &str = "matrix-sdk-crypto.sqlite3";

/// Which device the bot is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceRecord {
    pub user_id: String,
    pub device_id: String,
    pub homeserver: String,
}

/// What the home holds for the configured account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreCheck {
    /// Nothing yet: the first login makes a device and its store.
    Fresh,
    /// The device and its key store: log in on this device.
    Known(DeviceRecord),
    /// The record names a device but its key store is gone: the keys that read encrypted rooms are
    /// lost. Carries what to tell the person.
    Lost { record: DeviceRecord, why: String },
    /// The record is for another account (the config changed user or homeserver).
    OtherAccount(DeviceRecord),
}

/// Where the adapter keeps its state.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
}

impl Paths {
    pub fn of(home: &Home) -> Paths {
        Paths {
            dir: home.matrix_dir(),
        }
    }

    pub fn record(&self) -> PathBuf {
        self.dir.join(RECORD)
    }

    pub fn store(&self) -> PathBuf {
        self.dir.join(STORE)
    }

    /// What the home holds for `user_id` on `homeserver`. A record that cannot be read is an error
    /// that names the file (it is never overwritten: it names the device the keys belong to).
    pub fn check(&self, user_id: &str, homeserver: &str) -> Result<StoreCheck, String> {
        let path = self.record();
        let record = match read_no_follow(&path) {
            Ok(None) => return Ok(StoreCheck::Fresh),
            Ok(Some(bytes)) => serde_json::from_slice::<DeviceRecord>(&bytes).map_err(|e| {
                format!(
                    "{} is not a Matrix device record ({e}); move it aside to start over",
                    path.display()
                )
            })?,
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        if record.user_id != user_id
            || record.homeserver.trim_end_matches('/') != homeserver.trim_end_matches('/')
        {
            return Ok(StoreCheck::OtherAccount(record));
        }
        let crypto = self.store().join(CRYPTO_STORE);
        if !crypto.exists() {
            let why = format!(
                "the key store of Matrix device {} ({}) is missing: encrypted rooms cannot be read with \
                 it. To start over as a new device, remove {} (people in encrypted rooms will see a new \
                 device); to recover, put the store back",
                record.device_id,
                crypto.display(),
                path.display()
            );
            return Ok(StoreCheck::Lost { record, why });
        }
        Ok(StoreCheck::Known(record))
    }

    /// Writes the record (private, atomically).
    pub fn save(&self, record: &DeviceRecord) -> Result<(), String> {
        let bytes = serde_json::to_vec_pretty(record).map_err(|e| e.to_string())?;
        herald_home::atomic::write_atomic_private(&self.record(), &bytes)
            .map_err(|e| format!("cannot write {}: {e}", self.record().display()))
    }
}

/// Reads a file of the home without following a link at its name; `None` when there is none.
fn read_no_follow(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
        Ok(meta) if meta.file_type().is_symlink() => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "it is a symbolic link, which Herald does not follow in its home",
        )),
        Ok(_) => std::fs::read(path).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> DeviceRecord {
        DeviceRecord {
            user_id: "@bot:example.org".into(),
            device_id: "HERALDDEV".into(),
            homeserver: "https://example.org".into(),
        }
    }

    #[test]
    fn a_device_without_its_key_store_is_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            dir: dir.path().join("matrix"),
        };
        std::fs::create_dir_all(&paths.dir).unwrap();
        assert_eq!(
            paths.check("@bot:example.org", "https://example.org").unwrap(),
            StoreCheck::Fresh
        );
        paths.save(&record()).unwrap();
        match paths.check("@bot:example.org", "https://example.org/").unwrap() {
            StoreCheck::Lost { record: r, why } => {
                assert_eq!(r, record());
                assert!(why.contains("HERALDDEV") && why.contains("missing"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        std::fs::create_dir_all(paths.store()).unwrap();
        std::fs::write(paths.store().join(CRYPTO_STORE), b"").unwrap();
        assert_eq!(
            paths.check("@bot:example.org", "https://example.org").unwrap(),
            StoreCheck::Known(record())
        );
        assert!(matches!(
            paths.check("@other:example.org", "https://example.org").unwrap(),
            StoreCheck::OtherAccount(_)
        ));
        std::fs::write(paths.record(), b"{not json").unwrap();
        let err = paths
            .check("@bot:example.org", "https://example.org")
            .unwrap_err();
        assert!(err.contains("device.json"), "{err}");
    }
}
