//! What the daemon hosts: the gateway's journal and agent, built by whoever links them.
//!
//! **Architecture Invariant:** the daemon never names a concrete journal or agent. The binary supplies a
//! [`PayloadFactory`]; that keeps the crates that build C code (SQLite, TLS) out of the daemon, which
//! therefore stays pure Rust and type-checks for every OS, and it lets tests host any payload.

use std::fmt;
use std::sync::Arc;

use herald_gateway::adapter::PushAdapter;
use herald_gateway::agent::Agent;
use herald_gateway::journal::Journal;
use herald_home::Home;
use herald_home::config::Config;
use herald_home::lifecycle::LifecycleEvent;
use herald_home::secrets::Variables;

/// The parts of a running gateway that the binary chooses.
#[derive(Debug)]
pub struct Payload {
    pub journal: Arc<dyn Journal>,
    pub agent: Arc<dyn Agent>,
    /// Push adapters (Telegram, ...) the config enables; the HTTP adapter is the daemon's own.
    pub adapters: Vec<Box<dyn PushAdapter>>,
    /// Things worth a lifecycle event that happened while building (a corrupt journal moved aside, a
    /// schema migration).
    pub events: Vec<LifecycleEvent>,
}

/// Why the payload could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The config (or the environment it names) is at fault: exit 78, a restart will not help.
    #[error("{0}")]
    Config(String),
    /// Anything else (the journal cannot be opened, ...): exit 1, a restart may help.
    #[error("{0}")]
    Failure(String),
}

/// Builds the payload for one gateway process. `variables` answers for the secrets the config names
/// (the environment, then the home's secrets store): the only place a payload may read them.
pub trait PayloadFactory: Send + Sync {
    fn build(&self, home: &Home, config: &Config, variables: &Variables) -> Result<Payload, PayloadError>;

    /// Builds the configured agent alone (a reload replaces the running one with it).
    fn agent(
        &self,
        _home: &Home,
        _config: &Config,
        _variables: &Variables,
    ) -> Result<Arc<dyn Agent>, PayloadError> {
        Err(PayloadError::Failure(
            "this payload cannot rebuild its agent: restart to apply".into(),
        ))
    }
}

/// A shared factory, as [`crate::RunOptions`] carries it.
#[derive(Clone)]
pub struct SharedFactory(pub Arc<dyn PayloadFactory>);

impl fmt::Debug for SharedFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PayloadFactory")
    }
}
