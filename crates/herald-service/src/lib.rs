//! The OS side of Herald: who a process is, whether it lives, and how to end it.
//!
//! Later issues add the service backends (systemd, launchd, Scheduled Task, Startup folder, Windows
//! service) and detached spawn here. Decision logic is pure and compiled on every OS; the calls into the OS
//! live in the leaf module `os` (one file per OS, same signatures), so callers carry no `cfg`.
//!
//! **Architecture Invariant:** process identity comes from OS APIs (procfs, the Win32 process APIs, via
//! `sysinfo` and `windows-sys`), never from running and parsing `ps`, `tasklist`, `wmic` or PowerShell,
//! whose output is localized, slow, absent on current Windows, or flashes a console window.

pub mod deep;
pub mod identity;
pub mod install;
pub mod spawn;
pub mod status;
pub mod stdio;
pub mod terminate;
pub mod wait;

#[cfg(unix)]
#[path = "os/unix.rs"]
mod os;
#[cfg(windows)]
#[path = "os/windows.rs"]
mod os;

pub use identity::{Identity, ProcessInfo, ProcessProbe, probe, verify};
pub use terminate::{TerminateError, force_kill_verified, request_terminate_verified};
