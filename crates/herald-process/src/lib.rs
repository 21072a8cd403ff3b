//! Herald's process primitives: who a process is, whether it lives, how to end it, how to start one
//! detached, where its output goes — and the client side of the control channel with the stop ladder
//! built on them. This is everything the running gateway (`herald-daemon`) and the commands that manage it
//! need from the OS; registering with service managers is `herald-install`, which the daemon does not link.
//!
//! Decision logic is pure and compiled on every OS; the calls into the OS live in the leaf modules `os` and
//! `control/{unix,windows}.rs` (one file per OS, same signatures), so callers carry no `cfg`.
//!
//! **Architecture Invariant:** process identity comes from OS APIs (procfs, the Win32 process APIs, via
//! `sysinfo` and `windows-sys`), never from running and parsing `ps`, `tasklist`, `wmic` or PowerShell,
//! whose output is localized, slow, absent on current Windows, or flashes a console window.
//!
//! **Architecture Invariant:** nothing is signalled or killed on the word of a PID record alone: the
//! identity (pid, start time, command line) is verified right before every kill ([`terminate`]).

pub mod control;
pub mod descriptors;
pub mod disk;
pub mod identity;
pub mod image;
pub mod port_holder;
pub mod spawn;
pub mod stdio;
pub mod stop;
pub mod terminate;
pub mod threads;
pub mod wait;

#[cfg(unix)]
#[path = "os/unix.rs"]
mod os;
#[cfg(windows)]
#[path = "os/windows.rs"]
mod os;

pub use identity::{Identity, ProcessInfo, ProcessProbe, probe, verify};
pub use stop::{StopError, StopOptions, StopOutcome, StopPath, StopVia, stop_gateway};
pub use terminate::{TerminateError, force_kill_verified, request_terminate_verified};
