//! Planning for Windows per-user autostart: the logon Scheduled Task, and the Startup fallback — this
//! user's `Run` value ([`crate::startup`]) — when the task is refused.
//!
//! **Invariant:** exactly one autostart entry per home. A task registration that succeeds deletes the
//! `Run` value; one that is refused (judged by exit code, never by localized text), times out or
//! prints nothing falls back to setting the `Run` value; `--backend startup` deletes the task; uninstall
//! removes both, legacy names included — among them the `.cmd` launcher the fallback used to write, so
//! the next `install` migrates it and `uninstall` removes either form. Both entries start the windowless
//! `heraldw.exe` themselves, so the chain never opens a console.
//!
//! What is registered is read back for drift detection from the task store
//! (`%SystemRoot%\System32\Tasks\<name>`, `HERALD_TASKS_DIR`) when it can be read, else with
//! `schtasks /Query /XML /TN <name>` (which Wine does not implement: it prints nothing). Windows rewrites a
//! task's XML when it registers it, so the comparison is of the facts Herald sets (command, arguments, principal,
//! policies), not of bytes. The `Run` value is compared as the string Herald would write.
//!
//! Starting now is Herald's own detached, supervised start (as `herald start`): a logon task or a
//! `Run` value only starts the gateway at logon, and Herald's monitor — not Task Scheduler — restarts it.

use super::{FileView, InstallRequest, Machine, ManageError};
use crate::names;
use crate::plan::{Cmd, Expect, Plan, Step};
use crate::spec::{Backend, Scope, ServiceSpec};
use crate::startup::{RunValueOp, parse_run_command, render_run_command};
use crate::task::{TaskFacts, parse_task, render_task, render_task_text};

fn schtasks<'a>(args: impl IntoIterator<Item = &'a str>) -> Cmd {
    Cmd::new("schtasks", args)
}

/// What is registered under a task name.
struct TaskState {
    exists: bool,
    facts: Option<TaskFacts>,
}

/// The task store (the Task Scheduler's own files) first: a file that is there, or one that is not
/// (`NotFound`), is the answer — fast, and the only answer under Wine, whose `schtasks /Query` prints
/// nothing (and whose first `schtasks` in a fresh prefix can hang until the runner's timeout). Only a
/// store that cannot be read (no location; access denied to a non-admin on Windows) makes us ask
/// `schtasks /Query /XML`.
fn query_task(name: &str, probe: &mut Machine<'_>) -> Result<TaskState, ManageError> {
    if let Some(dir) = &probe.ctx.locations.tasks_dir
        && let Ok(stored) = probe.files.read(&dir.join(name))
    {
        return Ok(TaskState {
            exists: stored.is_some(),
            facts: stored.and_then(|bytes| parse_task(&bytes).ok()),
        });
    }
    let out = probe.runner.run(&schtasks(["/Query", "/XML", "/TN", name]));
    if out.success() && out.stdout.contains("<Task") {
        return Ok(TaskState {
            exists: true,
            facts: parse_task(out.stdout.trim_start_matches('\u{feff}').as_bytes()).ok(),
        });
    }
    Ok(TaskState {
        exists: false,
        facts: None,
    })
}

/// Whether the registered task is the one we would register (the facts Herald sets).
fn task_matches(facts: &TaskFacts, spec: &ServiceSpec) -> bool {
    let Ok(want) = spec.invocation(Backend::Task) else {
        return false;
    };
    facts.invocation().is_ok_and(|have| have == want)
        && facts.multiple_instances_policy.as_deref() == Some("IgnoreNew")
        && facts.execution_time_limit.as_deref() == Some("PT0S")
        && facts
            .user_id
            .as_deref()
            .zip(spec.run_as.as_deref())
            .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b))
}

fn run_key(probe: &Machine<'_>) -> Result<String, ManageError> {
    probe.ctx.locations.run_key.clone().ok_or(ManageError::NoRunKey)
}

/// This home's `Run` value now (`None`: not set).
fn run_value(key: &str, name: &str, probe: &Machine<'_>) -> Result<Option<String>, ManageError> {
    probe
        .run_key
        .read(key, name)
        .map_err(|source| ManageError::RunKey {
            op: format!("read the Run value HKCU\\{key}\\{name}"),
            source,
        })
}

fn delete_run_value(key: &str, name: &str, why: &str) -> Step {
    Step::RunValue {
        op: RunValueOp::Delete {
            key: key.to_owned(),
            name: name.to_owned(),
        },
        why: why.to_owned(),
    }
}

fn legacy(spec: &ServiceSpec, backend: Backend) -> Vec<String> {
    names::legacy_names(spec.profile.as_ref())
        .into_iter()
        .filter(|l| l.backend == backend)
        .map(|l| l.name)
        .collect()
}

/// Removal of every Startup-folder launcher of this home that exists (all legacy forms: the `.cmd`
/// launcher, the spaced name, the `.vbs` and `.lnk` wrappers).
fn launcher_removals(spec: &ServiceSpec, dir: &std::path::Path, files: &dyn FileView) -> Vec<Step> {
    legacy(spec, Backend::Startup)
        .into_iter()
        .map(|name| dir.join(name))
        .filter(|path| files.exists(path))
        .map(|path| Step::Remove {
            path,
            why: "a legacy Startup-folder launcher of this home (the Startup fallback is a Run value now)"
                .to_owned(),
        })
        .collect()
}

fn delete_task(name: &str) -> Step {
    Step::Run {
        cmd: schtasks(["/Delete", "/TN", name, "/F"]),
        expect: Expect::AnyExit,
    }
}

pub(super) fn plan_install(
    spec: &ServiceSpec,
    request: &InstallRequest,
    probe: &mut Machine<'_>,
) -> Result<Plan, ManageError> {
    let backend = request.backend;
    if request.scope == Scope::System {
        return Err(ManageError::NoSystemScope { backend });
    }
    if request.run_as.is_some() {
        return Err(ManageError::RunAsNeedsSystem);
    }
    let mut spec = spec.clone();
    spec.run_as = probe.ctx.windows_account.clone();
    if backend == Backend::Task && spec.run_as.is_none() {
        return Err(ManageError::UnknownUser {
            what: "the logon task names its user (USERNAME)",
        });
    }
    let key = run_key(probe)?;
    let value_name = names::run_value_name(spec.profile.as_ref());
    let command = render_run_command(&spec)?;
    let current = run_value(&key, &value_name, probe)?;
    let value_same = current.as_deref() == Some(command.as_str());
    let value_label = format!("the Run value HKCU\\{key}\\{value_name}");
    let set_value = Step::RunValue {
        op: RunValueOp::Set {
            key: key.clone(),
            name: value_name.clone(),
            command,
        },
        why: "the Startup fallback: Explorer starts heraldw.exe at logon".to_owned(),
    };
    let name = names::task_name(spec.profile.as_ref());
    let mut plan = Plan::new(backend);

    // Legacy task names and legacy launchers go whichever backend is chosen.
    for legacy_task in legacy(&spec, Backend::Task) {
        if query_task(&legacy_task, probe)?.exists {
            plan.note(format!(
                "task {legacy_task:?} is a legacy registration of this home: removing it"
            ));
            plan.steps.push(delete_task(&legacy_task));
        }
    }
    if let Some(dir) = &probe.ctx.locations.startup_dir {
        let launchers = launcher_removals(&spec, dir, probe.files);
        if !launchers.is_empty() {
            plan.note(
                "a legacy Startup-folder launcher of this home (a console flashed at logon): replacing it",
            );
        }
        plan.steps.extend(launchers);
    }

    // One autostart entry per home: this home's Windows Service goes (stopped first).
    let service_name = names::windows_service_name(spec.profile.as_ref());
    let mut service_gateway = false;
    // A per-user install must not fail because the SCM cannot be asked: say so and go on.
    let service = super::service_entry::query(probe.scm, &service_name).unwrap_or_else(|e| {
        plan.note(format!("cannot check for a Windows Service of this home: {e}"));
        None
    });
    if let Some(service) = service
        && super::service_entry::names_this_home(&service, &spec)
    {
        plan.note(format!(
            "the Windows Service {service_name} is registered for this home too: removing it (one autostart entry per home)"
        ));
        service_gateway = service.status.state.active();
        plan.steps
            .extend(super::service_entry::removal(&spec, &service_name, &service));
    }

    let task = query_task(&name, probe)?;
    match backend {
        Backend::Task => {
            let task_ok = task.facts.as_ref().is_some_and(|f| task_matches(f, &spec));
            plan.note(match (&task.exists, task_ok) {
                (false, _) => format!("the task {name} is not registered"),
                (true, true) => format!("the task {name} is up to date"),
                (true, false) => {
                    format!("the task {name} differs from what this herald registers: repairing it")
                }
            });
            let one_entry = "the task is registered: one autostart entry per home";
            if task_ok && !request.force {
                if current.is_some() {
                    plan.steps.push(delete_run_value(&key, &value_name, one_entry));
                }
            } else {
                let xml_path = std::env::temp_dir().join(format!("herald-{name}-{}.xml", std::process::id()));
                plan.steps.push(Step::Write {
                    path: xml_path.clone(),
                    text: render_task_text(&spec)?,
                    bytes: render_task(&spec)?,
                    mode: 0o600,
                    why: "the task definition (UTF-16LE), for schtasks /Create /XML".to_owned(),
                });
                let xml = xml_path.display().to_string();
                let on_success = current
                    .is_some()
                    .then(|| delete_run_value(&key, &value_name, one_entry))
                    .into_iter()
                    .collect();
                // An unconfirmed registration may have left a task behind: delete it, so the Run value is
                // the one autostart entry.
                let mut fallback = vec![delete_task(&name)];
                if !value_same {
                    fallback.push(set_value);
                }
                let verify = probe.ctx.locations.tasks_dir.as_ref().map(|dir| dir.join(&name));
                plan.run(
                    schtasks(["/Create", "/XML", xml.as_str(), "/TN", name.as_str(), "/F"]),
                    Expect::TaskRegistration {
                        on_success,
                        fallback,
                        verify,
                    },
                );
                plan.steps.push(Step::Remove {
                    path: xml_path,
                    why: "the temporary task definition".to_owned(),
                });
            }
        }
        _ => {
            plan.note(match (&current, value_same) {
                (None, _) => format!("{value_label} is not set"),
                (Some(_), true) => format!("{value_label} is up to date"),
                (Some(_), false) => format!("{value_label} differs: repairing it"),
            });
            if task.exists {
                plan.note(format!(
                    "the task {name} is registered too: deleting it (one autostart entry)"
                ));
                plan.steps.push(delete_task(&name));
            }
            if !value_same || request.force {
                plan.steps.push(set_value);
            }
        }
    }
    // The service's gateway (if it ran) is stopped by the removal above: start ours after it.
    if request.start_now && (!probe.gateway_running || service_gateway) {
        plan.steps.push(Step::StartDetached);
    }
    Ok(plan)
}

pub(super) fn plan_uninstall(spec: &ServiceSpec, probe: &mut Machine<'_>) -> Result<Plan, ManageError> {
    let mut plan = Plan::default();
    for name in std::iter::once(names::task_name(spec.profile.as_ref())).chain(legacy(spec, Backend::Task)) {
        if query_task(&name, probe)?.exists {
            plan.backend = Some(Backend::Task);
            plan.steps.push(delete_task(&name));
        }
    }
    if let Some(key) = &probe.ctx.locations.run_key {
        let name = names::run_value_name(spec.profile.as_ref());
        if run_value(key, &name, probe)?.is_some() {
            plan.backend.get_or_insert(Backend::Startup);
            plan.steps
                .push(delete_run_value(key, &name, "this home's Startup fallback"));
        }
    }
    let launchers = plan_uninstall_launchers(spec, probe)?;
    if plan.backend.is_none() {
        plan.backend = launchers.backend;
    }
    plan.steps.extend(launchers.steps);
    Ok(plan)
}

/// Removal of this home's (legacy) Startup-folder launchers.
pub(super) fn plan_uninstall_launchers(
    spec: &ServiceSpec,
    probe: &mut Machine<'_>,
) -> Result<Plan, ManageError> {
    let mut plan = Plan::default();
    if let Some(dir) = &probe.ctx.locations.startup_dir {
        plan.steps = launcher_removals(spec, dir, probe.files);
        if !plan.steps.is_empty() {
            plan.backend = Some(Backend::Startup);
        }
    }
    Ok(plan)
}

/// One logon autostart entry of a home, for `status --deep`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutostartEntry {
    /// [`Backend::Task`] or [`Backend::Startup`].
    pub backend: Backend,
    /// `logon task`, `Run value` or `legacy Startup launcher`.
    pub what: &'static str,
    /// The task name, the value's path or the launcher's path.
    pub name: String,
    /// Whether it names this home (`None`: unreadable).
    pub this_home: Option<bool>,
}

fn names_home(invocation: &crate::Invocation, spec: &ServiceSpec) -> bool {
    let ours = spec.home_root.display().to_string();
    invocation
        .args
        .iter()
        .position(|a| a == "--home")
        .and_then(|i| invocation.args.get(i + 1))
        .is_some_and(|home| home.eq_ignore_ascii_case(&ours))
}

/// This home's logon task, `Run` value and legacy Startup launchers, if registered. The task store (the Task Scheduler's own
/// files) is read first: when it can be read, its answer is final (fast, and the only answer under Wine,
/// whose `schtasks /Query` prints nothing); only when it cannot (no location, or access denied to a
/// non-admin on Windows) is `schtasks /Query /XML` asked, bounded by the runner's timeout — a timeout is
/// an error, not an absence.
pub fn autostart_entries(
    spec: &ServiceSpec,
    probe: &mut Machine<'_>,
) -> Result<Vec<AutostartEntry>, ManageError> {
    let mut out = Vec::new();
    let name = names::task_name(spec.profile.as_ref());
    let stored = match &probe.ctx.locations.tasks_dir {
        Some(dir) => probe.files.read(&dir.join(&name)).ok(),
        None => None,
    };
    let task = match stored {
        Some(Some(bytes)) => Some(parse_task(&bytes).ok()),
        Some(None) => None,
        None => {
            let cmd = schtasks(["/Query", "/XML", "/TN", name.as_str()]);
            let shown = probe.runner.run(&cmd);
            if shown.timed_out {
                return Err(ManageError::Command {
                    cmd: cmd.to_string(),
                    summary: shown.summary(),
                });
            }
            (shown.success() && shown.stdout.contains("<Task"))
                .then(|| parse_task(shown.stdout.trim_start_matches('\u{feff}').as_bytes()).ok())
        }
    };
    if let Some(facts) = task {
        out.push(AutostartEntry {
            backend: Backend::Task,
            what: "logon task",
            name: name.clone(),
            this_home: facts
                .and_then(|f| f.invocation().ok())
                .map(|inv| names_home(&inv, spec)),
        });
    }
    if let Some(key) = &probe.ctx.locations.run_key {
        let value = names::run_value_name(spec.profile.as_ref());
        if let Some(command) = run_value(key, &value, probe)? {
            out.push(AutostartEntry {
                backend: Backend::Startup,
                what: "Run value",
                name: format!("HKCU\\{key}\\{value}"),
                this_home: parse_run_command(&command).ok().map(|inv| names_home(&inv, spec)),
            });
        }
    }
    if let Some(dir) = &probe.ctx.locations.startup_dir {
        for name in legacy(spec, Backend::Startup) {
            let path = dir.join(name);
            if probe.files.exists(&path) {
                out.push(AutostartEntry {
                    backend: Backend::Startup,
                    what: "legacy Startup launcher",
                    name: path.display().to_string(),
                    this_home: None,
                });
            }
        }
    }
    Ok(out)
}
