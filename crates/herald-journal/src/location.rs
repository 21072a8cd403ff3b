//! Which journal a home uses, resolved once from `[journal]`: the home's `state.db` (SQLite), or the
//! PostgreSQL database `url` names, with the password looked up where every secret is (`password_env`:
//! the environment, then the secrets store).
//!
//! **Invariant:** callers (the gateway's payload, `herald deliveries`, `herald doctor`) never choose a
//! backend themselves: they resolve a [`JournalLocation`] and open it, so every command reads the journal
//! the gateway writes.

use std::path::PathBuf;
use std::sync::Arc;

use herald_gateway::journal::Journal;
use herald_home::Home;
use herald_home::config::JournalConfig;
use herald_home::secrets::Variables;

#[cfg(feature = "postgres")]
use crate::postgres::{PgJournal, PgOpenError, PgOptions};
use crate::{DeliveryReport, OpenError, SqliteJournal};

/// What a build without the `postgres` feature says of `[journal] url`.
pub const WITHOUT_POSTGRES: &str = "[journal] url names a PostgreSQL database, but this herald was built \
     without PostgreSQL support: build it with the `postgres` feature (`cargo install --path crates/herald \
     --locked --features postgres`)";

/// Where the journal is.
#[derive(Debug, Clone)]
pub enum JournalLocation {
    /// `state.db` in the home.
    Sqlite(PathBuf),
    /// A PostgreSQL database.
    #[cfg(feature = "postgres")]
    Postgres(Box<PgOptions>),
}

/// Why the journal cannot be found or opened.
#[derive(Debug, thiserror::Error)]
pub enum JournalOpenError {
    #[error(
        "[journal] password_env names {variable}, which is not set (set it in the environment, or \
         `herald secret set {variable}`)"
    )]
    MissingPassword { variable: String },
    #[error(transparent)]
    Sqlite(#[from] OpenError),
    #[cfg(feature = "postgres")]
    #[error(transparent)]
    Postgres(#[from] PgOpenError),
    #[error("{}", WITHOUT_POSTGRES)]
    WithoutPostgres,
}

/// What opening found and did, for the lifecycle log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalOpenReport {
    /// A new, empty journal was made.
    pub created: bool,
    /// A corrupt `state.db` was renamed to this path, for the reason given.
    pub moved_aside: Option<(PathBuf, String)>,
    /// The schema was migrated from this version to `to_version`.
    pub migrated_from: Option<u32>,
    /// The schema version the journal is at now.
    pub to_version: u32,
}

impl JournalLocation {
    /// Resolves `[journal]` for `home`.
    pub fn resolve(
        home: &Home,
        config: &JournalConfig,
        variables: &Variables,
    ) -> Result<JournalLocation, JournalOpenError> {
        let Some(url) = &config.url else {
            return Ok(JournalLocation::Sqlite(home.journal_file()));
        };
        #[cfg(not(feature = "postgres"))]
        {
            let _ = (url, variables);
            Err(JournalOpenError::WithoutPostgres)
        }
        #[cfg(feature = "postgres")]
        Self::postgres(url, config, variables)
    }

    #[cfg(feature = "postgres")]
    fn postgres(
        url: &str,
        config: &JournalConfig,
        variables: &Variables,
    ) -> Result<JournalLocation, JournalOpenError> {
        let password = match &config.password_env {
            Some(variable) => {
                let variable = variable.trim();
                Some(
                    variables
                        .value(variable)
                        .ok_or_else(|| JournalOpenError::MissingPassword {
                            variable: variable.to_owned(),
                        })?,
                )
            }
            None => None,
        };
        let options = PgOptions::new(url, password.as_deref(), config.ca_file.clone())?;
        let replica = crate::postgres::ReplicaOptions {
            lease_ttl: std::time::Duration::from_secs(config.lease_ttl_secs),
            ..crate::postgres::ReplicaOptions::default()
        };
        Ok(JournalLocation::Postgres(Box::new(options.with_replica(replica))))
    }

    /// Names the gateway that opens this journal among the replicas sharing it (a PostgreSQL
    /// database), for people. Nothing changes for SQLite, which one gateway uses.
    pub fn as_replica(self, name: &str) -> JournalLocation {
        match self {
            JournalLocation::Sqlite(path) => {
                let _ = name;
                JournalLocation::Sqlite(path)
            }
            #[cfg(feature = "postgres")]
            JournalLocation::Postgres(options) => {
                let mut replica = options.replica().clone();
                replica.name = name.to_owned();
                JournalLocation::Postgres(Box::new(options.with_replica(replica)))
            }
        }
    }

    /// The journal as shown to people: the file's path, or the database's URL (never a password).
    pub fn describe(&self) -> String {
        match self {
            JournalLocation::Sqlite(path) => path.display().to_string(),
            #[cfg(feature = "postgres")]
            JournalLocation::Postgres(options) => options.target().to_owned(),
        }
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            JournalLocation::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            JournalLocation::Postgres(_) => "postgres",
        }
    }

    /// Opens the journal (creating, recovering or migrating as each backend does).
    pub fn open(&self) -> Result<(Arc<dyn Journal>, JournalOpenReport), JournalOpenError> {
        match self {
            JournalLocation::Sqlite(path) => {
                let (journal, report) = SqliteJournal::open(path)?;
                Ok((
                    Arc::new(journal),
                    JournalOpenReport {
                        created: report.created,
                        moved_aside: report.moved_aside,
                        migrated_from: report.migrated_from,
                        to_version: crate::SCHEMA_VERSION,
                    },
                ))
            }
            #[cfg(feature = "postgres")]
            JournalLocation::Postgres(options) => {
                let (journal, report) = PgJournal::open(options)?;
                Ok((
                    Arc::new(journal),
                    JournalOpenReport {
                        created: report.created,
                        moved_aside: None,
                        migrated_from: report.migrated_from,
                        to_version: crate::PG_SCHEMA_VERSION,
                    },
                ))
            }
        }
    }

    /// What `herald deliveries list` shows. SQLite: read through a read-only connection (a journal
    /// that does not exist has nothing); PostgreSQL: read over a connection of its own.
    pub fn delivery_report(&self, limit: usize) -> Result<DeliveryReport, JournalOpenError> {
        match self {
            JournalLocation::Sqlite(path) => Ok(crate::delivery_report(path, limit)?),
            #[cfg(feature = "postgres")]
            JournalLocation::Postgres(options) => {
                crate::postgres::delivery_report(options, limit).map_err(|reason| {
                    JournalOpenError::Postgres(PgOpenError::Connect {
                        target: options.target().to_owned(),
                        reason,
                    })
                })
            }
        }
    }
}
