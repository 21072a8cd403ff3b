//! The contract between every Herald process.
//!
//! A gateway, the CLI that asks it to stop, a status probe and a service manager's launcher are separate
//! processes that never share memory. What they share is a *home* directory, and this crate is the
//! single definition of what lives there: the paths, the config file, the runtime records and their
//! formats, the instance lock, the exit-code contract and the stop budget.
//!
//! **Invariant:** this crate never starts a process, never opens a socket and never blocks on anything but
//! the file system (the one exception, [`lock::InstanceLock::wait_released`], blocks on a file lock). It is
//! plain synchronous Rust so every other crate, and every OS, can depend on it — which is also why the
//! one poison-tolerant lock helper every crate shares ([`sync::MutexExt`]) lives here.

pub mod access;
pub mod atomic;
pub mod budget;
pub mod build_info;
pub mod config;
pub mod exit;
pub mod lifecycle;
pub mod lock;
pub mod media;
pub mod ownership;
pub mod paths;
pub mod records;
pub mod secrets;
pub mod sync;
pub mod time;
pub mod words;

/// This build's version: `HERALD_BUILD_VERSION` when it was set at build time (a packager's own
/// version string, or the second build the upgrade tests install over the first), else the crate's.
/// Every process reports this one value (`--version`, `version --json`, the PID record, the start
/// event), so an upgrade can tell which build is serving.
pub const VERSION: &str = match option_env!("HERALD_BUILD_VERSION") {
    Some(version) => version,
    None => env!("CARGO_PKG_VERSION"),
};

pub use budget::StopBudget;
pub use exit::ExitCode;
pub use paths::{Home, HomeSource, ProfileName};
