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
            records,
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
