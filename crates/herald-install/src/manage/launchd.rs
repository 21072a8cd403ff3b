//! Planning for launchd: the LaunchAgent plist and `launchctl` in the `gui/<uid>` domain.
//!
//! **Invariant:** `launchctl enable` comes before every `bootstrap` (a persistent `disable` left by
//! anyone would make the bootstrap a silent no-op), a stop is `bootout` (never `launchctl stop`, which
//! `KeepAlive` undoes, and never a persistent `disable`, which kills auto-recovery), and a restart is
//! bootout → wait for the gateway to exit → enable → bootstrap. The exit codes of `bootstrap` (5 retried
//! within `ExitTimeOut`, 37 checked with `launchctl print`, 125 = no GUI session) are judged by the
//! executor from [`Expect::LaunchdBootstrap`]. The logic is pure and compiled everywhere, so it is tested
//! on Linux against a fake `launchctl` (with `--backend launchd`).

use std::path::PathBuf;
use std::time::Duration;

use super::{Action, FileView, InstallRequest, Machine, ManageError, read};
use crate::launchd::{parse_plist, render_plist};
use crate::names;
use crate::plan::{Cmd, Expect, Plan, Step};
use crate::spec::{Backend, Scope, ServiceSpec};

const B: Backend = Backend::Launchd;
/// launchd refuses agents writable by others; 0644 is the convention.
const PLIST_MODE: u32 = 0o644;

fn launchctl(args: &[&str]) -> Cmd {
    Cmd::new("launchctl", args.iter().copied())
}

struct Domain {
    /// `gui/<uid>`.
    domain: String,
    dir: PathBuf,
}

impl Domain {
    fn target(&self, label: &str) -> String {
        format!("{}/{label}", self.domain)
    }
}

fn domain(probe: &Machine<'_>) -> Result<Domain, ManageError> {
    let dir = probe
        .ctx
        .locations
        .launch_agents_dir
        .clone()
        .ok_or(ManageError::NoLaunchAgentsDir)?;
    let uid = probe.ctx.uid.ok_or(ManageError::NoUid)?;
    Ok(Domain {
        domain: format!("gui/{uid}"),
        dir,
    })
}

fn home_of(bytes: &[u8]) -> Option<String> {
    parse_plist(bytes).ok()?.herald_home
}

fn ours(spec: &ServiceSpec) -> String {
    spec.home_root.display().to_string()
}

/// enable + bootstrap, the only way this module starts a job.
fn start_steps(plan: &mut Plan, d: &Domain, label: &str, plist: &std::path::Path, retry_for: Duration) {
    let target = d.target(label);
    plan.run(launchctl(&["enable", &target]), Expect::Success);
    let plist = plist.display().to_string();
    plan.run(
        launchctl(&["bootstrap", &d.domain, &plist]),
        Expect::LaunchdBootstrap {
            check: launchctl(&["print", &target]),
            retry_for,
        },
    );
}

fn legacy_plists(spec: &ServiceSpec, d: &Domain, files: &dyn FileView) -> Vec<(String, PathBuf)> {
    names::legacy_names(spec.profile.as_ref())
        .into_iter()
        .filter(|l| l.backend == B)
        .map(|l| (l.name.clone(), d.dir.join(format!("{}.plist", l.name))))
        .filter(|(_, path)| files.exists(path))
        .collect()
}

pub(super) fn plan_install(
    spec: &ServiceSpec,
    request: &InstallRequest,
    probe: &mut Machine<'_>,
) -> Result<Plan, ManageError> {
    if request.scope == Scope::System {
        return Err(ManageError::NoSystemScope { backend: B });
    }
    if request.run_as.is_some() {
        return Err(ManageError::RunAsNeedsSystem);
    }
    if !request.start_on_login {
        return Err(ManageError::LaunchdAlwaysAtLogin);
    }
    let d = domain(probe)?;
    let label = names::launchd_label(spec.profile.as_ref());
    let path = d.dir.join(names::launchd_plist_file(spec.profile.as_ref()));
    let rendered = render_plist(spec)?;
    let current = read(probe.files, &path)?;
    if let Some(bytes) = &current
        && !request.force
        && let Some(other) = home_of(bytes).filter(|h| *h != ours(spec))
    {
        return Err(ManageError::OtherHome {
            path,
            other,
            ours: ours(spec),
        });
    }
    let mut plan = Plan::new(B);
    let stop_budget = Duration::from_secs(spec.stop_timeout_secs());

    for (legacy_label, legacy_path) in legacy_plists(spec, &d, probe.files) {
        plan.note(format!(
            "{legacy_label} is a legacy registration of this home: removing it"
        ));
        plan.run(
            launchctl(&["bootout", &d.target(&legacy_label)]),
            Expect::LaunchdBootout,
        );
        plan.steps.push(Step::Remove {
            path: legacy_path,
            why: "legacy launchd label".to_owned(),
        });
    }

    let same = current.as_deref() == Some(rendered.as_slice());
    let changed = request.force || !same;
    plan.note(match (&current, same) {
        (None, _) => format!("{} is not installed", path.display()),
        (Some(_), true) => format!("{} is up to date", path.display()),
        (Some(_), false) => format!(
            "{} differs from what this herald writes: repairing it",
            path.display()
        ),
    });
    let loaded = current.is_some()
        && probe
            .runner
            .run(&launchctl(&["print", &d.target(&label)]))
            .success();
    if changed {
        if loaded {
            // launchd keeps the loaded copy of a job: unload it before the file changes under it.
            plan.run(launchctl(&["bootout", &d.target(&label)]), Expect::LaunchdBootout);
            plan.steps.push(Step::WaitStopped {
                lock: super::spec_home(spec).lock_file(),
                timeout: stop_budget,
            });
        }
        plan.steps.push(Step::Write {
            path: path.clone(),
            text: String::from_utf8_lossy(&rendered).into_owned(),
            bytes: rendered,
            mode: PLIST_MODE,
            why: "the LaunchAgent".to_owned(),
        });
    }
    // A changed job that was loaded is loaded again; otherwise start only when asked to.
    let reload = changed && loaded;
    let start = request.start_now && (changed || !loaded);
    if reload || start {
        if probe.gateway_running && !loaded {
            plan.note("a gateway started outside launchd runs on this home: stopping it first");
            plan.steps.push(Step::StopUnmanaged);
        }
        start_steps(&mut plan, &d, &label, &path, stop_budget);
    }
    Ok(plan)
}

pub(super) fn plan_uninstall(spec: &ServiceSpec, probe: &mut Machine<'_>) -> Result<Plan, ManageError> {
    let Ok(d) = domain(probe) else {
        return Ok(Plan::default());
    };
    let mut plan = Plan::default();
    let label = names::launchd_label(spec.profile.as_ref());
    let path = d.dir.join(names::launchd_plist_file(spec.profile.as_ref()));
    let mut jobs = Vec::new();
    if let Some(bytes) = read(probe.files, &path)? {
        match home_of(&bytes).filter(|h| *h != ours(spec)) {
            Some(other) => plan.note(format!(
                "{} registers another home ({other}): left alone",
                path.display()
            )),
            None => jobs.push((label, path)),
        }
    }
    jobs.extend(legacy_plists(spec, &d, probe.files));
    for (label, path) in jobs {
        plan.backend = Some(B);
        plan.run(launchctl(&["bootout", &d.target(&label)]), Expect::LaunchdBootout);
        plan.steps.push(Step::Remove {
            path,
            why: format!("the LaunchAgent {label}"),
        });
    }
    Ok(plan)
}

/// Whether this home's LaunchAgent is installed.
pub(super) fn detect(spec: &ServiceSpec, probe: &Machine<'_>) -> Result<bool, ManageError> {
    let Some(dir) = &probe.ctx.locations.launch_agents_dir else {
        return Ok(false);
    };
    let path = dir.join(names::launchd_plist_file(spec.profile.as_ref()));
    Ok(read(probe.files, &path)?
        .and_then(|bytes| home_of(&bytes))
        .is_some_and(|home| home == ours(spec)))
}

pub(super) fn plan_action(
    spec: &ServiceSpec,
    action: Action,
    probe: &mut Machine<'_>,
) -> Result<Plan, ManageError> {
    let d = domain(probe)?;
    let label = names::launchd_label(spec.profile.as_ref());
    let path = d.dir.join(names::launchd_plist_file(spec.profile.as_ref()));
    let stop_budget = Duration::from_secs(spec.stop_timeout_secs());
    let mut plan = Plan::new(B);
    if matches!(action, Action::Stop | Action::Restart) {
        plan.run(launchctl(&["bootout", &d.target(&label)]), Expect::LaunchdBootout);
    }
    if matches!(action, Action::Stop | Action::Restart) {
        // bootout returns once launchd has sent SIGTERM; a stop returns only after the exit.
        plan.steps.push(Step::WaitStopped {
            lock: super::spec_home(spec).lock_file(),
            timeout: stop_budget,
        });
    }
    if matches!(action, Action::Start | Action::Restart) {
        start_steps(&mut plan, &d, &label, &path, stop_budget);
    }
    Ok(plan)
}
