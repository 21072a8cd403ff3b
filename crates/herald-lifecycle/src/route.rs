//! Which service manager owns this home, and carrying out a plan through it.
//!
//! Routing matters because a manager that restarts the gateway (systemd `Restart=on-failure`, launchd
//! `KeepAlive`, the SCM) would undo a stop that went around it; where nothing supervised is registered,
//! `start`, `stop` and `restart` keep their detached behaviour.
//!
//! **Invariant:** the planners read, the executor acts, and the two steps that need the rest of Herald —
//! a planned stop of a gateway running outside the manager, a detached start — are this layer's own
//! [`crate::direct`], handed to the executor as [`Hooks`]; nothing here prints.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use herald_home::Home;
use herald_home::lock::InstanceLock;
use herald_install::ServiceSpec;
use herald_install::context::Context;
use herald_install::execute::{Actors, HookError, Hooks, Outcome, execute};
use herald_install::manage::{self, Action, Machine, ManageError, RealFiles};
use herald_install::plan::Plan;
use herald_install::runner::SystemRunner;
use herald_install::scm::SystemScm;
use herald_install::startup::SystemRunKey;

use crate::error::LifecycleError;
use crate::status::StatusReport;
use crate::target::Target;

/// An action carried out by the service manager this home is registered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    /// `systemd (user)`, `launchd`, `windows service Herald_Gateway`...
    pub manager: String,
    pub action: Action,
    /// The gateway's pid afterwards (not after a stop).
    pub pid: Option<u32>,
    pub elapsed: Duration,
    /// One line per step carried out.
    pub done: Vec<String>,
    /// What the user should do by hand.
    pub advice: Vec<String>,
}

/// Carries out `action` through the manager this home is registered with; `None` when there is none
/// (the caller then does its detached start or direct stop).
pub fn route(target: &Target, action: Action) -> Result<Option<Routed>, LifecycleError> {
    let spec = service_spec(target)?;
    let ctx = Context::current();
    let mut runner = SystemRunner::default();
    let mut machine = machine(target.home(), &ctx, &mut runner);
    let Some(registered) = manage::detect(&spec, &machine)? else {
        return Ok(None);
    };
    let manager = registered.manager();
    let plan = manage::plan_action(&spec, &registered, action, &mut machine)?;
    let started = Instant::now();
    let outcome = carry_out(target, &plan)?;
    let pid = match action {
        Action::Stop => None,
        Action::Start | Action::Restart => StatusReport::gather(target.home()).pid,
    };
    Ok(Some(Routed {
        manager: manager.to_string(),
        action,
        pid,
        elapsed: started.elapsed(),
        done: outcome.done,
        advice: outcome.advice,
    }))
}

/// What the planners read on this machine: its files, its commands (through `runner`), the SCM, and
/// whether this home's gateway runs now.
pub(crate) fn machine<'a>(home: &Home, ctx: &'a Context, runner: &'a mut SystemRunner) -> Machine<'a> {
    Machine {
        ctx,
        files: &RealFiles,
        runner,
        scm: &SystemScm,
        run_key: &SystemRunKey,
        gateway_running: InstanceLock::is_held(&home.lock_file()).unwrap_or(false),
    }
}

/// Runs a planner against the real files and commands.
pub(crate) fn planned(
    target: &Target,
    plan: impl FnOnce(&mut Machine<'_>) -> Result<Plan, ManageError>,
) -> Result<Plan, LifecycleError> {
    let ctx = Context::current();
    let mut runner = SystemRunner::default();
    Ok(plan(&mut machine(target.home(), &ctx, &mut runner))?)
}

/// Executes a plan, with this layer's stop and start as the hooks.
pub(crate) fn carry_out(target: &Target, plan: &Plan) -> Result<Outcome, LifecycleError> {
    let mut runner = SystemRunner::default();
    let mut hooks = LifecycleHooks { target };
    Ok(execute(
        plan,
        &mut Actors {
            runner: &mut runner,
            scm: &mut SystemScm,
            run_key: &mut SystemRunKey,
            hooks: &mut hooks,
        },
    )?)
}

struct LifecycleHooks<'a> {
    target: &'a Target,
}

impl Hooks for LifecycleHooks<'_> {
    fn stop_unmanaged(&mut self) -> Result<(), HookError> {
        crate::direct::stop_direct(
            self.target,
            &crate::direct::StopRequest::planned("herald install"),
        )?;
        Ok(())
    }

    fn start_detached(&mut self) -> Result<(), HookError> {
        crate::direct::start_detached(self.target, crate::direct::DEFAULT_TIMEOUT)?;
        Ok(())
    }
}

/// The spec of this home for routing and status: this executable, `heraldw` beside it, the stop
/// budget of the config read once (the default budget when it is broken: stopping must still work).
pub(crate) fn service_spec(target: &Target) -> Result<ServiceSpec, LifecycleError> {
    let exe = target.executable()?;
    let mut spec = ServiceSpec::for_home(target.home(), &exe, target.stop_budget());
    let heraldw = format!("heraldw{}", std::env::consts::EXE_SUFFIX);
    spec.gui_executable = Some(
        exe.parent()
            .map_or_else(|| PathBuf::from(&heraldw), |dir| dir.join(&heraldw)),
    );
    Ok(spec)
}

/// The spec `install` registers: as [`service_spec`], but a broken config is an error (a unit derived
/// from it would be wrong) and the home must exist.
pub(crate) fn install_spec(target: &Target) -> Result<ServiceSpec, LifecycleError> {
    target.config_or_error()?;
    target.home().ensure()?;
    service_spec(target)
}
