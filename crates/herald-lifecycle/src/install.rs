//! `install` and `uninstall`: plan, then print (dry run) or carry out.
//!
//! **Invariant:** `install` decides before it touches anything — the plan is data, a dry run returns its
//! description and changes nothing, and a second install of an unchanged home plans nothing. Every
//! registration derives its stop timeouts from the same [`herald_home::StopBudget`] as `herald stop`.

use herald_install::access::RunAsProblem;
use herald_install::context::Context;
use herald_install::execute::Outcome;
use herald_install::manage::{self, InstallRequest, ManageError};
use herald_install::plan::Plan;
use herald_install::{Backend, Scope};

use crate::direct;
use crate::error::LifecycleError;
use crate::route::{carry_out, install_spec, planned, service_spec};
use crate::start::{self, StartOutcome};
use crate::status::StatusReport;
use crate::target::Target;
use crate::variables::{self, VariableCheck};
use herald_home::secrets::SecretsError;
use herald_process::StopOutcome;

/// `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    /// systemd on Linux, launchd on macOS, a Scheduled Task (the per-user Run key as fallback) on Windows.
    Auto,
    Backend(Backend),
    /// No autostart: start the gateway now, supervised, in the background.
    None,
}

/// What `herald install` was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallOptions {
    pub backend: BackendChoice,
    pub scope: Scope,
    pub run_as: Option<String>,
    pub start_now: bool,
    pub start_on_login: bool,
    pub force: bool,
    pub dry_run: bool,
}

/// What became of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Dry run: the plan's description; nothing was changed.
    DryRun(String),
    /// Nothing to change; the plan's notes.
    NothingToDo { notes: Vec<String> },
    /// Carried out: the plan's notes and what was done.
    Done { notes: Vec<String>, outcome: Outcome },
}

/// What `install` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    /// Registered with `backend` (or found registered).
    Registered { backend: Backend, applied: Applied },
    /// `--backend none`.
    NoAutostart(NoAutostart),
}

/// `--backend none`: no registration, a detached supervised start (unless told not to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoAutostart {
    DryRun,
    NotStarted,
    Started(StartOutcome),
}

/// The variables `herald.toml` names, judged for the gateway `options` would have started: by the
/// service manager (its environment plus the store: see [`crate::variables`]), or from this shell for
/// `--backend none`. Empty when the config names none (the service manager is then not asked) or is
/// invalid (install reports that itself).
pub fn variable_checks(
    target: &Target,
    options: &InstallOptions,
) -> Result<Vec<VariableCheck>, SecretsError> {
    let Ok(config) = target.config() else {
        return Ok(Vec::new());
    };
    if config.named_variables().is_empty() {
        return Ok(Vec::new());
    }
    let backend = match options.backend {
        BackendChoice::None => None,
        BackendChoice::Auto => manage::auto_backend(Context::current().os).ok(),
        BackendChoice::Backend(backend) => Some(backend),
    };
    let service = backend.and_then(|b| variables::service_environment(b, options.scope));
    variables::check(target.home(), config, service.as_ref())
}

/// Whether the account a system-wide registration (`--system`, systemd or launchd) would run the gateway
/// as — `--run-as-user`, else `SUDO_USER` — can use this home (see [`herald_install::access`]): a
/// registration that could never serve is worth a warning before it is written.
pub fn run_as_check(target: &Target, options: &InstallOptions) -> Option<RunAsProblem> {
    if options.scope != Scope::System {
        return None;
    }
    let backend = match options.backend {
        BackendChoice::None => return None,
        BackendChoice::Auto => manage::auto_backend(Context::current().os).ok()?,
        BackendChoice::Backend(backend) => backend,
    };
    if !matches!(backend, Backend::Systemd | Backend::Launchd) {
        return None;
    }
    let user = options.run_as.clone().or_else(|| Context::current().sudo_user)?;
    herald_install::access::check(target.home().root(), &user)
}

/// Registers the gateway of `target` with a service manager.
pub fn install(target: &Target, options: &InstallOptions) -> Result<Installed, LifecycleError> {
    let backend = match options.backend {
        BackendChoice::None => return install_none(target, options).map(Installed::NoAutostart),
        BackendChoice::Auto => manage::auto_backend(Context::current().os)?,
        BackendChoice::Backend(backend) => backend,
    };
    let spec = install_spec(target)?;
    if matches!(backend, Backend::Task | Backend::Startup) {
        if let Some(heraldw) = &spec.gui_executable
            && !heraldw.is_file()
        {
            return Err(ManageError::NoHeraldw {
                herald: spec.executable.clone(),
                exe: std::env::consts::EXE_SUFFIX,
            }
            .into());
        }
        if !options.start_on_login {
            return Err(LifecycleError::NothingToRegister {
                backend: backend.as_str(),
            });
        }
    }
    let request = InstallRequest {
        backend,
        scope: options.scope,
        run_as: options.run_as.clone(),
        start_now: options.start_now,
        start_on_login: options.start_on_login,
        force: options.force,
        dry_run: options.dry_run,
    };
    let plan = planned(target, |machine| manage::plan_install(&spec, &request, machine))?;
    let applied = apply(target, &plan, options.dry_run)?;
    let backend = match &applied {
        Applied::Done { outcome, .. } if outcome.fell_back.is_some() && backend == Backend::Task => {
            Backend::Startup
        }
        _ => backend,
    };
    Ok(Installed::Registered { backend, applied })
}

fn install_none(target: &Target, options: &InstallOptions) -> Result<NoAutostart, LifecycleError> {
    let spec = service_spec(target)?;
    let plan = planned(target, |machine| {
        manage::plan_uninstall(&spec, options.scope, machine)
    })?;
    if !plan.is_empty() {
        return Err(LifecycleError::AlreadyRegistered {
            backend: plan.backend.map_or("a service manager", Backend::as_str),
        });
    }
    if options.dry_run {
        return Ok(NoAutostart::DryRun);
    }
    if !options.start_now {
        return Ok(NoAutostart::NotStarted);
    }
    start::start(target, start::DEFAULT_TIMEOUT).map(NoAutostart::Started)
}

/// What `uninstall` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uninstalled {
    /// The registrations' removal (a manager's removal stops the gateway it runs).
    pub applied: Applied,
    /// A gateway running on this home outside any service manager (`install --backend none`, `herald
    /// start`): stopped, or with `--dry-run` what would be.
    pub unmanaged: Unmanaged,
}

/// A gateway `uninstall` found running outside any service manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmanaged {
    /// None runs (or the manager's removal stopped it).
    NotRunning,
    /// `--dry-run`: this gateway would be stopped.
    WouldStop { pid: Option<u32> },
    /// Stopped with the stop ladder, as `herald stop` would.
    Stopped(StopOutcome),
}

/// Stops and removes every registration of `target` (every backend, legacy names included), then stops
/// a gateway that still runs on the home outside any manager: `uninstall` leaves nothing running. With
/// nothing registered, even a dry run says so rather than showing an empty plan.
pub fn uninstall(target: &Target, scope: Scope, dry_run: bool) -> Result<Uninstalled, LifecycleError> {
    let spec = service_spec(target)?;
    let plan = planned(target, |machine| manage::plan_uninstall(&spec, scope, machine))?;
    let applied = if plan.is_empty() {
        Applied::NothingToDo {
            notes: plan.notes.clone(),
        }
    } else {
        apply(target, &plan, dry_run)?
    };
    let running = StatusReport::gather(target.home());
    let unmanaged = match (running.running, dry_run) {
        (false, _) => Unmanaged::NotRunning,
        // A registration's removal stops its gateway; only without one is the stop ours to show.
        (true, true) if plan.is_empty() => Unmanaged::WouldStop { pid: running.pid },
        (true, true) => Unmanaged::NotRunning,
        (true, false) => Unmanaged::Stopped(direct::stop_direct(
            target,
            &direct::StopRequest::planned("herald uninstall"),
        )?),
    };
    Ok(Uninstalled { applied, unmanaged })
}

/// A dry run describes the plan; otherwise it is carried out unless empty.
fn apply(target: &Target, plan: &Plan, dry_run: bool) -> Result<Applied, LifecycleError> {
    if dry_run {
        return Ok(Applied::DryRun(plan.describe()));
    }
    let notes = plan.notes.clone();
    if plan.is_empty() {
        return Ok(Applied::NothingToDo { notes });
    }
    let outcome = carry_out(target, plan)?;
    Ok(Applied::Done { notes, outcome })
}

/// Why the fallback was used, when a task registration fell back to the Run value.
pub fn fell_back(applied: &Applied) -> Option<&str> {
    match applied {
        Applied::Done { outcome, .. } => outcome.fell_back.as_deref(),
        _ => None,
    }
}
