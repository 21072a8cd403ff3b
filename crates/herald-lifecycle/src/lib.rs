//! Herald's lifecycle layer: `start`, `stop`, `restart`, `status`, `status --deep`, `install` and
//! `uninstall` as library calls with typed options and typed outcomes, for the binary (and any other
//! front end) to call and present.
//!
//! A command resolves its home once into a [`Target`], which reads `herald.toml` at most once and derives
//! the [`herald_home::StopBudget`] from it; every operation takes the target. Where a home is registered
//! with a service manager, [`route`] carries `start`/`stop`/`restart` out through it; otherwise the
//! detached start and the stop ladder of `herald-process` do.
//!
//! **Architecture Invariant:** nothing here prints or exits; every outcome and every error is a value
//! ([`LifecycleError::exit_code`] maps errors to the exit-code contract). The binary decides how to show
//! them.
//!
//! **Architecture Invariant:** this layer never links the gateway or the daemon: it talks to a running
//! gateway only through the home's files, the control channel and the OS (`herald-process`), and to
//! service managers through `herald-install`.

pub mod deep;
pub mod direct;
pub mod doctor;
mod error;
pub mod install;
pub mod log_source;
pub mod restart;
pub mod route;
pub mod start;
pub mod status;
pub mod stop;
mod target;
pub mod upgrade;
pub mod variables;

pub use error::LifecycleError;
pub use herald_install::manage::Action;
pub use route::Routed;
pub use target::Target;
