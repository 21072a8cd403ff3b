//! The payload this binary hosts: the journal (`state.db`, or the PostgreSQL database `[journal]` names), the configured agent backend and the push
//! adapters the config enables (Telegram, Matrix, webhook callbacks).
//!
//! This is the one place that names concrete journal and agent types; the daemon sees them only as
//! trait objects (see `herald_daemon::payload`).

use std::sync::Arc;

use herald_daemon::{Payload, PayloadError, PayloadFactory};
use herald_gateway::adapter::PushAdapter;
use herald_gateway::agent::Agent;
use herald_gateway::agent::command::CommandAgent;
use herald_gateway::agent::echo::EchoAgent;
use herald_gateway::agent::outfiles::OutFiles;
use herald_home::Home;
use herald_home::config::{AgentBackend, Config};
use herald_home::lifecycle::{EventKind, LifecycleEvent};
use herald_home::secrets::Variables;
use herald_journal::{JournalLocation, JournalOpenError};
use herald_openai::OpenAiAgent;
use herald_telegram::{TelegramAdapter, TelegramOptions};
use herald_webhook::WebhookAdapter;

/// Builds the standard payload.
#[derive(Debug, Default)]
pub struct StandardPayload;

impl PayloadFactory for StandardPayload {
    fn build(&self, home: &Home, config: &Config, variables: &Variables) -> Result<Payload, PayloadError> {
        let agent = agent(config, variables, Some(home))?;
        let adapters = adapters(home, config, variables)?;
        let location = JournalLocation::resolve(home, &config.journal, variables).map_err(|e| match e {
            JournalOpenError::MissingPassword { .. } | JournalOpenError::WithoutPostgres => {
                PayloadError::Config(e.to_string())
            }
            e => PayloadError::Failure(e.to_string()),
        })?;
        // Among replicas sharing a database, this one is its machine and home.
        let name = format!(
            "{}:{}",
            herald_process::identity::host_name().unwrap_or_else(|| "unknown-host".into()),
            home.root().display()
        );
        let location = location.as_replica(&name);
        let (journal, report) = location
            .open()
            .map_err(|e| PayloadError::Failure(e.to_string()))?;
        let pid = std::process::id();
        let mut events = Vec::new();
        if report.created && location.backend() == "postgres" {
            events.push(
                LifecycleEvent::new(EventKind::Journal, pid)
                    .with("action", "created")
                    .with("backend", location.backend())
                    .with("database", location.describe())
                    .with("schema_version", report.to_version),
            );
        }
        if let Some((aside, reason)) = &report.moved_aside {
            events.push(
                LifecycleEvent::new(EventKind::Journal, pid)
                    .with("action", "moved_aside")
                    .with("path", location.describe())
                    .with("moved_to", aside.display().to_string())
                    .with("reason", reason.as_str()),
            );
        }
        if let Some(from) = report.migrated_from {
            events.push(
                LifecycleEvent::new(EventKind::Journal, pid)
                    .with("action", "migrated")
                    .with("backend", location.backend())
                    .with("from_version", from)
                    .with("to_version", report.to_version),
            );
        }
        Ok(Payload {
            journal,
            agent,
            adapters,
            events,
        })
    }

    fn agent(
        &self,
        home: &Home,
        config: &Config,
        variables: &Variables,
    ) -> Result<Arc<dyn Agent>, PayloadError> {
        agent(config, variables, Some(home))
    }
}

fn adapters(
    home: &Home,
    config: &Config,
    variables: &Variables,
) -> Result<Vec<Box<dyn PushAdapter>>, PayloadError> {
    let mut adapters: Vec<Box<dyn PushAdapter>> = Vec::new();
    if config.telegram.enabled {
        let options = TelegramOptions::from_config(&config.telegram, variables)
            .map_err(|e| PayloadError::Config(e.to_string()))?
            .with_home(home.clone())
            .with_media_limits(config.gateway.media_max_mb, config.gateway.media_retention_days);
        let adapter = TelegramAdapter::new(options).map_err(|e| PayloadError::Failure(e.to_string()))?;
        adapters.push(Box::new(adapter));
    }
    if config.matrix.enabled {
        adapters.push(matrix(home, config, variables)?);
    }
    if !config.webhooks.is_empty() {
        let webhooks = herald_gateway::webhook::resolve(&config.webhooks, variables)
            .map_err(|e| PayloadError::Config(e.to_string()))?;
        adapters.push(Box::new(
            WebhookAdapter::new(webhooks).map_err(PayloadError::Failure)?,
        ));
    }
    Ok(adapters)
}

#[cfg(feature = "matrix")]
fn matrix(home: &Home, config: &Config, variables: &Variables) -> Result<Box<dyn PushAdapter>, PayloadError> {
    use herald_matrix::{MatrixAdapter, MatrixOptions};
    let options = MatrixOptions::from_config(&config.matrix, variables, home.clone())
        .map_err(|e| PayloadError::Config(e.to_string()))?;
    Ok(Box::new(MatrixAdapter::new(options)))
}

#[cfg(not(feature = "matrix"))]
fn matrix(_: &Home, _: &Config, _: &Variables) -> Result<Box<dyn PushAdapter>, PayloadError> {
    Err(PayloadError::Config(WITHOUT_MATRIX.to_owned()))
}

/// What a build without the `matrix` feature says of `[matrix] enabled = true`.
#[cfg(not(feature = "matrix"))]
pub(crate) const WITHOUT_MATRIX: &str = "[matrix] is enabled, but this herald was built without Matrix support: \
     build it with the `matrix` feature (`cargo install --path crates/herald --locked --features matrix`)";

/// The configured agent backend (also what `herald doctor` probes, without a `home`: a probe makes no
/// turn, so it needs no folder for files).
pub(crate) fn agent(
    config: &Config,
    variables: &Variables,
    home: Option<&Home>,
) -> Result<Arc<dyn Agent>, PayloadError> {
    Ok(match config.agent.backend {
        AgentBackend::Echo => Arc::new(EchoAgent),
        AgentBackend::Command => {
            let agent = CommandAgent::from_config(&config.agent.command);
            Arc::new(match home {
                Some(home) => agent.with_files(OutFiles::new(
                    home.clone(),
                    config.gateway.media_max_mb.saturating_mul(1 << 20),
                )),
                None => agent,
            })
        }
        AgentBackend::Openai => Arc::new(
            OpenAiAgent::new(&config.agent.openai, variables)
                .map_err(|e| PayloadError::Config(e.to_string()))?,
        ),
    })
}
