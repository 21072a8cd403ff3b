//! Connections to the journal's database: the URL and password as resolved from the config, TLS by
//! rustls, and reconnecting with a pause after a loss.
//!
//! **Invariant:** the password never leaves [`PgOptions`] except into the driver's connection: it is
//! not in the URL (the config refuses one there), in `Debug`, in errors nor in logs; what is shown of the
//! database is [`PgOptions::target`], the URL without it.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use herald_gateway::journal::{JournalError, JournalErrorKind};
use tokio::time::Instant;
use tokio_postgres::Client;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{Health, PgOpenError};

/// Where the journal's database is and how to log in: resolved once from `[journal]`.
#[derive(Clone)]
pub struct PgOptions {
    /// The URL as configured (it never holds a password): what errors and `status` show.
    target: String,
    config: tokio_postgres::Config,
    ca_file: Option<PathBuf>,
    /// How this gateway takes part among the replicas sharing the database.
    replica: ReplicaOptions,
}

/// How a gateway takes part among the replicas sharing its database (see `membership`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaOptions {
    /// Its machine and home, for people (`status`): not an identity, two replicas may share it.
    pub name: String,
    /// How long its lease lasts without a renewal (renewed every third of it): the longest a dead
    /// replica's turns wait for another to take them.
    pub lease_ttl: Duration,
}

impl Default for ReplicaOptions {
    fn default() -> ReplicaOptions {
        ReplicaOptions {
            name: "herald".to_owned(),
            lease_ttl: DEFAULT_LEASE_TTL,
        }
    }
}

/// A replica's lease TTL unless `[journal] lease_ttl_secs` says otherwise.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

impl fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgOptions")
            .field("target", &self.target)
            .field("password", &self.config.get_password().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("replica", &self.replica)
            .finish()
    }
}

impl PgOptions {
    /// Reads `url` (`postgres://USER@HOST:PORT/DATABASE?sslmode=…`), with the password from elsewhere
    /// (the variable `[journal] password_env` names) and extra trusted CAs from `ca_file`.
    pub fn new(
        url: &str,
        password: Option<&str>,
        ca_file: Option<PathBuf>,
    ) -> Result<PgOptions, PgOpenError> {
        if let Some(problem) = herald_home::config::postgres_url_problem(url) {
            return Err(PgOpenError::Url {
                target: url.to_owned(),
                reason: problem,
            });
        }
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|e: tokio_postgres::Error| PgOpenError::Url {
                target: url.to_owned(),
                reason: e.to_string(),
            })?;
        if let Some(password) = password {
            config.password(password);
        }
        if config.get_application_name().is_none() {
            config.application_name("herald");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        // A peer that vanished (a network cut, a stopped server) is noticed without waiting for the OS's
        // two-hour keepalive default.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        // And the server notices a vanished client as soon: the writer's connection holds the database
        // (an advisory lock, see `writer`), which a session the server still believes in would keep.
        let server_keepalive =
            "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3";
        let options = match config.get_options() {
            Some(given) if !given.trim().is_empty() => format!("{given} {server_keepalive}"),
            _ => server_keepalive.to_owned(),
        };
        config.options(&options);
        Ok(PgOptions {
            target: url.to_owned(),
            config,
            ca_file,
            replica: ReplicaOptions::default(),
        })
    }

    /// How this gateway takes part among the replicas (its name, lease TTL, push adapters).
    pub fn with_replica(mut self, replica: ReplicaOptions) -> PgOptions {
        self.replica = replica;
        self
    }

    pub fn replica(&self) -> &ReplicaOptions {
        &self.replica
    }

    /// The database as shown to people: the URL, which holds no password.
    pub fn target(&self) -> &str {
        &self.target
    }

    pub(super) fn connector(&self) -> Result<Connector, PgOpenError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &self.ca_file {
            use rustls_pki_types::CertificateDer;
            use rustls_pki_types::pem::PemObject;
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| PgOpenError::Tls {
                target: self.target.clone(),
                reason: format!("cannot read ca_file {}: {e}", path.display()),
            })?;
            let mut added = 0;
            for cert in certs {
                let cert = cert.map_err(|e| PgOpenError::Tls {
                    target: self.target.clone(),
                    reason: format!("ca_file {}: {e}", path.display()),
                })?;
                roots.add(cert).map_err(|e| PgOpenError::Tls {
                    target: self.target.clone(),
                    reason: format!("ca_file {}: {e}", path.display()),
                })?;
                added += 1;
            }
            if added == 0 {
                return Err(PgOpenError::Tls {
                    target: self.target.clone(),
                    reason: format!("ca_file {} holds no certificate", path.display()),
                });
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| PgOpenError::Tls {
                target: self.target.clone(),
                reason: e.to_string(),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Connector {
            options: self.clone(),
            tls: MakeRustlsConnect::new(tls),
        })
    }

    /// Whether the connection must be encrypted (`sslmode=require`).
    pub fn requires_tls(&self) -> bool {
        self.config.get_ssl_mode() == SslMode::Require
    }
}

/// Makes connections (the writer's, the reader's); clones share the TLS setup.
#[derive(Clone)]
pub(super) struct Connector {
    options: PgOptions,
    tls: MakeRustlsConnect,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("options", &self.options)
            .finish()
    }
}

impl Connector {
    pub(super) fn target(&self) -> &str {
        &self.options.target
    }

    /// One attempt. The connection's own task runs on the journal's runtime until it closes.
    pub(super) async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = self.options.config.connect(self.tls.clone()).await?;
        let target = self.options.target.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("journal connection to {target} ended: {e}");
            }
        });
        Ok(client)
    }

    /// Connects, trying again with a growing pause (0.1 s to 2 s) until `deadline`. A refusal that
    /// waiting cannot change (a wrong password, a missing database) is not retried. The error is why,
    /// for a person.
    pub(super) async fn connect_until(&self, deadline: Instant, health: &Health) -> Result<Client, String> {
        let mut pause = Duration::from_millis(100);
        loop {
            match tokio::time::timeout_at(deadline, self.connect()).await {
                Ok(Ok(client)) => return Ok(client),
                Ok(Err(e)) => {
                    let why = describe(&e);
                    health.lost(&why);
                    if is_refusal(&e) || Instant::now() + pause >= deadline {
                        return Err(why);
                    }
                }
                Err(_) => return Err("no answer".into()),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// [`Self::connect_until`], its failure as a journal error.
    pub(super) async fn connect_or_error(
        &self,
        deadline: Instant,
        health: &Health,
    ) -> Result<Client, JournalError> {
        self.connect_until(deadline, health)
            .await
            .map_err(|why| unreachable(self.target(), &why))
    }
}

/// A driver error as a person reads it: the server's code and message, or the I/O failure with its cause.
pub(super) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A refusal that trying again will not change: authentication (class 28) or a database that does not
/// exist (class 3D).
fn is_refusal(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|code| code.code().starts_with("28") || code.code().starts_with("3D"))
}

fn unreachable(target: &str, why: &str) -> JournalError {
    JournalError::new(
        JournalErrorKind::Storage,
        format!("the journal's database {target} is unreachable ({why})"),
    )
}
