//! `herald install`, `herald uninstall`, and the routing of `start`/`stop`/`restart` through the service
//! manager a home is registered with.
//!
//! Presentation only: the plan comes from `herald_service::install::manage` (which reads and decides),
//! `--dry-run` prints it, and `herald_service::install::execute` carries it out. The two steps that need
//! the rest of Herald — a planned stop of a gateway running outside the manager, and a detached start —
//! are the [`Hooks`] given to the executor.
//!
//! Routing matters because a manager that restarts the gateway (systemd `Restart=always`, launchd
//! `KeepAlive`) would undo a stop that went around it; where nothing supervised is registered, `start`,
//! `stop` and `restart` keep their detached behaviour.

use std::path::PathBuf;
use std::time::Duration;

use herald_daemon::run::STOP_MARGIN;
use herald_daemon::{StopOptions, StopVia};
use herald_home::config::Config;
use herald_home::lock::InstanceLock;
use herald_home::{ExitCode, Home};
use herald_service::install::context::{Context, TargetOs};
use herald_service::install::execute::{Actors, Hooks, Outcome, execute};
use herald_service::install::manage::{
    self, Action, InstallRequest, ManageError, Probe, RealFiles, Registered,
};
use herald_service::install::plan::Plan;
use herald_service::install::runner::SystemRunner;
use herald_service::install::scm::{ScmStart, ScmState, SystemScm};
use herald_service::install::{Backend, Scope, ServiceSpec};

use crate::cli::{BackendArg, InstallArgs, StartArgs, UninstallArgs};

pub fn install(home: &Home, args: &InstallArgs) -> ExitCode {
    let ctx = Context::current();
    let backend = match args.backend {
        BackendArg::None => return install_none(home, args, &ctx),
        BackendArg::Auto => match manage::auto_backend(ctx.os) {
            Ok(b) => b,
            Err(e) => return fail(&e),
        },
        BackendArg::Systemd => Backend::Systemd,
        BackendArg::Launchd => Backend::Launchd,
        BackendArg::Task => Backend::Task,
        BackendArg::Startup => Backend::Startup,
        BackendArg::WindowsService => Backend::WindowsService,
    };
    let spec = match spec_for(home, true) {
        Ok(spec) => spec,
        Err(code) => return code,
    };
    if matches!(backend, Backend::Task | Backend::Startup)
        && let Some(heraldw) = &spec.gui_executable
        && !heraldw.is_file()
    {
        return fail(&ManageError::NoHeraldw {
            herald: spec.executable.clone(),
            exe: std::env::consts::EXE_SUFFIX,
        });
    }
    if matches!(backend, Backend::Task | Backend::Startup) && args.no_start_on_login {
        eprintln!(
            "herald: a {backend} registration only starts the gateway at login; without that there is \
             nothing to register (use --backend none)"
        );
        return ExitCode::Usage;
    }
    let request = InstallRequest {
        backend,
        scope: if args.system { Scope::System } else { Scope::User },
        run_as: args.run_as_user.clone(),
        start_now: !args.no_start_now,
        start_on_login: !args.no_start_on_login,
        force: args.force,
    };
    let plan = match planned(home, &ctx, |probe| manage::plan_install(&spec, &request, probe)) {
        Ok(plan) => plan,
        Err(code) => return code,
    };
    match apply(home, &plan, args.dry_run) {
        Ok(Applied::DryRun) => ExitCode::Ok,
        Ok(Applied::NothingToDo) => {
            println!(
                "herald is already installed with {backend} for {}; nothing to do",
                home.root().display()
            );
            ExitCode::Ok
        }
        Ok(Applied::Done(outcome)) => {
            let used = match (&outcome.fell_back, backend) {
                (Some(why), Backend::Task) => {
                    println!(
                        "the Scheduled Task could not be registered ({why}); using a Startup-folder launcher instead"
                    );
                    Backend::Startup
                }
                _ => backend,
            };
            println!("herald installed with {used} for {}", home.root().display());
            ExitCode::Ok
        }
        Err(code) => code,
    }
}

/// `--backend none`: no autostart, a detached supervised start now.
fn install_none(home: &Home, args: &InstallArgs, ctx: &Context) -> ExitCode {
    let spec = match spec_for(home, false) {
        Ok(spec) => spec,
        Err(code) => return code,
    };
    let scope = if args.system { Scope::System } else { Scope::User };
    match planned(home, ctx, |probe| manage::plan_uninstall(&spec, scope, probe)) {
        Ok(plan) if !plan.is_empty() => {
            eprintln!(
                "herald: this home is registered with {}; `herald uninstall` first (one autostart mechanism \
                 per home)",
                plan.backend.map_or("a service manager", Backend::as_str)
            );
            return ExitCode::Failure;
        }
        Ok(_) => {}
        Err(code) => return code,
    }
    if args.dry_run {
        println!("no autostart; would start the gateway now, detached and supervised (as `herald start`)");
        println!("dry run: nothing was changed");
        return ExitCode::Ok;
    }
    if args.no_start_now {
        println!("no autostart registered and --no-start-now: nothing to do");
        return ExitCode::Ok;
    }
    super::start::start(home, &StartArgs { timeout: 30 })
}

pub fn uninstall(home: &Home, args: &UninstallArgs) -> ExitCode {
    let ctx = Context::current();
    let spec = match spec_for(home, false) {
        Ok(spec) => spec,
        Err(code) => return code,
    };
    let scope = if args.system { Scope::System } else { Scope::User };
    let plan = match planned(home, &ctx, |probe| manage::plan_uninstall(&spec, scope, probe)) {
        Ok(plan) => plan,
        Err(code) => return code,
    };
    match apply(home, &plan, args.dry_run) {
        Ok(Applied::DryRun) => ExitCode::Ok,
        Ok(Applied::NothingToDo) => {
            println!(
                "herald is not installed for {}; nothing to do",
                home.root().display()
            );
            ExitCode::Ok
        }
        Ok(Applied::Done(_)) => {
            println!("herald uninstalled for {}", home.root().display());
            ExitCode::Ok
        }
        Err(code) => code,
    }
}

/// Runs a planner against the real files and commands; a planning error is printed and mapped.
/// What the planners read on this machine: its files, its commands (through `runner`), the SCM, and
/// whether this home's gateway runs now.
fn probe<'a>(home: &Home, ctx: &'a Context, runner: &'a mut SystemRunner) -> Probe<'a> {
    Probe {
        ctx,
        files: &RealFiles,
        runner,
        scm: &SystemScm,
        gateway_running: gateway_running(home),
    }
}

fn planned(
    home: &Home,
    ctx: &Context,
    plan: impl FnOnce(&mut Probe<'_>) -> Result<Plan, ManageError>,
) -> Result<Plan, ExitCode> {
    let mut runner = SystemRunner::default();
    plan(&mut probe(home, ctx, &mut runner)).map_err(|e| fail(&e))
}

/// What [`apply`] did with a plan.
enum Applied {
    /// `--dry-run`: the plan was printed, nothing done.
    DryRun,
    /// The plan was empty: everything is as it should be.
    NothingToDo,
    Done(Outcome),
}

/// `--dry-run` prints the plan; otherwise its notes are printed and it is carried out, unless empty.
fn apply(home: &Home, plan: &Plan, dry_run: bool) -> Result<Applied, ExitCode> {
    if dry_run {
        print!("{}", plan.describe());
        println!("dry run: nothing was changed");
        return Ok(Applied::DryRun);
    }
    for note in &plan.notes {
        println!("note: {note}");
    }
    if plan.is_empty() {
        return Ok(Applied::NothingToDo);
    }
    carry_out(home, plan).map(Applied::Done)
}

/// `start`/`stop`/`restart` through the supervised registration of this home; `None` when there is none
/// (the caller then does its detached start or direct stop).
pub(crate) fn route(home: &Home, action: Action) -> Option<ExitCode> {
    let spec = spec_for(home, false).ok()?;
    let ctx = Context::current();
    let mut runner = SystemRunner::default();
    let mut probe = probe(home, &ctx, &mut runner);
    let registered = match manage::detect(&spec, &probe) {
        Ok(Some(registered)) => registered,
        Ok(None) => return None,
        Err(e) => return Some(fail(&e)),
    };
    let manager = registered.manager();
    let plan = match manage::plan_action(&spec, &registered, action, &mut probe) {
        Ok(plan) => plan,
        Err(e) => return Some(fail(&e)),
    };
    let started = std::time::Instant::now();
    Some(match carry_out(home, &plan) {
        Ok(_) => {
            let verb = match action {
                Action::Start => "started",
                Action::Stop => "stopped",
                Action::Restart => "restarted",
            };
            let pid = herald_service::status::StatusReport::gather(home)
                .pid
                .filter(|_| action != Action::Stop)
                .map(|p| format!(" (pid {p})"))
                .unwrap_or_default();
            println!(
                "herald {verb} via {manager}{pid} in {:.0} ms",
                started.elapsed().as_secs_f64() * 1000.0
            );
            ExitCode::Ok
        }
        Err(code) => code,
    })
}

/// Executes a plan, printing what was done and any advice; errors are printed and mapped.
fn carry_out(home: &Home, plan: &Plan) -> Result<Outcome, ExitCode> {
    let mut runner = SystemRunner::default();
    let mut hooks = CliHooks { home };
    let result = execute(
        plan,
        &mut Actors {
            runner: &mut runner,
            scm: &mut SystemScm,
            hooks: &mut hooks,
        },
    );
    match result {
        Ok(outcome) => {
            for line in &outcome.done {
                println!("  {line}");
            }
            for advice in &outcome.advice {
                eprintln!("note: {advice}");
            }
            Ok(outcome)
        }
        Err(e) => Err(fail(&e)),
    }
}

struct CliHooks<'a> {
    home: &'a Home,
}

impl Hooks for CliHooks<'_> {
    fn stop_unmanaged(&mut self) -> Result<(), String> {
        let drain = Config::load(&self.home.config_file())
            .map(|(c, _)| c.gateway.drain_timeout_secs)
            .unwrap_or_else(|_| Config::default().gateway.drain_timeout_secs);
        let options = StopOptions {
            timeout: Duration::from_secs(drain) + STOP_MARGIN,
            via: StopVia::Auto,
            restart: false,
            force: true,
            requested_by: "herald install".into(),
        };
        herald_daemon::stop_gateway(self.home, &options)
            .map(|_| ())
            .map_err(|e| format!("cannot stop the gateway running outside the service manager: {e}"))
    }

    fn start_detached(&mut self) -> Result<(), String> {
        match super::start::start(self.home, &StartArgs { timeout: 30 }) {
            ExitCode::Ok => Ok(()),
            code => Err(format!("the gateway did not start (exit {})", code.code())),
        }
    }
}

fn gateway_running(home: &Home) -> bool {
    InstanceLock::is_held(&home.lock_file()).unwrap_or(false)
}

/// The spec for this home: this executable, `heraldw` beside it, the configured drain budget. With
/// `strict`, a broken config is an error (exit 78) — a unit derived from it would be wrong.
fn spec_for(home: &Home, strict: bool) -> Result<ServiceSpec, ExitCode> {
    let drain = match Config::load(&home.config_file()) {
        Ok((config, _)) => config.gateway.drain_timeout_secs,
        Err(e) if strict => {
            eprintln!("herald: fix the configuration first: {e}");
            return Err(ExitCode::Config);
        }
        Err(_) => Config::default().gateway.drain_timeout_secs,
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("herald: cannot find the herald executable: {e}");
            return Err(ExitCode::Failure);
        }
    };
    if strict && let Err(e) = home.ensure() {
        eprintln!("herald: {e}");
        return Err(ExitCode::Failure);
    }
    let mut spec = ServiceSpec::for_home(home, &exe, drain);
    spec.gui_executable = exe
        .parent()
        .map(|dir| dir.join(format!("heraldw{}", std::env::consts::EXE_SUFFIX)))
        .or_else(|| Some(PathBuf::from(format!("heraldw{}", std::env::consts::EXE_SUFFIX))));
    Ok(spec)
}

fn fail(e: &ManageError) -> ExitCode {
    eprintln!("herald: {e}");
    match e {
        ManageError::RunAsNeedsSystem | ManageError::ServiceAccountUnsupported => ExitCode::Usage,
        _ => ExitCode::Failure,
    }
}

/// What the service manager says about this home's registration, for `status --deep` (probe 9).
pub(crate) fn service_facts(home: &Home) -> herald_service::deep::ServiceFacts {
    use herald_service::deep::ServiceFacts;
    use herald_service::install::manage::systemd::{Bus, systemctl};
    use herald_service::install::runner::CommandRunner;
    let Ok(spec) = spec_for(home, false) else {
        return ServiceFacts::None;
    };
    let ctx = Context::current();
    let mut runner = SystemRunner {
        timeout: Duration::from_millis(500),
    };
    let registered = manage::detect(&spec, &probe(home, &ctx, &mut runner));
    match registered {
        Ok(None) if ctx.os == TargetOs::Windows => windows_autostart_facts(&spec, &ctx, &mut runner, home),
        Ok(None) => ServiceFacts::None,
        Ok(Some(Registered::WindowsService(service))) => {
            let name = herald_service::install::names::windows_service_name(spec.profile.as_ref());
            let status = &service.status;
            let state = match status.state {
                ScmState::Stopped => format!("{} ({})", status.state.as_str(), status.exit),
                other => other.as_str().to_owned(),
            };
            ServiceFacts::Managed {
                manager: format!("windows service {name}"),
                enabled: Some(service.start == ScmStart::Auto),
                state: Some(state),
                active: status.state.active(),
                main_pid: status.pid,
            }
        }
        Err(e) => ServiceFacts::Unknown {
            manager: "service".into(),
            why: e.to_string(),
        },
        Ok(Some(Registered::Systemd { scope })) => {
            let (bus, manager) = match scope {
                Scope::System => (Bus::System, "systemd (system)"),
                Scope::User => (Bus::User, "systemd (user)"),
            };
            let unit = herald_service::install::names::systemd_unit(spec.profile.as_ref());
            let out = runner.run(&systemctl(
                &bus,
                &[
                    "show",
                    &unit,
                    "--property=ActiveState,SubState,MainPID,UnitFileState",
                ],
            ));
            if out.code != Some(0) {
                let why = if out.stderr.trim().is_empty() {
                    format!("systemctl show exited {:?}", out.code)
                } else {
                    out.stderr.trim().to_owned()
                };
                return ServiceFacts::Unknown {
                    manager: manager.into(),
                    why,
                };
            }
            let value = |key: &str| {
                out.stdout
                    .lines()
                    .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                    .map(str::trim)
                    .map(str::to_owned)
            };
            let state = value("ActiveState");
            ServiceFacts::Managed {
                manager: manager.into(),
                enabled: value("UnitFileState").map(|s| s == "enabled"),
                active: matches!(
                    state.as_deref(),
                    Some("active" | "activating" | "reloading" | "deactivating")
                ),
                state: match (state, value("SubState")) {
                    (Some(a), Some(s)) => Some(format!("{a} ({s})")),
                    (a, _) => a,
                },
                main_pid: value("MainPID").and_then(|p| p.parse().ok()).filter(|p| *p != 0),
            }
        }
        Ok(Some(Registered::Launchd)) => {
            let label = herald_service::install::names::launchd_label(spec.profile.as_ref());
            let target = format!("gui/{}/{label}", ctx.uid.unwrap_or(0));
            let out = runner.run(&herald_service::install::plan::Cmd {
                program: "launchctl".into(),
                args: vec!["print".into(), target],
            });
            if out.code != Some(0) {
                return ServiceFacts::Unknown {
                    manager: "launchd".into(),
                    why: format!("launchctl print exited {:?}", out.code),
                };
            }
            let value = |key: &str| {
                out.stdout.lines().find_map(|l| {
                    let (k, v) = l.trim().split_once(" = ")?;
                    (k == key).then(|| v.trim().to_owned())
                })
            };
            let state = value("state");
            ServiceFacts::Managed {
                manager: "launchd".into(),
                enabled: Some(true),
                active: state.as_deref() == Some("running"),
                state,
                main_pid: value("pid").and_then(|p| p.parse().ok()),
            }
        }
    }
}

/// Probe 9 on Windows when no service is registered: this home's logon task and Startup launcher.
fn windows_autostart_facts(
    spec: &ServiceSpec,
    ctx: &Context,
    runner: &mut SystemRunner,
    home: &Home,
) -> herald_service::deep::ServiceFacts {
    use herald_service::deep::ServiceFacts;
    match manage::windows::autostart_entries(spec, &mut probe(home, ctx, runner)) {
        Ok(entries) if entries.is_empty() => ServiceFacts::None,
        Ok(entries) => ServiceFacts::Autostart {
            entries: entries
                .iter()
                .map(|e| {
                    let what = match e.backend {
                        Backend::Task => "logon task",
                        _ => "Startup launcher",
                    };
                    let whose = match e.this_home {
                        Some(true) => "registered for this home",
                        Some(false) => "registered for another home",
                        None => "registered (unreadable)",
                    };
                    format!("{what} {} {whose}", e.name)
                })
                .collect(),
        },
        Err(e) => ServiceFacts::Unknown {
            manager: "task scheduler".into(),
            why: e.to_string(),
        },
    }
}
