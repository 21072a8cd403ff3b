//! The running Herald process: it takes the instance lock, keeps the runtime records honest, serves the
//! control channel, listens for OS signals and stop markers, and carries out a planned stop by draining
//! the gateway once. The client side of a planned stop (the control-channel client and the stop ladder,
//! used by `herald stop` and by `herald run --replace` here) is `herald-process`.
//!
//! **Architecture Invariant:** the daemon owns process lifecycle only; it does not parse chat messages or
//! call agents (that is `herald-gateway`), and it links no service registration (that is
//! `herald-install`): it only *runs* under a manager — sd_notify, and its Windows Service session.
//! It hosts the gateway's engine and HTTP adapter, with a journal and agent the binary hands it through
//! [`payload::PayloadFactory`].

mod beat;
mod config_wait;
pub mod control;
mod host;
mod lock_watch;
pub mod marker;
mod memory;
pub mod payload;
pub mod readiness;
mod reload;
pub mod run;
mod serve;
mod serve_policy;
pub mod signals;
pub mod startup;
pub mod state;
pub mod supervise;
pub mod winsvc;

pub use payload::{Payload, PayloadError, PayloadFactory, SharedFactory};
pub use run::{OnFatalStart, RunError, RunMode, RunOptions, run};
