//! Planning for the Windows Service backend (machine-wide, admin): the SCM registration
//! `Herald_Gateway[_PROFILE]` that starts `herald run --windows-service` (the monitor, which restarts a
//! crashed worker itself) at boot, and restarts the service when the monitor fails.
//!
//! **Invariant:** the registration is read through the [`Scm`] trait and compared fact by fact with
//! [`ScmConfig::for_spec`] ([`scm::drift`]): equal → no step; different → `Reconfigure` (and, when it
//! runs, a planned stop and start so the new command line is the one that runs); `--force` → reconfigure
//! anyway. A service with our name that names another home is never taken over without `--force`. Facts
//! the SCM cannot report (Wine cannot report failure actions) are named in the notes and not counted as
//! drift, so a second install still changes nothing.
//!
//! **Invariant:** one autostart entry per home: installing the service deletes this home's logon task
//! and Startup launchers (legacy names too); installing those deletes this home's service (see
//! [`super::logon`]); uninstall removes all of them.

use std::time::Duration;

use super::service_entry::{names_this_home, ours, query, removal, stop_timeout};
use super::{Action, InstallRequest, Machine, ManageError, logon};
use crate::names;
use crate::plan::{Plan, Step};
use crate::scm::{self, ScmConfig, ScmOp, ScmService, ScmState};
use crate::spec::{Backend, ServiceSpec};

const B: Backend = Backend::WindowsService;
/// How long a start may take before the install reports it (the gateway resumes unfinished turns
/// before it reports running).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) fn plan_install(
    spec: &ServiceSpec,
    request: &InstallRequest,
    probe: &mut Machine<'_>,
) -> Result<Plan, ManageError> {
    if request.run_as.is_some() {
        return Err(ManageError::ServiceAccountUnsupported);
    }
    let name = names::windows_service_name(spec.profile.as_ref());
    let config = ScmConfig::for_spec(spec, request.start_on_login)?;
    let current = query(probe.scm, &name)?;
    if let Some(service) = &current
        && !request.force
        && !names_this_home(service, spec)
    {
        return Err(ManageError::OtherHomeService {
            name,
            other: service.home().unwrap_or_else(|| service.command_line.clone()),
            ours: ours(spec),
        });
    }
    let mut plan = Plan::new(B);
    // One autostart entry per home: the logon task and the Startup launchers go (legacy names too).
    let others = logon::plan_uninstall(spec, probe)?;
    if !others.steps.is_empty() {
        plan.note("this home also has a logon task, a Run value or a Startup launcher: removing it (one autostart entry per home)");
        plan.steps.extend(others.steps);
    }

    let running = current
        .as_ref()
        .is_some_and(|s| s.status.state == ScmState::Running);
    let changed = match &current {
        None => {
            plan.note(format!("the service {name} is not installed"));
            plan.steps.push(Step::Scm(ScmOp::Create {
                name: name.clone(),
                config,
            }));
            true
        }
        Some(service) => {
            let drift = scm::drift(service, &config);
            if !drift.unverifiable.is_empty() {
                plan.note(format!(
                    "the Service Control Manager cannot report {}: not compared",
                    drift.unverifiable.join(" or ")
                ));
            }
            if drift.is_empty() && !request.force {
                plan.note(format!("the service {name} is up to date"));
                false
            } else {
                plan.note(if drift.is_empty() {
                    format!("the service {name} is up to date; --force rewrites it")
                } else {
                    format!(
                        "the service {name} differs from what this herald registers ({}): repairing it",
                        drift.differences.join("; ")
                    )
                });
                plan.steps.push(Step::Scm(ScmOp::Reconfigure {
                    name: name.clone(),
                    config,
                }));
                true
            }
        }
    };
    if request.start_now {
        let start = Step::Scm(ScmOp::Start {
            name: name.clone(),
            timeout: START_TIMEOUT,
        });
        if running && changed {
            plan.note("the service runs: restarting it so the new registration is the one that runs");
            plan.steps.push(Step::Scm(ScmOp::Stop {
                name: name.clone(),
                timeout: stop_timeout(spec),
            }));
            plan.steps.push(start);
        } else if !running {
            if probe.gateway_running {
                plan.note("a gateway started outside the service runs on this home: stopping it first");
                plan.steps.push(Step::StopUnmanaged);
            }
            plan.steps.push(start);
        }
    }
    Ok(plan)
}

/// Removal of this home's service (stopped first), if the SCM knows one naming this home.
pub(super) fn plan_uninstall(spec: &ServiceSpec, probe: &mut Machine<'_>) -> Result<Plan, ManageError> {
    let mut plan = Plan::default();
    let name = names::windows_service_name(spec.profile.as_ref());
    match query(probe.scm, &name)? {
        Some(service) if names_this_home(&service, spec) => {
            plan.backend = Some(B);
            plan.steps = removal(spec, &name, &service);
        }
        Some(service) => plan.note(format!(
            "the service {name} belongs to another home ({}): left alone",
            service.home().unwrap_or_default()
        )),
        None => {}
    }
    Ok(plan)
}

/// Whether this home's service is registered (and names this home).
pub(super) fn detect(spec: &ServiceSpec, probe: &Machine<'_>) -> Result<Option<ScmService>, ManageError> {
    let name = names::windows_service_name(spec.profile.as_ref());
    Ok(query(probe.scm, &name)?.filter(|s| names_this_home(s, spec)))
}

pub(super) fn plan_action(
    spec: &ServiceSpec,
    action: Action,
    probe: &mut Machine<'_>,
) -> Result<Plan, ManageError> {
    let name = names::windows_service_name(spec.profile.as_ref());
    let service_active = query(probe.scm, &name)?.is_some_and(|s| s.status.state.active());
    let mut plan = Plan::new(B);
    let stop = Step::Scm(ScmOp::Stop {
        name: name.clone(),
        timeout: stop_timeout(spec),
    });
    let start = Step::Scm(ScmOp::Start {
        name,
        timeout: START_TIMEOUT,
    });
    // A gateway that runs while the service does not was started outside it: it would hold the lock.
    let unmanaged = probe.gateway_running && !service_active;
    if unmanaged && action != Action::Stop {
        plan.note("a gateway started outside the service runs on this home: stopping it first");
        plan.steps.push(Step::StopUnmanaged);
    }
    match action {
        Action::Start => plan.steps.push(start),
        Action::Stop => {
            plan.steps.push(stop);
            if unmanaged {
                plan.steps.push(Step::StopUnmanaged);
            }
        }
        Action::Restart => {
            plan.steps.push(stop);
            plan.steps.push(start);
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::context::{Context, TargetOs};
    use crate::execute::{Actors, Hooks, execute};
    use crate::manage::{self, FileView, Registered};
    use crate::plan::Cmd;
    use crate::runner::{CmdOutput, CommandRunner};
    use crate::scm::{Applied, Scm, ScmError, ScmExit, ScmStatus};
    use crate::spec::{Scope, unix_spec};
    use crate::startup::{RUN_KEY, RunKey, RunKeyError};

    const NAME: &str = "Herald_Gateway_work";

    #[derive(Default)]
    struct FakeScm {
        services: HashMap<String, ScmService>,
        applied: Vec<String>,
    }

    impl Scm for FakeScm {
        fn query(&self, name: &str) -> Result<Option<ScmService>, ScmError> {
            Ok(self.services.get(name).cloned())
        }

        fn apply(&mut self, op: &ScmOp) -> Result<Applied, ScmError> {
            self.applied
                .push(op.to_string().lines().next().unwrap().to_owned());
            match op {
                ScmOp::Create { name, config } | ScmOp::Reconfigure { name, config } => {
                    let status = self.services.get(name).map(|s| s.status.clone());
                    let mut service = registered(config);
                    if let Some(status) = status {
                        service.status = status;
                    }
                    self.services.insert(name.clone(), service);
                }
                ScmOp::Start { name, .. } => {
                    let s = self.services.get_mut(name).unwrap();
                    s.status.state = ScmState::Running;
                    s.status.pid = Some(42);
                }
                ScmOp::Stop { name, .. } => {
                    if let Some(s) = self.services.get_mut(name) {
                        s.status.state = ScmState::Stopped;
                        s.status.pid = None;
                    }
                }
                ScmOp::Delete { name } => {
                    self.services.remove(name);
                }
            }
            Ok(Applied::default())
        }
    }

    /// What the SCM reports for a registration made from `config` (Wine: no failure facts).
    fn registered(config: &ScmConfig) -> ScmService {
        ScmService {
            command_line: config.command_line(),
            start: config.start,
            account: Some("LocalSystem".into()),
            failure: None,
            failure_on_non_crash: None,
            status: ScmStatus::settled(ScmState::Stopped, None, ScmExit::Win32(0)),
        }
    }

    /// This user's `Run` values: (key, name) → command.
    #[derive(Default)]
    struct FakeRunKey(HashMap<(String, String), String>);

    impl RunKey for FakeRunKey {
        fn read(&self, key: &str, name: &str) -> Result<Option<String>, RunKeyError> {
            Ok(self.0.get(&(key.to_owned(), name.to_owned())).cloned())
        }
        fn set(&mut self, key: &str, name: &str, command: &str) -> Result<(), RunKeyError> {
            self.0
                .insert((key.to_owned(), name.to_owned()), command.to_owned());
            Ok(())
        }
        fn delete(&mut self, key: &str, name: &str) -> Result<(), RunKeyError> {
            self.0.remove(&(key.to_owned(), name.to_owned()));
            Ok(())
        }
    }

    #[derive(Default)]
    struct Files(HashMap<PathBuf, Vec<u8>>);

    impl FileView for Files {
        fn read(&self, path: &Path) -> std::io::Result<Option<Vec<u8>>> {
            Ok(self.0.get(path).cloned())
        }
        fn exists(&self, path: &Path) -> bool {
            self.0.contains_key(path)
        }
    }

    /// `schtasks /Query` prints nothing (as Wine's): the task store decides.
    #[derive(Default)]
    struct Runner(Vec<String>);

    impl CommandRunner for Runner {
        fn run(&mut self, cmd: &Cmd) -> CmdOutput {
            self.0.push(cmd.to_string());
            CmdOutput {
                code: Some(0),
                ..CmdOutput::default()
            }
        }
    }

    struct NoHooks(Vec<&'static str>);

    impl Hooks for NoHooks {
        fn stop_unmanaged(&mut self) -> Result<(), crate::execute::HookError> {
            self.0.push("stop_unmanaged");
            Ok(())
        }
        fn start_detached(&mut self) -> Result<(), crate::execute::HookError> {
            self.0.push("start_detached");
            Ok(())
        }
    }

    fn ctx() -> Context {
        let vars: HashMap<&str, &str> = [
            ("HERALD_STARTUP_DIR", "/startup"),
            ("HERALD_TASKS_DIR", "/tasks"),
            ("USERNAME", "a"),
            ("USERDOMAIN", "PC"),
        ]
        .into_iter()
        .collect();
        Context::from_lookup(TargetOs::Windows, None, None, |k| vars.get(k).map(Into::into))
    }

    fn spec() -> ServiceSpec {
        let mut spec = unix_spec("/x", "/h", Some("work"), 30);
        spec.executable = r"C:\Program Files\Herald\herald.exe".into();
        spec.gui_executable = Some(r"C:\Program Files\Herald\heraldw.exe".into());
        spec.home_root = r"C:\Users\a\AppData\Local\herald".into();
        spec
    }

    fn request(backend: Backend) -> InstallRequest {
        InstallRequest {
            backend,
            scope: Scope::User,
            run_as: None,
            start_now: true,
            start_on_login: true,
            force: false,
            dry_run: false,
        }
    }

    struct World {
        ctx: Context,
        files: Files,
        runner: Runner,
        scm: FakeScm,
        run_key: FakeRunKey,
        gateway_running: bool,
    }

    impl World {
        fn new() -> World {
            World {
                ctx: ctx(),
                files: Files::default(),
                runner: Runner::default(),
                scm: FakeScm::default(),
                run_key: FakeRunKey::default(),
                gateway_running: false,
            }
        }

        fn plan(
            &mut self,
            f: impl FnOnce(&mut Machine<'_>) -> Result<Plan, ManageError>,
        ) -> Result<Plan, ManageError> {
            let mut probe = Machine {
                ctx: &self.ctx,
                files: &self.files,
                runner: &mut self.runner,
                scm: &self.scm,
                run_key: &self.run_key,
                gateway_running: self.gateway_running,
            };
            f(&mut probe)
        }

        fn install(&mut self, request: &InstallRequest) -> Result<Plan, ManageError> {
            self.plan(|p| manage::plan_install(&spec(), request, p))
        }

        /// Carries the plan out against the fakes (files are removed/written in the map).
        fn execute(&mut self, plan: &Plan) -> Vec<&'static str> {
            for step in &plan.steps {
                match step {
                    Step::Remove { path, .. } => {
                        self.files.0.remove(path);
                    }
                    Step::Write { path, bytes, .. } => {
                        self.files.0.insert(path.clone(), bytes.clone());
                    }
                    _ => {}
                }
            }
            let only_scm = Plan {
                steps: plan
                    .steps
                    .iter()
                    .filter(|s| {
                        matches!(
                            s,
                            Step::Scm(_) | Step::RunValue { .. } | Step::StopUnmanaged | Step::StartDetached
                        )
                    })
                    .cloned()
                    .collect(),
                ..plan.clone()
            };
            let mut hooks = NoHooks(Vec::new());
            let mut runner = Runner::default();
            execute(
                &only_scm,
                &mut Actors {
                    runner: &mut runner,
                    scm: &mut self.scm,
                    run_key: &mut self.run_key,
                    hooks: &mut hooks,
                },
            )
            .unwrap();
            hooks.0
        }
    }

    fn scm_ops(plan: &Plan) -> Vec<String> {
        plan.steps
            .iter()
            .filter_map(|s| match s {
                Step::Scm(op) => Some(op.to_string().lines().next().unwrap().to_owned()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn windows_backends_are_windows_only_before_anything_is_read() {
        for (os, name) in [(TargetOs::Linux, "Linux"), (TargetOs::MacOs, "macOS")] {
            for backend in [Backend::Task, Backend::Startup, Backend::WindowsService] {
                let mut world = World::new();
                world.ctx.os = os;
                let e = world.install(&request(backend)).unwrap_err();
                assert!(
                    matches!(e, ManageError::WindowsOnly { backend: b, os: o } if b == backend && o == name),
                    "{e}"
                );
                assert!(e.to_string().contains("Windows only"), "{e}");
                assert!(world.runner.0.is_empty(), "nothing ran");
            }
        }
    }

    #[test]
    fn a_fresh_install_creates_and_starts_and_a_second_changes_nothing() {
        let mut w = World::new();
        let plan = w.install(&request(B)).unwrap();
        assert_eq!(
            scm_ops(&plan),
            [
                format!("scm: create service {NAME}"),
                format!("scm: start service {NAME} (wait up to 60s until it runs)")
            ]
        );
        let text = plan.describe();
        assert!(
            text.contains("--windows-service") && text.contains("restart after 1s, 5s, 30s"),
            "{text}"
        );
        w.execute(&plan);
        assert_eq!(w.scm.services[NAME].status.state, ScmState::Running);
        w.gateway_running = true;
        let again = w.install(&request(B)).unwrap();
        assert!(again.is_empty(), "{}", again.describe());
        assert!(
            again
                .notes
                .iter()
                .any(|n| n.contains("cannot report failure actions")),
            "{:?}",
            again.notes
        );
    }

    #[test]
    fn drift_is_repaired_and_a_running_service_restarted() {
        let mut w = World::new();
        let config = ScmConfig::for_spec(&spec(), true).unwrap();
        let mut service = registered(&config);
        service.command_line = r#""C:\old\herald.exe" --home C:\Users\a\AppData\Local\herald --profile work run --no-supervise --windows-service"#.into();
        service.status.state = ScmState::Running;
        w.scm.services.insert(NAME.into(), service);
        w.gateway_running = true;
        let plan = w.install(&request(B)).unwrap();
        assert_eq!(
            scm_ops(&plan),
            [
                format!("scm: reconfigure service {NAME}"),
                format!(
                    "scm: send Stop to service {NAME} (planned stop with drain; wait up to 60s until stopped)"
                ),
                format!("scm: start service {NAME} (wait up to 60s until it runs)"),
            ]
        );
        assert!(
            plan.notes.iter().any(|n| n.contains(r"C:\old\herald.exe")),
            "{:?}",
            plan.notes
        );
        assert!(!plan.steps.contains(&Step::StopUnmanaged));
        w.execute(&plan);
        assert!(w.install(&request(B)).unwrap().is_empty());
        // --force rewrites an up-to-date registration.
        let mut force = request(B);
        force.force = true;
        let plan = w.install(&force).unwrap();
        assert_eq!(scm_ops(&plan)[0], format!("scm: reconfigure service {NAME}"));
    }

    #[test]
    fn another_homes_service_is_not_taken_over_without_force() {
        let mut w = World::new();
        let mut other = spec();
        other.home_root = r"C:\Users\b\AppData\Local\herald".into();
        w.scm.services.insert(
            NAME.into(),
            registered(&ScmConfig::for_spec(&other, true).unwrap()),
        );
        let err = w.install(&request(B)).unwrap_err();
        assert!(matches!(err, ManageError::OtherHomeService { .. }), "{err}");
        assert!(err.to_string().contains(r"C:\Users\b\AppData\Local\herald"));
        let mut force = request(B);
        force.force = true;
        assert_eq!(
            scm_ops(&w.install(&force).unwrap())[0],
            format!("scm: reconfigure service {NAME}")
        );
        // Nor removed, nor routed through.
        let plan = w
            .plan(|p| manage::plan_uninstall(&spec(), Scope::User, p))
            .unwrap();
        assert!(plan.is_empty(), "{}", plan.describe());
        let detected = w
            .plan(|p| {
                assert_eq!(manage::detect(&spec(), p).unwrap(), None);
                Ok(Plan::default())
            })
            .unwrap();
        assert!(detected.is_empty());
    }

    #[test]
    fn one_autostart_entry_per_home() {
        let mut w = World::new();
        w.files
            .0
            .insert(PathBuf::from("/tasks").join(NAME), b"<Task/>".to_vec());
        w.files.0.insert(
            PathBuf::from("/startup").join(format!("{NAME}.cmd")),
            b"x".to_vec(),
        );
        w.files.0.insert(
            PathBuf::from("/startup").join(format!("{NAME}.vbs")),
            b"x".to_vec(),
        );
        w.run_key
            .set(RUN_KEY, NAME, r#""C:\old\heraldw.exe" run"#)
            .unwrap();
        let plan = w.install(&request(B)).unwrap();
        let text = plan.describe();
        assert!(
            text.contains(&format!(r"delete the Run value HKCU\{RUN_KEY}\{NAME}")),
            "{text}"
        );
        assert!(
            text.contains(&format!("run schtasks /Delete /TN {NAME} /F")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{NAME}.cmd")) && text.contains(&format!("{NAME}.vbs")),
            "{text}"
        );
        w.execute(&plan);
        w.files.0.remove(&PathBuf::from("/tasks").join(NAME));
        assert!(w.files.0.is_empty());
        assert!(w.run_key.0.is_empty());

        // And back: the Startup fallback replaces the service (drained first), then starts detached.
        w.gateway_running = true;
        let plan = w.install(&request(Backend::Startup)).unwrap();
        assert_eq!(
            scm_ops(&plan),
            [
                format!(
                    "scm: send Stop to service {NAME} (planned stop with drain; wait up to 60s until stopped)"
                ),
                format!("scm: delete service {NAME}"),
            ]
        );
        assert_eq!(w.execute(&plan), ["start_detached"]);
        assert!(w.scm.services.is_empty());
        let command = w.run_key.read(RUN_KEY, NAME).unwrap().expect("the Run value");
        assert!(
            command.starts_with(r#""C:\Program Files\Herald\heraldw.exe" --home "#),
            "{command}"
        );
        assert!(w.files.0.is_empty(), "no launcher file is written");
    }

    #[test]
    fn the_startup_fallback_is_a_run_value_and_a_cmd_launcher_is_drift() {
        let mut w = World::new();
        let cmd = PathBuf::from("/startup").join(format!("{NAME}.cmd"));
        w.files.0.insert(cmd.clone(), b"@echo off\r\n".to_vec());
        let mut req = request(Backend::Startup);
        req.start_now = false;
        let plan = w.install(&req).unwrap();
        let text = plan.describe();
        assert!(text.contains(&format!("remove {}", cmd.display())), "{text}");
        assert!(
            text.contains(&format!("set the Run value HKCU\\{RUN_KEY}\\{NAME} = ")),
            "{text}"
        );
        w.execute(&plan);
        assert!(w.files.0.is_empty(), "the .cmd launcher is migrated");
        let command = w.run_key.read(RUN_KEY, NAME).unwrap().unwrap();
        let invocation = crate::startup::parse_run_command(&command).unwrap();
        assert_eq!(invocation, spec().invocation(Backend::Startup).unwrap());
        assert!(
            w.install(&req).unwrap().is_empty(),
            "a second install changes nothing"
        );

        // A value that starts something else is repaired; --force rewrites a correct one.
        w.run_key
            .set(RUN_KEY, NAME, r#""C:\old\heraldw.exe" run"#)
            .unwrap();
        let plan = w.install(&req).unwrap();
        assert!(
            plan.notes.iter().any(|n| n.contains("differs: repairing it")),
            "{:?}",
            plan.notes
        );
        w.execute(&plan);
        assert_eq!(
            w.run_key.read(RUN_KEY, NAME).unwrap().as_deref(),
            Some(command.as_str())
        );
        req.force = true;
        assert_eq!(w.install(&req).unwrap().steps.len(), 1);

        // Uninstall removes both forms.
        w.files.0.insert(cmd.clone(), b"@echo off\r\n".to_vec());
        let plan = w
            .plan(|p| manage::plan_uninstall(&spec(), Scope::User, p))
            .unwrap();
        assert_eq!(plan.backend, Some(Backend::Startup));
        let text = plan.describe();
        assert!(
            text.contains("delete the Run value") && text.contains(&format!("remove {}", cmd.display())),
            "{text}"
        );
        w.execute(&plan);
        assert!(w.files.0.is_empty() && w.run_key.0.is_empty());
    }

    #[test]
    fn uninstall_removes_the_service_the_task_and_the_launcher() {
        let mut w = World::new();
        let plan = w.install(&request(B)).unwrap();
        w.execute(&plan);
        w.files
            .0
            .insert(PathBuf::from("/tasks").join(NAME), b"<Task/>".to_vec());
        w.files.0.insert(
            PathBuf::from("/startup").join(format!("{NAME}.cmd")),
            b"x".to_vec(),
        );
        w.run_key.set(RUN_KEY, NAME, "x").unwrap();
        let plan = w
            .plan(|p| manage::plan_uninstall(&spec(), Scope::User, p))
            .unwrap();
        assert_eq!(plan.backend, Some(B));
        assert!(
            plan.describe().contains("delete the Run value"),
            "{}",
            plan.describe()
        );
        assert_eq!(scm_ops(&plan).len(), 2, "{}", plan.describe());
        let text = plan.describe();
        assert!(
            text.contains("schtasks /Delete") && text.contains(".cmd"),
            "{text}"
        );
        w.execute(&plan);
        assert!(w.scm.services.is_empty());
    }

    #[test]
    fn start_stop_restart_route_through_the_scm() {
        let mut w = World::new();
        let plan = w.install(&request(B)).unwrap();
        w.execute(&plan);
        let registered = w
            .plan(|p| {
                let r = manage::detect(&spec(), p).unwrap().unwrap();
                assert_eq!(r.manager(), "the Windows Service Control Manager");
                assert!(matches!(r, Registered::WindowsService(_)));
                manage::plan_action(&spec(), &r, Action::Stop, p)
            })
            .unwrap();
        assert_eq!(
            scm_ops(&registered),
            [format!(
                "scm: send Stop to service {NAME} (planned stop with drain; wait up to 60s until stopped)"
            )]
        );
        w.execute(&registered);
        // Stopped service, but a gateway started by hand holds the lock: start stops it first.
        w.gateway_running = true;
        let plan = w
            .plan(|p| {
                let r = manage::detect(&spec(), p).unwrap().unwrap();
                manage::plan_action(&spec(), &r, Action::Start, p)
            })
            .unwrap();
        assert_eq!(plan.steps[0], Step::StopUnmanaged);
        assert_eq!(w.execute(&plan), ["stop_unmanaged"]);
        let plan = w
            .plan(|p| {
                let r = manage::detect(&spec(), p).unwrap().unwrap();
                manage::plan_action(&spec(), &r, Action::Restart, p)
            })
            .unwrap();
        assert_eq!(scm_ops(&plan).len(), 2);
        assert!(!plan.steps.contains(&Step::StopUnmanaged));
    }

    #[test]
    fn no_start_on_login_is_a_manual_start_and_run_as_is_refused() {
        let mut w = World::new();
        let mut req = request(B);
        req.start_on_login = false;
        req.start_now = false;
        let plan = w.install(&req).unwrap();
        assert!(plan.describe().contains("start: manual"));
        assert_eq!(scm_ops(&plan).len(), 1);
        req.run_as = Some("bob".into());
        assert!(matches!(
            w.install(&req).unwrap_err(),
            ManageError::ServiceAccountUnsupported
        ));
    }

    #[test]
    fn autostart_entries_come_from_the_task_store_and_the_startup_folder() {
        let mut w = World::new();
        let mut spec = spec();
        let entries = w.plan(|p| {
            assert!(logon::autostart_entries(&spec, p).unwrap().is_empty());
            Ok(Plan::default())
        });
        assert!(entries.unwrap().is_empty());
        assert!(
            w.runner.0.is_empty(),
            "a readable task store is final: no schtasks"
        );
        let task = crate::task::render_task(&{
            let mut s = spec.clone();
            s.run_as = Some(r"PC\a".into());
            s
        })
        .unwrap();
        w.files.0.insert(PathBuf::from("/tasks").join(NAME), task);
        w.run_key
            .set(RUN_KEY, NAME, &crate::startup::render_run_command(&spec).unwrap())
            .unwrap();
        w.files.0.insert(
            PathBuf::from("/startup").join(format!("{NAME}.cmd")),
            b"@echo off\r\n".to_vec(),
        );
        spec.home_root = r"C:\elsewhere".into();
        let mut found = Vec::new();
        w.plan(|p| {
            found = logon::autostart_entries(&spec, p).unwrap();
            Ok(Plan::default())
        })
        .unwrap();
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0].backend, Backend::Task);
        assert_eq!(found[0].this_home, Some(false), "another home's root");
        assert_eq!((found[1].backend, found[1].what), (Backend::Startup, "Run value"));
        assert_eq!(found[1].this_home, Some(false), "another home's root");
        assert_eq!(found[2].what, "legacy Startup launcher");
        assert!(w.runner.0.is_empty());
    }
}
