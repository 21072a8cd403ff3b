//! The planners: from a [`ServiceSpec`], a request and what is installed now, the [`Plan`] that makes the
//! registration right — or that removes it, or that starts, stops or restarts the registered gateway.
//!
//! **Invariant:** a planner reads (files through [`FileView`], read-only probes such as `systemctl
//! is-enabled` through the [`CommandRunner`]) but never changes anything; every change is a step of the
//! plan it returns. Drift is decided by comparing the installed file with what we would write now: equal →
//! no step; different, or a legacy name present → repair; `--force` → rewrite. One home has exactly one
//! autostart registration: installing one backend removes this home's others (legacy names included).
//!
//! A registration file names its home (`HERALD_HOME` / `--home`); names carry only the profile, so a file
//! with our name may belong to another home root. Such a file is never taken over silently: install
//! refuses without `--force`, and `start`/`stop` do not route through it.

mod error;
pub mod launchd;
pub mod logon;
mod service_entry;
pub mod systemd;
pub mod winsvc;

use std::io;
use std::path::Path;

pub use error::{HookError, ManageError};
pub use service_entry::registered_for_home;

use super::context::{Context, TargetOs};
use super::plan::Plan;
use super::runner::CommandRunner;
use super::scm::{Scm, ScmService};
use super::spec::{Backend, Scope, ServiceSpec};
use super::startup::RunKey;

/// What `herald install` was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallRequest {
    pub backend: Backend,
    pub scope: Scope,
    /// `--run-as-user`: the account a system-wide registration runs as.
    pub run_as: Option<String>,
    pub start_now: bool,
    pub start_on_login: bool,
    pub force: bool,
    /// `--dry-run`: the plan is only shown, so a manager that cannot be reached now (no systemd, no user
    /// bus) does not stop it — the plan shows what would be written and notes that nothing could
    /// register it.
    pub dry_run: bool,
}

/// The backend `--backend auto` picks on `os`.
pub fn auto_backend(os: TargetOs) -> Result<Backend, ManageError> {
    match os {
        TargetOs::Linux => Ok(Backend::Systemd),
        TargetOs::MacOs => Ok(Backend::Launchd),
        TargetOs::Windows => Ok(Backend::Task),
        TargetOs::Other => Err(ManageError::NoBackend {
            os: std::env::consts::OS,
        }),
    }
}

/// Read access to the files a planner compares against.
pub trait FileView {
    /// The file's bytes, `None` when it does not exist.
    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>>;
    /// Whether a file or directory exists at `path`.
    fn exists(&self, path: &Path) -> bool;
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFiles;

impl FileView for RealFiles {
    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

pub(crate) fn read(files: &dyn FileView, path: &Path) -> Result<Option<Vec<u8>>, ManageError> {
    files.read(path).map_err(|source| ManageError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The machine as the planners see it, besides the spec: its files, its commands, the SCM, and whether
/// this home's gateway runs now. Planners only read through it.
pub struct Machine<'a> {
    pub ctx: &'a Context,
    pub files: &'a dyn FileView,
    pub runner: &'a mut dyn CommandRunner,
    /// The Windows Service Control Manager (read only here; a stub elsewhere).
    pub scm: &'a dyn Scm,
    /// This user's `Run` key (read only here; a stub elsewhere).
    pub run_key: &'a dyn RunKey,
    /// Whether a gateway holds this home's instance lock now.
    pub gateway_running: bool,
}

impl std::fmt::Debug for Machine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("ctx", self.ctx)
            .field("gateway_running", &self.gateway_running)
            .finish_non_exhaustive()
    }
}

/// The plan that makes `spec`'s registration with `request.backend` right.
pub fn plan_install(
    spec: &ServiceSpec,
    request: &InstallRequest,
    probe: &mut Machine<'_>,
) -> Result<Plan, ManageError> {
    if request.backend.windows() && probe.ctx.os != TargetOs::Windows {
        return Err(ManageError::WindowsOnly {
            backend: request.backend,
            os: probe.ctx.os.name(),
        });
    }
    match request.backend {
        Backend::Systemd => systemd::plan_install(spec, request, probe),
        Backend::Launchd => launchd::plan_install(spec, request, probe),
        Backend::Task | Backend::Startup => logon::plan_install(spec, request, probe),
        Backend::WindowsService => winsvc::plan_install(spec, request, probe),
    }
}

/// The plan that removes every registration of this home (every backend this machine has a location
/// for, legacy names included).
pub fn plan_uninstall(
    spec: &ServiceSpec,
    scope: Scope,
    probe: &mut Machine<'_>,
) -> Result<Plan, ManageError> {
    let mut plan = Plan::default();
    let mut parts = Vec::new();
    match probe.ctx.os {
        TargetOs::Windows => {
            parts.push(winsvc::plan_uninstall(spec, probe)?);
            parts.push(logon::plan_uninstall(spec, probe)?);
        }
        _ => {
            parts.push(systemd::plan_uninstall(spec, scope, probe)?);
            if scope == Scope::User {
                parts.push(launchd::plan_uninstall(spec, probe)?);
            }
        }
    }
    // A location set explicitly (tests, unusual setups) is cleaned too, whatever the OS.
    if probe.ctx.os != TargetOs::Windows && probe.ctx.locations.startup_dir.is_some() {
        parts.push(logon::plan_uninstall_launchers(spec, probe)?);
    }
    for part in parts {
        if !part.steps.is_empty() && plan.backend.is_none() {
            plan.backend = part.backend;
        }
        plan.notes.extend(part.notes);
        plan.steps.extend(part.steps);
    }
    Ok(plan)
}

/// A registration of this home that a service manager supervises (and `start`/`stop`/`restart` must go
/// through, or the manager would fight them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    Systemd {
        scope: Scope,
    },
    Launchd,
    /// A Windows Service naming this home, as the SCM reported it.
    WindowsService(Box<ScmService>),
}

impl Registered {
    /// The manager's name, for messages.
    pub fn manager(&self) -> &'static str {
        match self {
            Registered::Systemd { .. } => "systemd",
            Registered::Launchd => "launchd",
            Registered::WindowsService(_) => "the Windows Service Control Manager",
        }
    }
}

/// What `start`, `stop` and `restart` do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Restart,
}

/// The supervised registration of this home, if any (systemd unit, LaunchAgent or Windows Service naming
/// this home).
pub fn detect(spec: &ServiceSpec, probe: &Machine<'_>) -> Result<Option<Registered>, ManageError> {
    if probe.ctx.os == TargetOs::Windows {
        return Ok(winsvc::detect(spec, probe)?.map(|s| Registered::WindowsService(Box::new(s))));
    }
    if let Some(scope) = systemd::detect(spec, probe)? {
        return Ok(Some(Registered::Systemd { scope }));
    }
    if launchd::detect(spec, probe)? {
        return Ok(Some(Registered::Launchd));
    }
    Ok(None)
}

/// The plan for `start`/`stop`/`restart` through the registration.
pub fn plan_action(
    spec: &ServiceSpec,
    registered: &Registered,
    action: Action,
    probe: &mut Machine<'_>,
) -> Result<Plan, ManageError> {
    match registered {
        Registered::Systemd { scope } => systemd::plan_action(spec, *scope, action, probe),
        Registered::Launchd => launchd::plan_action(spec, action, probe),
        Registered::WindowsService(_) => winsvc::plan_action(spec, action, probe),
    }
}

/// The home a spec names (its root and profile), for the paths inside it.
pub(crate) fn spec_home(spec: &ServiceSpec) -> herald_home::Home {
    let request = herald_home::paths::HomeRequest {
        flag: Some(spec.home_root.clone()),
        profile: spec.profile.clone(),
        ..herald_home::paths::HomeRequest::default()
    };
    herald_home::Home::resolve(request).unwrap_or_else(|_| herald_home::Home::at(&spec.home_root))
}
