//! Service registration, the pure part: what `herald install` writes for each service manager, and how
//! to read an existing registration back for drift detection.
//!
//! One file per concept: [`names`] (per-profile and legacy names), [`spec`] (the one input,
//! [`ServiceSpec`]), a generator and reader per manager — [`systemd`] (unit text), [`launchd`] (plist),
//! [`task`] (Task Scheduler XML), [`startup`] (the Startup-folder `.cmd`) — [`winargs`] (Windows
//! command-line quoting) and [`error`].
//!
//! **Invariant:** everything here is a pure function of its input — no process is spawned, no file is
//! read or written, nothing is printed — so every generator for every OS is compiled and tested on every
//! OS, and `install --dry-run` can show exactly what would be written. The executor that writes files and
//! runs `systemctl`/`launchctl`/`schtasks` is separate.
//!
//! **Invariant:** every generator has a reader, and `read(generate(spec)) == spec.invocation(backend)` for
//! hostile paths (spaces, quotes, `%`, `$`, `^`, `&`, `!`, backslashes, non-ASCII); what cannot be
//! encoded faithfully is a typed [`InstallError`], never a best effort.

pub mod error;
pub mod launchd;
pub mod names;
pub mod spec;
pub mod startup;
pub mod systemd;
pub mod task;
pub mod winargs;

pub use error::InstallError;
pub use spec::{Backend, Invocation, STOP_MARGIN_SECS, Scope, ServiceSpec};
