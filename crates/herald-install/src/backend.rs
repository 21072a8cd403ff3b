//! The service managers Herald registers with, and for whom: the vocabulary every other module of this
//! crate speaks, so it depends on nothing of theirs.

use std::fmt;

/// Which service manager a registration is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// A systemd unit (Linux).
    Systemd,
    /// A launchd LaunchAgent / LaunchDaemon (macOS).
    Launchd,
    /// A Windows Scheduled Task with a logon trigger (per user, no admin).
    Task,
    /// The per-user `Run` value starting `heraldw.exe` at logon (the fallback when task registration is
    /// refused; named `startup` after the Startup folder it once used).
    Startup,
    /// A Windows Service under the SCM (admin).
    WindowsService,
}

impl Backend {
    /// Whether the manager restarts the gateway itself, promptly and observably. Those run `run
    /// --no-supervise`, since two supervisors would fight over restarts and rate limits. The others run
    /// Herald's own monitor: a logon task and a Run value start the gateway once; the Windows SCM's
    /// failure actions are coarse (fixed delays, one counter a day) and act only on the service's own
    /// process, so the service hosts the monitor, which restarts a crashed worker within milliseconds
    /// with its backoff and crash-loop limit, and the failure actions are the net for the monitor.
    pub fn supervises(self) -> bool {
        matches!(self, Backend::Systemd | Backend::Launchd)
    }

    /// Whether paths in this registration are Windows paths.
    pub fn windows(self) -> bool {
        matches!(self, Backend::Task | Backend::Startup | Backend::WindowsService)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Systemd => "systemd",
            Backend::Launchd => "launchd",
            Backend::Task => "task",
            Backend::Startup => "startup",
            Backend::WindowsService => "windows-service",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Per user (no admin; the default) or system-wide (root/admin, running as `ServiceSpec::run_as`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scope {
    #[default]
    User,
    System,
}
