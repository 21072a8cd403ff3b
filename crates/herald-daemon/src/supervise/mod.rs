//! Supervision: `herald run` is a monitor that runs the gateway as a worker child and restarts it when it
//! exits unexpectedly — or stops beating ([`watchdog`]) — so "restart on crash" does not depend on an OS
//! service manager (a Scheduled Task or a Startup-folder launch has none).
//!
//! **Architecture Invariant:** the monitor holds the instance lock and the PID record for its whole life;
//! the worker holds `run/worker.lock` while it serves. A worker whose monitor dies sees its stdin close and
//! stops in a planned way, and a new worker waits for that lock, so two workers never serve one home.

pub mod monitor;
pub mod policy;
pub mod watchdog;
