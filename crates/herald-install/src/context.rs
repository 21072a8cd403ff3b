//! Where registrations live on this machine and who is installing: the facts a plan depends on besides
//! the spec.
//!
//! **Invariant:** every OS location can be overridden by an environment variable, so tests (and people
//! who keep their units elsewhere) never touch the real user's directories:
//!
//! | variable | default |
//! | --- | --- |
//! | `HERALD_SYSTEMD_USER_DIR` | `$XDG_CONFIG_HOME/systemd/user`, else `~/.config/systemd/user` |
//! | `HERALD_SYSTEMD_SYSTEM_DIR` | `/etc/systemd/system` |
//! | `HERALD_SYSTEMD_RUN_DIR` | `/run/systemd/system` (exists only when systemd is the running init) |
//! | `HERALD_LAUNCH_AGENTS_DIR` | `~/Library/LaunchAgents` (macOS) |
//! | `HERALD_STARTUP_DIR` | `%APPDATA%\Microsoft\Windows\Start Menu\Programs\Startup` (Windows) |
//! | `HERALD_TASKS_DIR` | `%SystemRoot%\System32\Tasks` (Windows; read only, when `schtasks /Query /XML` is silent) |
//! | `HERALD_RUN_KEY` | `Software\Microsoft\Windows\CurrentVersion\Run` under `HKEY_CURRENT_USER` (Windows: the Startup fallback's value) |
//!
//! The commands (`systemctl`, `loginctl`, `launchctl`, `schtasks`) are found on `PATH`. The context is
//! built from a variable lookup passed in, so it is a pure function in tests.

use std::ffi::OsString;
use std::path::PathBuf;

/// The OS whose service managers `--backend auto` chooses from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetOs {
    Linux,
    MacOs,
    Windows,
    Other,
}

impl TargetOs {
    pub fn current() -> TargetOs {
        match std::env::consts::OS {
            "linux" => TargetOs::Linux,
            "macos" => TargetOs::MacOs,
            "windows" => TargetOs::Windows,
            _ => TargetOs::Other,
        }
    }

    /// The OS's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            TargetOs::Linux => "Linux",
            TargetOs::MacOs => "macOS",
            TargetOs::Windows => "Windows",
            TargetOs::Other => std::env::consts::OS,
        }
    }
}

/// The directories registrations are written to and read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locations {
    pub systemd_user_dir: Option<PathBuf>,
    pub systemd_system_dir: PathBuf,
    /// Present when systemd is PID 1 (`sd_booted`).
    pub systemd_run_dir: PathBuf,
    pub launch_agents_dir: Option<PathBuf>,
    /// Where legacy Startup-folder launchers (`.cmd`, `.vbs`, `.lnk`) are looked for and removed.
    pub startup_dir: Option<PathBuf>,
    pub tasks_dir: Option<PathBuf>,
    /// The subkey of `HKEY_CURRENT_USER` holding the Startup fallback's `Run` value (Windows).
    pub run_key: Option<String>,
}

/// Who is installing, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub os: TargetOs,
    /// The effective uid (Unix); 0 is root.
    pub euid: Option<u32>,
    /// The real uid (Unix): the launchd `gui/<uid>` domain.
    pub uid: Option<u32>,
    /// The login name (`USER`, else `LOGNAME`, else `USERNAME`).
    pub user: Option<String>,
    /// The user who ran `sudo` (`SUDO_USER`), if any.
    pub sudo_user: Option<String>,
    /// `DOMAIN\user` (Windows: `USERDOMAIN` and `USERNAME`), the Scheduled Task's principal.
    pub windows_account: Option<String>,
    /// Running under WSL (`WSL_DISTRO_NAME` or `WSL_INTEROP` set), for the no-systemd guidance.
    pub wsl: bool,
    pub locations: Locations,
}

impl Context {
    /// The context of this process.
    pub fn current() -> Context {
        Context::from_lookup(
            TargetOs::current(),
            super::os::effective_uid(),
            super::os::real_uid(),
            |name| std::env::var_os(name),
        )
    }

    /// The context for `os` with environment variables from `var`.
    pub fn from_lookup(
        os: TargetOs,
        euid: Option<u32>,
        uid: Option<u32>,
        var: impl Fn(&str) -> Option<OsString>,
    ) -> Context {
        let path = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let text = |name: &str| {
            var(name)
                .and_then(|v| v.into_string().ok())
                .filter(|v| !v.is_empty())
        };
        let home = path("HOME");
        let systemd_user_dir = path("HERALD_SYSTEMD_USER_DIR").or_else(|| {
            path("XDG_CONFIG_HOME")
                .or_else(|| home.as_ref().map(|h| h.join(".config")))
                .map(|c| c.join("systemd").join("user"))
        });
        let launch_agents_dir = path("HERALD_LAUNCH_AGENTS_DIR").or_else(|| {
            (os == TargetOs::MacOs)
                .then(|| home.as_ref().map(|h| h.join("Library").join("LaunchAgents")))
                .flatten()
        });
        let startup_dir = path("HERALD_STARTUP_DIR").or_else(|| {
            (os == TargetOs::Windows)
                .then(|| {
                    path("APPDATA").map(|a| {
                        a.join("Microsoft")
                            .join("Windows")
                            .join("Start Menu")
                            .join("Programs")
                            .join("Startup")
                    })
                })
                .flatten()
        });
        let tasks_dir = path("HERALD_TASKS_DIR").or_else(|| {
            (os == TargetOs::Windows)
                .then(|| path("SystemRoot").map(|r| r.join("System32").join("Tasks")))
                .flatten()
        });
        let run_key = text("HERALD_RUN_KEY")
            .or_else(|| (os == TargetOs::Windows).then(|| super::startup::RUN_KEY.to_owned()));
        let user = text("USER")
            .or_else(|| text("LOGNAME"))
            .or_else(|| text("USERNAME"));
        let windows_account = text("USERNAME").map(|name| match text("USERDOMAIN") {
            Some(domain) => format!(r"{domain}\{name}"),
            None => name,
        });
        Context {
            os,
            euid,
            uid,
            user,
            sudo_user: text("SUDO_USER").filter(|u| u != "root"),
            windows_account: if os == TargetOs::Windows {
                windows_account
            } else {
                None
            },
            wsl: var("WSL_DISTRO_NAME").is_some() || var("WSL_INTEROP").is_some(),
            locations: Locations {
                systemd_user_dir,
                systemd_system_dir: path("HERALD_SYSTEMD_SYSTEM_DIR")
                    .unwrap_or_else(|| PathBuf::from("/etc/systemd/system")),
                systemd_run_dir: path("HERALD_SYSTEMD_RUN_DIR")
                    .unwrap_or_else(|| PathBuf::from("/run/systemd/system")),
                launch_agents_dir,
                startup_dir,
                tasks_dir,
                run_key,
            },
        }
    }

    pub fn is_root(&self) -> bool {
        self.euid == Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn ctx(os: TargetOs, vars: &[(&str, &str)]) -> Context {
        let vars: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        Context::from_lookup(os, Some(1000), Some(1000), |k| vars.get(k).cloned())
    }

    #[test]
    fn defaults_follow_each_os_and_overrides_win() {
        let c = ctx(TargetOs::Linux, &[("HOME", "/home/a"), ("USER", "a")]);
        assert_eq!(
            c.locations.systemd_user_dir.as_deref(),
            Some(std::path::Path::new("/home/a/.config/systemd/user"))
        );
        assert_eq!(c.locations.launch_agents_dir, None);
        assert_eq!(c.user.as_deref(), Some("a"));
        let c = ctx(
            TargetOs::Linux,
            &[
                ("HOME", "/home/a"),
                ("XDG_CONFIG_HOME", "/x"),
                ("HERALD_LAUNCH_AGENTS_DIR", "/la"),
            ],
        );
        assert_eq!(
            c.locations.systemd_user_dir.as_deref(),
            Some(std::path::Path::new("/x/systemd/user"))
        );
        assert_eq!(
            c.locations.launch_agents_dir.as_deref(),
            Some(std::path::Path::new("/la"))
        );
        let c = ctx(TargetOs::MacOs, &[("HOME", "/Users/a")]);
        assert_eq!(
            c.locations.launch_agents_dir.as_deref(),
            Some(std::path::Path::new("/Users/a/Library/LaunchAgents"))
        );
        let c = ctx(
            TargetOs::Windows,
            &[
                ("APPDATA", "C:/U/a/AppData/Roaming"),
                ("USERNAME", "a"),
                ("USERDOMAIN", "PC"),
            ],
        );
        assert!(c.locations.startup_dir.unwrap().ends_with("Startup"));
        assert_eq!(
            c.locations.run_key.as_deref(),
            Some(r"Software\Microsoft\Windows\CurrentVersion\Run")
        );
        assert_eq!(ctx(TargetOs::Linux, &[]).locations.run_key, None);
        assert_eq!(c.windows_account.as_deref(), Some(r"PC\a"));
        assert_eq!(ctx(TargetOs::Linux, &[("SUDO_USER", "root")]).sudo_user, None);
    }
}
