//! Planning for systemd: the unit file, `daemon-reload`, `enable`, `start`/`restart`, linger, and the
//! way `systemctl` reaches the manager.
//!
//! **Invariant:** every change to the unit directory is followed by one `daemon-reload`, and nothing else
//! triggers one, so a second install with nothing to change runs no command that changes anything (only
//! the read-only probes `show-environment`, `is-enabled`, `is-active` and `loginctl show-user`).
//! Decisions use exit codes and systemd's machine-readable output (`is-enabled` prints `enabled`,
//! `show-user -p Linger` prints `Linger=yes`), never messages.
//!
//! The user manager is reached with `systemctl --user`; when that fails (no session bus: `su`, a cron
//! job, an SSH session without a login session) with `systemctl --machine USER@ --user`, as the field
//! notes show people need. A system unit (`--system`, root) runs as `--run-as-user`, else `SUDO_USER`;
//! a unit running the gateway as root is only written when asked for by name (`--run-as-user root`).

use std::path::PathBuf;
use std::time::Duration;

use super::{Action, FileView, InstallRequest, Machine, ManageError, read};
use crate::context::Context;
use crate::names;
use crate::plan::{Cmd, Expect, Plan, Step};
use crate::spec::{Backend, Scope, ServiceSpec};
use crate::systemd::{parse_unit, render_unit};

const B: Backend = Backend::Systemd;
/// Unit files are read by the manager; they hold no secret.
const UNIT_MODE: u32 = 0o644;

/// How `systemctl` reaches the manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bus {
    /// The system manager (`systemctl` without `--user`).
    System,
    /// The user's own session bus (`systemctl --user`).
    User,
    /// Through the system bus to the user's manager (`systemctl --machine USER@ --user`).
    Machine(String),
}

impl Bus {
    pub fn args(&self) -> Vec<String> {
        match self {
            Bus::System => Vec::new(),
            Bus::User => vec!["--user".to_owned()],
            Bus::Machine(user) => vec!["--machine".to_owned(), format!("{user}@"), "--user".to_owned()],
        }
    }
}

/// `systemctl <bus args> <args…>`.
pub fn systemctl(bus: &Bus, args: &[&str]) -> Cmd {
    let mut all = bus.args();
    all.extend(args.iter().map(|a| (*a).to_owned()));
    Cmd {
        program: "systemctl".to_owned(),
        args: all,
    }
}

fn check_booted(probe: &Machine<'_>) -> Result<(), ManageError> {
    let marker = &probe.ctx.locations.systemd_run_dir;
    if probe.files.exists(marker) {
        return Ok(());
    }
    Err(ManageError::NoSystemd {
        marker: marker.clone(),
        hint: if probe.ctx.wsl {
            " — this is WSL without systemd; `systemd=true` under [boot] in /etc/wsl.conf enables it"
        } else {
            " — a container, or another init system"
        },
    })
}

fn unit_dir(scope: Scope, ctx: &Context) -> Result<PathBuf, ManageError> {
    match scope {
        Scope::System => Ok(ctx.locations.systemd_system_dir.clone()),
        Scope::User => ctx
            .locations
            .systemd_user_dir
            .clone()
            .ok_or(ManageError::NoUserUnitDir),
    }
}

/// The spec with the account a system unit runs as, after the root and sudo checks.
fn scoped_spec(
    spec: &ServiceSpec,
    request: &InstallRequest,
    ctx: &Context,
) -> Result<ServiceSpec, ManageError> {
    let mut spec = spec.clone();
    spec.scope = request.scope;
    match request.scope {
        Scope::User => {
            if request.run_as.is_some() {
                return Err(ManageError::RunAsNeedsSystem);
            }
            if ctx.is_root()
                && let Some(sudo_user) = &ctx.sudo_user
            {
                return Err(ManageError::SudoUserScope {
                    sudo_user: sudo_user.clone(),
                });
            }
            spec.run_as = None;
        }
        Scope::System => {
            if !ctx.is_root() {
                return Err(ManageError::SystemNeedsRoot);
            }
            // `--run-as-user root` is the explicit request; root is never picked implicitly.
            spec.run_as = Some(
                request
                    .run_as
                    .clone()
                    .or_else(|| ctx.sudo_user.clone())
                    .ok_or(ManageError::RootRunRefused)?,
            );
        }
    }
    Ok(spec)
}

/// How to reach the manager for `scope`: the user bus, else `--machine USER@ --user`.
pub fn reach(scope: Scope, probe: &mut Machine<'_>) -> Result<Bus, ManageError> {
    if scope == Scope::System {
        return Ok(Bus::System);
    }
    let direct = probe.runner.run(&systemctl(&Bus::User, &["show-environment"]));
    if direct.success() {
        return Ok(Bus::User);
    }
    let Some(user) = probe.ctx.user.clone() else {
        return Err(ManageError::BusUnreachable {
            user_bus: direct.summary(),
            machine: ", and without USER the --machine fallback cannot be tried".to_owned(),
        });
    };
    let machine = Bus::Machine(user);
    let via_machine = probe.runner.run(&systemctl(&machine, &["show-environment"]));
    if via_machine.success() {
        return Ok(machine);
    }
    Err(ManageError::BusUnreachable {
        user_bus: direct.summary(),
        machine: format!(", nor with --machine ({})", via_machine.summary()),
    })
}

/// The home a unit names (`HERALD_HOME=`), if it can be read.
fn home_of(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    parse_unit(text).ok()?.invocation().ok()?.herald_home
}

fn ours(spec: &ServiceSpec) -> String {
    spec.home_root.display().to_string()
}

/// Whether an installed unit names another home (an unreadable unit is ours to repair).
fn belongs_elsewhere(bytes: &[u8], spec: &ServiceSpec) -> Option<String> {
    home_of(bytes).filter(|home| *home != ours(spec))
}

/// Legacy unit files of this home in `dir`.
fn legacy_units(spec: &ServiceSpec, dir: &std::path::Path, files: &dyn FileView) -> Vec<(String, PathBuf)> {
    names::legacy_names(spec.profile.as_ref())
        .into_iter()
        .filter(|l| l.backend == B)
        .map(|l| (l.name.clone(), dir.join(&l.name)))
        .filter(|(_, path)| files.exists(path))
        .collect()
}

pub(super) fn plan_install(
    spec: &ServiceSpec,
    request: &InstallRequest,
    probe: &mut Machine<'_>,
) -> Result<Plan, ManageError> {
    // A dry run shows the unit even where no manager could take it (a container, a session without a
    // user bus); a real install refuses.
    let unmanaged = match check_booted(probe) {
        Ok(()) => None,
        Err(e) if request.dry_run => Some(e),
        Err(e) => return Err(e),
    };
    let spec = scoped_spec(spec, request, probe.ctx)?;
    let dir = unit_dir(request.scope, probe.ctx)?;
    let name = names::systemd_unit(spec.profile.as_ref());
    let path = dir.join(&name);
    let rendered = render_unit(&spec)?;
    let current = read(probe.files, &path)?;
    if let Some(bytes) = &current
        && !request.force
        && let Some(other) = belongs_elsewhere(bytes, &spec)
    {
        return Err(ManageError::OtherHome {
            path,
            other,
            ours: ours(&spec),
        });
    }
    let reached = match unmanaged {
        Some(e) => Err(e),
        None => reach(request.scope, probe),
    };
    let bus = match reached {
        Ok(bus) => bus,
        Err(e) if request.dry_run => {
            return Ok(unregistrable(&path, current.as_deref(), rendered, request, &e));
        }
        Err(e) => return Err(e),
    };
    let mut plan = Plan::new(B);

    let legacy = legacy_units(&spec, &dir, probe.files);
    for (legacy_name, legacy_path) in &legacy {
        plan.note(format!(
            "{legacy_name} is a legacy registration of this home: removing it"
        ));
        plan.run(
            systemctl(&bus, &["disable", "--now", legacy_name]),
            Expect::AnyExit,
        );
        plan.steps.push(Step::Remove {
            path: legacy_path.clone(),
            why: "legacy unit name".to_owned(),
        });
    }

    let same = current.as_deref() == Some(rendered.as_bytes());
    let changed = request.force || !same;
    plan.note(match (&current, same) {
        (None, _) => format!("{} is not installed", path.display()),
        (Some(_), true) if request.force => format!("{} is up to date; --force rewrites it", path.display()),
        (Some(_), true) => format!("{} is up to date", path.display()),
        (Some(_), false) => format!(
            "{} differs from what this herald writes: repairing it",
            path.display()
        ),
    });
    if changed {
        plan.steps.push(Step::Write {
            path: path.clone(),
            text: rendered.clone(),
            bytes: rendered.into_bytes(),
            mode: UNIT_MODE,
            why: "the systemd unit".to_owned(),
        });
    }
    if changed || !legacy.is_empty() {
        plan.run(systemctl(&bus, &["daemon-reload"]), Expect::Success);
    }

    let (enabled, active) = if current.is_some() {
        let enabled = probe.runner.run(&systemctl(&bus, &["is-enabled", &name]));
        let active = probe.runner.run(&systemctl(&bus, &["is-active", &name]));
        (
            enabled.success() && enabled.stdout.trim() == "enabled",
            active.success(),
        )
    } else {
        (false, false)
    };
    if request.start_on_login && !enabled {
        plan.run(systemctl(&bus, &["enable", &name]), Expect::Success);
    } else if !request.start_on_login && enabled {
        plan.run(systemctl(&bus, &["disable", &name]), Expect::Success);
    }
    if request.start_now {
        if active && changed {
            plan.run(systemctl(&bus, &["restart", &name]), Expect::Success);
        } else if !active {
            if probe.gateway_running {
                plan.note("a gateway started outside systemd runs on this home: stopping it first");
                plan.steps.push(Step::StopUnmanaged);
            }
            plan.run(systemctl(&bus, &["start", &name]), Expect::Success);
        }
    }
    if request.scope == Scope::User && request.start_on_login {
        plan_linger(&bus, &mut plan, probe);
    }
    Ok(plan)
}

/// The dry run's plan where systemd cannot be reached: the unit it would write, and why nothing could
/// register it (the commands that would follow need the manager, so none is shown).
fn unregistrable(
    path: &std::path::Path,
    current: Option<&[u8]>,
    rendered: String,
    request: &InstallRequest,
    why: &ManageError,
) -> Plan {
    let mut plan = Plan::new(B);
    plan.note("nothing could register this unit on this machine now (a real install stops here):");
    for line in why.to_string().lines() {
        plan.note(format!("  {}", line.trim_end()));
    }
    if request.force || current != Some(rendered.as_bytes()) {
        plan.steps.push(Step::Write {
            path: path.to_path_buf(),
            text: rendered.clone(),
            bytes: rendered.into_bytes(),
            mode: UNIT_MODE,
            why: "the systemd unit".to_owned(),
        });
    } else {
        plan.note(format!("{} is up to date", path.display()));
    }
    plan
}

/// User services stop at logout and start only at login unless the user lingers: check, and enable it
/// (which needs privileges or polkit consent; if that fails the exact command is reported).
fn plan_linger(bus: &Bus, plan: &mut Plan, probe: &mut Machine<'_>) {
    let user = match bus {
        Bus::Machine(user) => Some(user.clone()),
        _ => probe.ctx.user.clone(),
    };
    let Some(user) = user else {
        plan.note("cannot check linger (USER is unset): user services may stop at logout");
        return;
    };
    let shown = probe.runner.run(&Cmd::new(
        "loginctl",
        ["show-user", user.as_str(), "-p", "Linger"],
    ));
    if shown.success() && shown.stdout.trim() == "Linger=yes" {
        return;
    }
    plan.note(format!(
        "linger is off for {user}: without it the gateway stops at logout and starts only at login"
    ));
    plan.run(
        Cmd::new("loginctl", ["enable-linger", user.as_str()]),
        Expect::Advise {
            advice: format!("sudo loginctl enable-linger {user}"),
        },
    );
}

pub(super) fn plan_uninstall(
    spec: &ServiceSpec,
    scope: Scope,
    probe: &mut Machine<'_>,
) -> Result<Plan, ManageError> {
    let Ok(dir) = unit_dir(scope, probe.ctx) else {
        return Ok(Plan::default());
    };
    let mut plan = Plan::default();
    let mut units = Vec::new();
    let name = names::systemd_unit(spec.profile.as_ref());
    let path = dir.join(&name);
    if let Some(bytes) = read(probe.files, &path)? {
        match belongs_elsewhere(&bytes, spec) {
            Some(other) => plan.note(format!(
                "{} registers another home ({other}): left alone",
                path.display()
            )),
            None => units.push((name, path)),
        }
    }
    units.extend(legacy_units(spec, &dir, probe.files));
    if units.is_empty() {
        return Ok(plan);
    }
    plan.backend = Some(B);
    let booted = probe.files.exists(&probe.ctx.locations.systemd_run_dir);
    let bus = if booted { Some(reach(scope, probe)?) } else { None };
    if !booted {
        plan.note("systemd is not running: removing the unit files only");
    }
    for (name, path) in units {
        if let Some(bus) = &bus {
            plan.run(systemctl(bus, &["disable", "--now", &name]), Expect::AnyExit);
        }
        plan.steps.push(Step::Remove {
            path,
            why: format!("the systemd unit {name}"),
        });
    }
    if let Some(bus) = &bus {
        plan.run(systemctl(bus, &["daemon-reload"]), Expect::Success);
    }
    Ok(plan)
}

/// The scope of this home's unit, when systemd runs and a unit naming this home is installed.
pub(super) fn detect(spec: &ServiceSpec, probe: &Machine<'_>) -> Result<Option<Scope>, ManageError> {
    if !probe.files.exists(&probe.ctx.locations.systemd_run_dir) {
        return Ok(None);
    }
    let name = names::systemd_unit(spec.profile.as_ref());
    for scope in [Scope::User, Scope::System] {
        let Ok(dir) = unit_dir(scope, probe.ctx) else {
            continue;
        };
        if let Some(bytes) = read(probe.files, &dir.join(&name))?
            && home_of(&bytes).is_some_and(|home| home == ours(spec))
        {
            return Ok(Some(scope));
        }
    }
    Ok(None)
}

pub(super) fn plan_action(
    spec: &ServiceSpec,
    scope: Scope,
    action: Action,
    probe: &mut Machine<'_>,
) -> Result<Plan, ManageError> {
    let bus = reach(scope, probe)?;
    let name = names::systemd_unit(spec.profile.as_ref());
    let verb = match action {
        Action::Start => "start",
        Action::Stop => "stop",
        Action::Restart => "restart",
    };
    let mut plan = Plan::new(B);
    plan.run(systemctl(&bus, &[verb, &name]), Expect::Success);
    Ok(plan)
}

/// How long `systemctl stop` may take: systemd itself enforces `TimeoutStopSec` (drain + margin).
pub fn stop_budget(spec: &ServiceSpec) -> Duration {
    spec.stop_budget.manager_wait()
}
