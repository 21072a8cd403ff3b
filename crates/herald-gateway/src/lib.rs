//! Herald's payload: the conversations a gateway carries.
//!
//! The turn [`engine`] takes messages from the adapters ([`http`], and push adapters through
//! [`adapter`]), stores them in the [`journal`], has an [`agent`] answer them, and hands the stored
//! replies back, each session's in turn order (`reply_order`). [`turns::TurnTracker`] is the one registry of turns: it joins duplicates, bounds
//! how many run at once and keeps the rest in a fair line, counts them, refuses new ones once a drain begins, and lets the daemon wait for the rest
//! within a budget. [`backoff`] is the one retry schedule every retry loop uses. [`health`] is the board
//! where every adapter and the agent say how they are doing. [`commands`] answers `/new`, `/stop`, `/status`,
//! `/whoami` and `/help` before the agent, the same on every adapter.
//!
//! **Architecture Invariant:** the gateway knows nothing about how it was asked to stop. Signals, control
//! channels and markers are the daemon's business; the gateway only offers `begin_drain` and
//! `finish_drain`, so every stop path drains the same way, exactly once. Nor does it know which store
//! keeps the journal: it holds only the [`journal`] traits, whose every call is awaited, never blocking.

pub mod adapter;
pub mod agent;
pub mod backoff;
pub mod cluster;
pub mod commands;
pub mod engine;
pub mod health;
pub mod http;
pub mod journal;
pub mod notice;
mod reply_order;
pub mod turns;
pub mod webhook;

pub use turns::{
    Admission, DrainReport, Draining, QueuedTurn, ResumeLedger, TurnCounts, TurnGuard, TurnId, TurnInfo,
    TurnKey, TurnOutcome, TurnTracker,
};
