//! What a build of Herald is and which data it reads: `herald version --json`, and the check an upgrade
//! makes before it lets another build near this home.
//!
//! **Invariant:** the compatibility rules are pure ([`BuildInfo::refusals`]) and name every reason, so
//! `herald upgrade` can refuse a candidate before anything is touched and say why — and the rules are
//! unit-tested on every platform without a second build.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::atomic::Record;

/// The machine-readable `herald version --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildInfo {
    /// Always `herald`: anything else is not a Herald build.
    pub name: String,
    pub version: String,
    /// `std::env::consts::OS` and `ARCH` of the build.
    pub os: String,
    pub arch: String,
    /// The newest journal schema it reads (and migrates older ones to).
    pub journal_schema: u32,
    /// The newest schema of a PostgreSQL journal it reads (and migrates older ones to); absent from a
    /// build without PostgreSQL support (and from builds older than the field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres_schema: Option<u32>,
    /// The version of each record kind it writes and reads, by kind name.
    pub records: BTreeMap<String, u32>,
}

/// Record kinds the running gateway writes and `herald upgrade` (the old build) reads to check the new
/// one: their versions must match exactly.
const READ_BY_THE_UPGRADE: &[&str] = &["pid", "state", "monitor"];

impl BuildInfo {
    /// This build, with `journal_schema` given by the caller (the journal crate knows it; this crate
    /// does not link it).
    pub fn this(journal_schema: u32) -> BuildInfo {
        let records = [
            ("pid", crate::records::PidRecord::VERSION),
            ("state", crate::records::StateRecord::VERSION),
            ("monitor", crate::records::MonitorRecord::VERSION),
            ("stop_marker", crate::records::StopMarker::VERSION),
            ("access_grant", crate::access::Grant::VERSION),
            ("pairing_code", crate::access::PairingCode::VERSION),
        ]
        .into_iter()
        .map(|(kind, version)| (kind.to_owned(), version))
        .collect();
        BuildInfo {
            name: "herald".into(),
            version: crate::VERSION.into(),
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            journal_schema,
            postgres_schema: None,
            records,
        }
    }

    /// This build reads PostgreSQL journals up to `schema` (`None`: built without PostgreSQL support).
    pub fn with_postgres_schema(mut self, schema: Option<u32>) -> BuildInfo {
        self.postgres_schema = schema;
        self
    }

    /// Why `candidate` must not replace this build on a home whose journal is the PostgreSQL database
    /// `target`, at `schema` (`None`: no tables yet). Every replica shares that database, and no backup
    /// the upgrade could take of it would be one a rollback may put back (the other replicas go on
    /// writing), so an upgrade that would change its schema is refused: that move belongs to whoever
    /// runs the database and every replica, with a backup of their own.
    pub fn shared_journal_refusals(
        &self,
        candidate: &BuildInfo,
        target: &str,
        schema: Option<u32>,
    ) -> Vec<String> {
        let Some(theirs) = candidate.postgres_schema else {
            return vec![format!(
                "this home's journal is the PostgreSQL database {target}; the candidate was built without \
                 PostgreSQL support"
            )];
        };
        match schema {
            Some(schema) if schema > theirs => vec![format!(
                "the PostgreSQL journal {target} is at schema {schema}; the candidate reads up to schema {theirs}"
            )],
            Some(schema) if schema < theirs => vec![format!(
                "the candidate would migrate the PostgreSQL journal {target} from schema {schema} to {theirs}: \
                 every replica shares it and a rollback could not undo that; back the database up, stop \
                 every replica and replace their executables yourself (the first to start migrates it)"
            )],
            _ => Vec::new(),
        }
    }

    /// Why `candidate` must not replace this build on a home whose journal is at `home_schema` (`None`:
    /// no journal yet). Empty when it may.
    pub fn refusals(&self, candidate: &BuildInfo, home_schema: Option<u32>) -> Vec<String> {
        let mut why = Vec::new();
        if candidate.name != "herald" {
            why.push(format!("it says it is \"{}\", not herald", candidate.name));
        }
        if (candidate.os.as_str(), candidate.arch.as_str()) != (self.os.as_str(), self.arch.as_str()) {
            why.push(format!(
                "it is built for {} {}; this machine runs {} {}",
                candidate.os, candidate.arch, self.os, self.arch
            ));
        }
        if let Some(schema) = home_schema
            && schema > candidate.journal_schema
        {
            why.push(format!(
                "this home's journal is at schema {schema}; the candidate reads up to schema {}",
                candidate.journal_schema
            ));
        }
        for (kind, ours) in &self.records {
            match candidate.records.get(kind) {
                None => why.push(format!("it does not say which {kind} records it reads")),
                Some(theirs) if READ_BY_THE_UPGRADE.contains(&kind.as_str()) && theirs != ours => {
                    why.push(format!(
                        "it writes {kind} records of version {theirs}; this herald reads version {ours} \
                         and could not check the new gateway (upgrade in two steps)"
                    ))
                }
                Some(theirs) if theirs < ours => why.push(format!(
                    "it reads {kind} records up to version {theirs}; this home has version {ours}"
                )),
                Some(_) => {}
            }
        }
        why
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_journal_is_never_migrated_by_an_upgrade() {
        let this = BuildInfo::this(6).with_postgres_schema(Some(2));
        let mut next = this.clone();
        next.version = "9.9.9".into();
        let at = "db.example:5432/herald";
        // Same schema, or no tables yet: nothing to say.
        assert!(this.shared_journal_refusals(&next, at, Some(2)).is_empty());
        assert!(this.shared_journal_refusals(&next, at, None).is_empty());
        // It would migrate the database every replica shares.
        next.postgres_schema = Some(3);
        let why = this.shared_journal_refusals(&next, at, Some(2)).join("; ");
        assert!(
            why.contains("migrate") && why.contains("from schema 2 to 3") && why.contains(at),
            "{why}"
        );
        // The database is newer than the candidate reads.
        next.postgres_schema = Some(2);
        let why = this.shared_journal_refusals(&next, at, Some(4)).join("; ");
        assert!(
            why.contains("at schema 4") && why.contains("up to schema 2"),
            "{why}"
        );
        // No PostgreSQL in the candidate at all.
        next.postgres_schema = None;
        let why = this.shared_journal_refusals(&next, at, Some(2)).join("; ");
        assert!(why.contains("without PostgreSQL support"), "{why}");
    }

    #[test]
    fn a_build_without_the_postgres_field_reads_as_none() {
        let mut value = serde_json::to_value(BuildInfo::this(6).with_postgres_schema(Some(2))).unwrap();
        assert_eq!(value["postgres_schema"], 2);
        value.as_object_mut().unwrap().remove("postgres_schema");
        let older: BuildInfo = serde_json::from_value(value).unwrap();
        assert_eq!(older.postgres_schema, None);
        let without = serde_json::to_string(&BuildInfo::this(6)).unwrap();
        assert!(!without.contains("postgres_schema"), "{without}");
    }

    #[test]
    fn a_newer_build_of_the_same_platform_passes() {
        let this = BuildInfo::this(6);
        let mut newer = this.clone();
        newer.version = "9.9.9".into();
        newer.journal_schema = 7;
        assert!(this.refusals(&newer, Some(6)).is_empty());
        assert!(this.refusals(&newer, None).is_empty());
    }

    #[test]
    fn every_reason_is_named() {
        let this = BuildInfo::this(6);
        let mut other = this.clone();
        other.name = "hermes".into();
        other.os = "plan9".into();
        other.journal_schema = 5;
        other.records.insert("state".into(), 2);
        other.records.insert("access_grant".into(), 0);
        other.records.remove("pairing_code");
        let why = this.refusals(&other, Some(6)).join("\n");
        for part in [
            "not herald",
            "built for plan9",
            "journal is at schema 6; the candidate reads up to schema 5",
            "writes state records of version 2",
            "reads access_grant records up to version 0",
            "does not say which pairing_code records",
        ] {
            assert!(why.contains(part), "{part}: {why}");
        }
    }

    #[test]
    fn it_round_trips_as_json() {
        let this = BuildInfo::this(6);
        let json = serde_json::to_string(&this).unwrap();
        assert_eq!(serde_json::from_str::<BuildInfo>(&json).unwrap(), this);
        assert!(json.contains("\"journal_schema\":6"), "{json}");
    }
}
