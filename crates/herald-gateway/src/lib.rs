//! Herald's payload: the conversations a gateway carries.
//!
//! This crate grows with the sessions issue (journal, adapters, agent backends, router). What it holds
//! now is the part the process lifecycle depends on: [`turns::TurnTracker`], which knows every turn in
//! flight, refuses new ones once a drain begins, and lets the daemon wait for the rest within a budget.
//!
//! **Architecture Invariant:** the gateway knows nothing about how it was asked to stop. Signals, control
//! channels and markers are the daemon's business; the gateway only offers `begin_drain` and
//! `finish_drain`, so every stop path drains the same way, exactly once.

pub mod adapter;
pub mod agent;
pub mod backoff;
pub mod engine;
pub mod http;
pub mod journal;
pub mod turns;

pub use turns::{DrainReport, Draining, ResumeLedger, TurnGuard, TurnId, TurnInfo, TurnTracker};
