//! Registering Herald with the OS service managers — systemd, launchd, the Task Scheduler, the per-user
//! `Run` key and the Windows Service Control Manager — and reading back what is registered.
//!
//! The vocabulary: [`backend`] (which manager, which scope), [`names`] (per-profile and legacy names),
//! [`spec`] (the one input, [`ServiceSpec`]). A generator and reader per manager: [`systemd`] (unit text),
//! [`launchd`] (plist), [`task`] (Task Scheduler XML), [`startup`] (the Startup fallback's `Run` value), [`scm`]
//! (the Windows Service registration, as data), with [`winargs`] (Windows command-line quoting) and
//! [`error`].
//!
//! The orchestration on top: [`context`] (where registrations live, overridable by `HERALD_*_DIR`
//! variables, and who is installing), [`manage`] (the planners: spec + what is installed now → a
//! [`plan::Plan`]), [`execute`] (carries a plan out), [`runner`] (the one place a command is spawned),
//! [`facts`] (what the manager says about a registration, for `status --deep`), [`access`] (whether the
//! account a system registration runs as can use the home), [`elevate`] (the UAC hand-off of a Windows
//! Service install or uninstall from a prompt that is not elevated).
//!
//! **Architecture Invariant:** the running gateway (`herald-daemon`) does not link this crate: it needs to
//! *run* under a manager (sd_notify, its SCM session), never to generate or plan a registration. Only the
//! lifecycle layer and the binary use it.
//!
//! **Invariant:** every generator below is a pure function of its input — no process is spawned, no file is
//! read or written, nothing is printed — so every generator for every OS is compiled and tested on every
//! OS, and `install --dry-run` can show exactly what would be written. The executor that writes files and
//! runs `systemctl`/`launchctl`/`schtasks` is separate: [`manage`] plans (reading only), [`execute`] acts.
//!
//! **Invariant:** every generator has a reader, and `read(generate(spec)) == spec.invocation(backend)` for
//! hostile paths (spaces, quotes, `%`, `$`, `^`, `&`, `!`, backslashes, non-ASCII); what cannot be
//! encoded faithfully is a typed [`InstallError`], never a best effort.

pub mod access;
pub mod backend;
pub mod context;
pub mod elevate;
pub mod error;
pub mod execute;
pub mod facts;
pub mod launchd;
pub mod manage;
pub mod names;
pub mod plan;
pub mod runner;
pub mod scm;
pub mod spec;
pub mod startup;
pub mod systemd;
pub mod task;
pub mod winargs;

#[cfg(unix)]
#[path = "os/unix.rs"]
mod os;
#[cfg(windows)]
#[path = "os/windows.rs"]
mod os;

pub use error::InstallError;
pub use spec::{Backend, Invocation, Scope, ServiceSpec};
