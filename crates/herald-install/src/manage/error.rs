//! The one error type of planning and carrying out an install, an uninstall or a service action.
//!
//! Each variant says what to do instead (the exact command, the flag, the backend), because these errors
//! end up in front of a person at a terminal; none carries a secret.

use std::path::PathBuf;

use crate::InstallError;

/// Why a hook of the executor failed: the lifecycle layer's own typed error, carried through unchanged.
pub type HookError = Box<dyn std::error::Error + Send + Sync + 'static>;
use crate::spec::Backend;

#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error(transparent)]
    Generate(#[from] InstallError),
    #[error(
        "--backend {backend} is Windows only (this is {os}): use --backend auto (systemd on Linux, launchd \
         on macOS) or --backend none"
    )]
    WindowsOnly { backend: Backend, os: &'static str },
    #[error("no service manager backend is known for {os}; use --backend none")]
    NoBackend { os: &'static str },
    #[error(
        "systemd is not running on this machine ({marker} is missing){hint}.\n\
         Without systemd there is no user service manager to register with. Instead:\n\
         \x20 herald install --backend none   # start now, supervised, in the background (no autostart)\n\
         \x20 herald start                    # the same, by hand after each boot",
        marker = marker.display()
    )]
    NoSystemd { marker: PathBuf, hint: &'static str },
    #[error(
        "cannot find the systemd user unit directory: set HOME, XDG_CONFIG_HOME or HERALD_SYSTEMD_USER_DIR"
    )]
    NoUserUnitDir,
    #[error("cannot find the LaunchAgents directory: set HOME or HERALD_LAUNCH_AGENTS_DIR")]
    NoLaunchAgentsDir,
    #[error("cannot find the Startup folder: set APPDATA or HERALD_STARTUP_DIR")]
    NoStartupDir,
    #[error("cannot tell which user this is (USER/LOGNAME unset); {what}")]
    UnknownUser { what: &'static str },
    #[error(
        "this is sudo (for {sudo_user}): a per-user unit would be root's, not {sudo_user}'s. Run \
         `herald install` as {sudo_user} without sudo, or `sudo herald install --system` for a system unit \
         that runs as {sudo_user}"
    )]
    SudoUserScope { sudo_user: String },
    #[error("--system needs root: run `sudo herald install --system`")]
    SystemNeedsRoot,
    #[error(
        "refusing to install a system unit that runs the gateway as root: name the account with \
         --run-as-user USER (or `--run-as-user root` if root is really what you want)"
    )]
    RootRunRefused,
    #[error("--run-as-user is for system-wide registrations (--system)")]
    RunAsNeedsSystem,
    #[error(
        "{path} already registers the gateway of another home ({other}); this home is {ours}. \
         `herald install --force` replaces it, or use --profile for a second gateway",
        path = path.display()
    )]
    OtherHome {
        path: PathBuf,
        other: String,
        ours: String,
    },
    #[error(
        "cannot reach the user's systemd: `systemctl --user` failed ({user_bus}){machine}. Log in as \
         the user (a session starts the user manager), or run `loginctl enable-linger USER` as root"
    )]
    BusUnreachable { user_bus: String, machine: String },
    #[error(
        "launchd loads every LaunchAgent at login; --no-start-on-login is not possible with launchd \
         (use --backend none for a gateway without autostart)"
    )]
    LaunchdAlwaysAtLogin,
    #[error("a system-wide {backend} registration is not supported yet; install per user")]
    NoSystemScope { backend: Backend },
    #[error("cannot find the launchd domain: the user id is unknown")]
    NoUid,
    #[error("cannot read {path}: {source}", path = path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}", path = path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot remove {path}: {source}", path = path.display())]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{cmd}` failed: {summary}")]
    Command { cmd: String, summary: String },
    #[error(
        "`{cmd}` failed with 125: launchd has no GUI session for this user (over SSH, under sudo, or \
         before anyone logged in). Log in at the Mac's screen (or through Screen Sharing) and run \
         `herald install` again there"
    )]
    NoGuiSession { cmd: String },
    #[error(transparent)]
    Hook(HookError),
    #[error("{op}: {source}")]
    Scm {
        op: String,
        #[source]
        source: crate::scm::ScmError,
    },
    #[error("{op}: {source}")]
    RunKey {
        op: String,
        #[source]
        source: crate::startup::RunKeyError,
    },
    #[error("cannot find the per-user Run key: this is not Windows (set HERALD_RUN_KEY)")]
    NoRunKey,
    #[error(
        "a Windows Service runs as LocalSystem here: --run-as-user would need the account's password in \
         the registration, which Herald never stores. Install without --run-as-user, then set the logon \
         account in services.msc if you must"
    )]
    ServiceAccountUnsupported,
    #[error(
        "the Windows Service {name} already runs the gateway of another home ({other}); this home is \
         {ours}. `herald install --backend windows-service --force` replaces it, or use --profile for a \
         second gateway"
    )]
    OtherHomeService {
        name: String,
        other: String,
        ours: String,
    },
    #[error(
        "the windowless heraldw{exe} is missing next to {herald} (the logon task and the Startup \
         fallback's Run value start it, so no console window opens); reinstall Herald with both executables",
        herald = herald.display()
    )]
    NoHeraldw { herald: PathBuf, exe: &'static str },
}
