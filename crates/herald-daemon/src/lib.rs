//! The running Herald process: it takes the instance lock, keeps the runtime records honest, listens on
//! the control channel, for OS signals and for stop markers, and carries out a planned stop by draining
//! the gateway once. It also holds the client side of a planned stop (`stop`), used by `herald stop` and
//! `herald run --replace`, because both sides of the protocol belong together.
//!
//! **Architecture Invariant:** the daemon owns process lifecycle only; it does not parse chat messages or
//! call agents (that is `herald-gateway`), and it does not install services (that is `herald-service`).
//! It hosts the gateway's engine and HTTP adapter, with a journal and agent the binary hands it through
//! [`payload::PayloadFactory`].

pub mod control;
mod host;
pub mod marker;
pub mod notify;
pub mod payload;
pub mod run;
pub mod signals;
pub mod state;
pub mod stop;
pub mod supervise;
pub mod winsvc;

pub use payload::{Payload, PayloadError, PayloadFactory, SharedFactory};
pub use run::{RunError, RunMode, RunOptions, run};
pub use stop::{StopError, StopOptions, StopOutcome, StopPath, StopVia, stop_gateway};
