//! The Windows Service backend, for real under Wine (see ci/wine/README.md): `herald install --backend
//! windows-service` registers the gateway with Wine's Service Control Manager (services.exe) through the
//! SCM API, `herald start` starts it through the SCM (the service's process is Herald's monitor, which
//! runs the gateway as its worker), `status` and `status --deep` probe 9 read the SCM's state and pid and
//! check them against the lock holder, `herald stop` sends the SCM's Stop control, which the monitor
//! forwards as the worker's planned stop with drain (observed in the lifecycle log), a worker killed
//! outright is restarted inside the running service without the SCM noticing, a drifted
//! registration is repaired, a second install changes nothing, and uninstall deletes the service. Also:
//! the service entry point run from a console is refused clearly, and probe 9 for a Startup-folder
//! launcher (an autostart entry, not a supervisor), which installing the service then replaces.
//!
//! What Wine's SCM does not implement (so it is not asserted here): acting on failure actions (the net
//! for a monitor that dies), reading them back
//! (`QueryServiceConfig2(SERVICE_CONFIG_FAILURE_ACTIONS)` → `ERROR_INVALID_LEVEL`), the non-crash failure
//! flag and delayed auto-start (`ChangeServiceConfig2` levels 3 and 4 → `ERROR_INVALID_LEVEL`); install
//! reports the flag as not supported and drift detection names what it could not compare.
#![cfg(windows)]

mod support;
#[path = "support/wine_case.rs"]
mod wine_case;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use herald_home::ProfileName;
use herald_home::atomic::read_record;
use herald_home::records::{MonitorRecord, PidRecord, StateRecord};
use herald_install::ServiceSpec;
use herald_install::scm::{Scm, ScmConfig, ScmExit, ScmOp, ScmService, ScmState, SystemScm};
use support::{ok, retry_wine_spawn};
use wine_case::WineCase;

/// A case that starts and ends with no service of its name in Wine's SCM, and no gateway.
fn case(profile: &str) -> WineCase {
    let case = WineCase::new(
        "herald-svc",
        profile,
        "Her ald 50% & ^ (svc)",
        "[http]\nlisten = \"127.0.0.1:0\"\n[gateway]\ndrain_timeout_secs = 5\n",
        |case| {
            remove_service(case);
            if case.home().lock_file().exists() {
                let _ = case.herald(&["stop", "--timeout", "20"]);
            }
        },
    );
    // The first Wine process of a run boots the prefix's services.exe; until it listens, SCM calls fail
    // with RPC_S_SERVER_UNAVAILABLE (1722).
    support::wait_for("Wine's Service Control Manager", || {
        SystemScm.query(&case.name()).is_ok()
    });
    remove_service(&case);
    case
}

fn registered(case: &WineCase) -> Option<ScmService> {
    SystemScm.query(&case.name()).unwrap()
}

/// Probe 9 of `status --deep --json`: (ok, detail), and the exit code.
fn probe9(case: &WineCase) -> (bool, String, Option<i32>) {
    let out = case.herald(&["status", "--deep", "--json"]);
    let value: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", support::text(&out)));
    let probe = value["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == 9)
        .unwrap()
        .clone();
    (
        probe["ok"].as_bool().unwrap(),
        probe["detail"].as_str().unwrap().to_owned(),
        out.status.code(),
    )
}

/// Plain `herald status` (no --deep), as text and as JSON.
fn status(case: &WineCase) -> (String, serde_json::Value) {
    let text = support::text(&case.herald(&["status"]));
    let out = case.herald(&["status", "--json"]);
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", support::text(&out)));
    (text, json)
}

fn remove_service(case: &WineCase) {
    let mut scm = SystemScm;
    if scm.query(&case.name()).ok().flatten().is_some() {
        let _ = scm.apply(&ScmOp::Stop {
            name: case.name(),
            timeout: std::time::Duration::from_secs(30),
        });
        let _ = scm.apply(&ScmOp::Delete { name: case.name() });
    }
}

#[test]
fn the_service_is_installed_started_stopped_with_a_drain_repaired_and_deleted() {
    let case = case("svc");

    // --dry-run prints every SCM operation with its parameters, and changes nothing.
    let out = ok(&case.herald(&["install", "--backend", "windows-service", "--dry-run"]));
    assert!(
        out.contains(&format!("scm: create service {}", case.name())),
        "{out}"
    );
    assert!(out.contains(" run --windows-service"), "{out}");
    assert!(
        !out.contains("--no-supervise"),
        "the service hosts the monitor: {out}"
    );
    assert!(
        out.contains("restart after 1s, 5s, 30s (reset after 86400s)"),
        "{out}"
    );
    assert!(
        out.contains("account: LocalSystem") && out.contains("start: automatic"),
        "{out}"
    );
    assert!(out.contains("dry run: nothing was changed"), "{out}");
    assert!(registered(&case).is_none(), "a dry run registers nothing");

    // Install without starting: registered, automatic, stopped; the command line names this home.
    let out = ok(&case.herald(&["install", "--backend", "windows-service", "--no-start-now"]));
    assert!(out.contains("herald installed with windows-service"), "{out}");
    let service = registered(&case).expect("the SCM knows the service");
    assert_eq!(service.status.state, ScmState::Stopped);
    assert_eq!(service.start, herald_install::scm::ScmStart::Auto);
    let invocation = service.invocation();
    assert!(
        invocation.program.to_lowercase().ends_with("herald.exe"),
        "{invocation:?}"
    );
    assert_eq!(
        invocation.args[invocation.args.len() - 2..],
        ["run", "--windows-service"]
    );
    assert_eq!(service.home().as_deref(), case.root.to_str());
    assert!(!case.running());
    // Probe 9: registered and stopped, nothing running: they agree.
    let (probe_ok, detail, code) = probe9(&case);
    assert!(probe_ok, "{detail}");
    assert!(
        detail.contains(&format!("windows service {}: stopped", case.name())),
        "{detail}"
    );
    assert_eq!(code, Some(3), "not running");
    // Plain `status` reads the SCM too (no --deep): registered, stopped, automatic.
    let (text, json) = status(&case);
    assert!(
        text.contains(&format!(
            "service: windows service {}: stopped (win32 error",
            case.name()
        )) && text.contains("automatic start"),
        "{text}"
    );
    assert_eq!(json["service"]["state"], "stopped", "{json}");
    assert_eq!(json["service"]["start"], "automatic", "{json}");

    // `herald start` goes through the SCM; the service's process is Herald's monitor (it holds the lock
    // and the PID record), which runs the gateway as its worker.
    let out = ok(&case.herald(&["start"]));
    assert!(out.contains("via the Windows Service Control Manager"), "{out}");
    support::wait_for("the service's gateway to run", || case.running());
    let service = registered(&case).unwrap();
    assert_eq!(service.status.state, ScmState::Running);
    let pid = read_record::<PidRecord>(&case.home().pid_record())
        .present()
        .unwrap();
    assert_eq!(
        service.status.pid,
        Some(pid.pid),
        "the SCM's process is the monitor"
    );
    assert!(
        pid.argv.iter().any(|a| a == "--windows-service"),
        "{:?}",
        pid.argv
    );
    let state = read_record::<StateRecord>(&case.home().state_record())
        .present()
        .unwrap();
    let worker = state.worker_pid.expect("the monitor runs a worker");
    assert_ne!(worker, pid.pid);
    // A service has no stdio: the monitor took the home's stdio log, and its worker logs there too.
    support::wait_for("the gateway's output in the home's stdio log", || {
        support::text(&case.herald(&["logs", "-n", "50"])).contains("herald gateway running")
    });
    let (probe_ok, detail, code) = probe9(&case);
    assert!(probe_ok, "{detail}");
    assert!(
        detail.contains("running") && detail.contains(&format!("main pid {}", pid.pid)),
        "{detail}"
    );
    assert_eq!(code, Some(0), "healthy");
    let (text, json) = status(&case);
    assert!(
        text.contains(&format!(
            "service: windows service {}: running (pid {})",
            case.name(),
            pid.pid
        )),
        "{text}"
    );
    assert!(!text.contains("warning"), "the SCM and the lock agree: {text}");
    assert_eq!(json["service"]["pid"], pid.pid, "{json}");
    assert_eq!(json["service"]["name"], case.name(), "{json}");

    // A second install changes nothing.
    let out = ok(&case.herald(&["install", "--backend", "windows-service"]));
    assert!(out.contains("nothing to do"), "{out}");

    // `herald stop` sends the SCM's Stop: the gateway drains in a planned stop, and the service stops
    // cleanly (exit code 0: no failure actions).
    let out = ok(&case.herald(&["stop"]));
    assert!(
        out.contains("stopped via the Windows Service Control Manager"),
        "{out}"
    );
    assert!(!case.running());
    let service = registered(&case).unwrap();
    assert_eq!(service.status.state, ScmState::Stopped);
    assert_eq!(service.status.exit, ScmExit::Win32(0));
    let (text, json) = status(&case);
    assert!(text.contains("stopped (win32 error 0)"), "{text}");
    assert_eq!(json["service"]["exit"], "win32 error 0", "{json}");
    // The monitor took the SCM's Stop and forwarded it; the worker drained, then both exited.
    let (events, _) = herald_home::lifecycle::read_events(&case.home().lifecycle_log()).unwrap();
    let stop = support::find(&events, pid.pid, "stop_requested");
    assert_eq!(
        stop.field("source").and_then(|s| s.as_str()),
        Some("scm:stop"),
        "{:?}",
        support::names_for(&events, pid.pid)
    );
    let order = |who: u32, expected: &[&str]| {
        let names = support::names_for(&events, who);
        let at = |name: &str| {
            names
                .iter()
                .position(|n| n == name)
                .unwrap_or_else(|| panic!("{name} in {names:?}"))
        };
        assert!(
            expected.windows(2).all(|w| at(w[0]) < at(w[1])),
            "{expected:?} in {names:?}"
        );
    };
    order(
        pid.pid,
        &["worker_spawned", "stop_requested", "worker_exit", "exit"],
    );
    order(
        worker,
        &["ready", "stop_requested", "drain_begin", "drain_end", "exit"],
    );
    let worker_exit = support::find(&events, pid.pid, "worker_exit");
    assert_eq!(worker_exit.field("planned").and_then(|v| v.as_bool()), Some(true));

    // Drift: a registration that runs another program is repaired; --force rewrites a correct one.
    let mut spec = ServiceSpec::for_home(
        &case.home(),
        r"C:\old\herald.exe",
        herald_home::StopBudget::new(5),
    );
    spec.profile = Some(ProfileName::new(&case.profile).unwrap());
    let stale = ScmConfig::for_spec(&spec, true).unwrap();
    SystemScm
        .apply(&ScmOp::Reconfigure {
            name: case.name(),
            config: stale,
        })
        .unwrap();
    assert!(
        registered(&case)
            .unwrap()
            .command_line
            .contains(r"C:\old\herald.exe")
    );
    let out = ok(&case.herald(&["install", "--backend", "windows-service", "--no-start-now"]));
    assert!(out.contains("differs from what this herald registers"), "{out}");
    assert!(out.contains(r"C:\old\herald.exe"), "{out}");
    let repaired = registered(&case).unwrap().invocation();
    assert!(repaired.program.to_lowercase().ends_with("herald.exe") && !repaired.program.contains("old"));
    let out = ok(&case.herald(&["install", "--backend", "windows-service", "--no-start-now"]));
    assert!(out.contains("nothing to do"), "{out}");
    let out = ok(&case.herald(&[
        "install",
        "--backend",
        "windows-service",
        "--no-start-now",
        "--force",
    ]));
    assert!(
        out.contains("--force rewrites it") && out.contains("scm: reconfigure service"),
        "{out}"
    );

    // Uninstall deletes it: the SCM no longer knows the name.
    let out = ok(&case.herald(&["uninstall", "--dry-run"]));
    assert!(
        out.contains(&format!("scm: delete service {}", case.name())),
        "{out}"
    );
    assert!(registered(&case).is_some());
    let out = ok(&case.herald(&["uninstall"]));
    assert!(out.contains("herald uninstalled"), "{out}");
    assert!(registered(&case).is_none(), "deleted");
    let (probe_ok, detail, _) = probe9(&case);
    assert!(probe_ok && detail.contains("none installed"), "{detail}");
}

/// The `test_agent` example, built by `cargo test` next to the test binaries.
fn test_agent() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let agent = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("test_agent.exe");
    assert!(
        agent.exists(),
        "{} is missing: run the tests with `cargo test`",
        agent.display()
    );
    agent
}

#[test]
fn a_stop_drains_the_turn_in_flight_while_the_scm_sees_stop_pending_with_rising_checkpoints() {
    let case = case("drain");
    let log = case.home().root().join("agent.log");
    let quote = |p: &std::path::Path| serde_json::to_string(&p.display().to_string()).unwrap();
    std::fs::write(
        case.home().config_file(),
        format!(
            "[gateway]\ndrain_timeout_secs = 30\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n[agent]\n\
             backend = \"command\"\n\n[agent.command]\ncommand = [{}, {}]\ntimeout_secs = 60\n",
            quote(&test_agent()),
            quote(&log)
        ),
    )
    .unwrap();
    let out = ok(&case.herald(&["install", "--backend", "windows-service"]));
    assert!(out.contains("scm: start service"), "{out}");
    support::wait_for("the service's gateway to run", || case.running());
    let state = read_record::<StateRecord>(&case.home().state_record())
        .present()
        .unwrap();
    let url = state.endpoints.http_url.clone().expect("the HTTP adapter's URL");

    // A 3 s turn in flight, then the SCM's Stop (from `herald stop`, in the background).
    let accepted = support::post_message(&url, "svc", Some("m1"), "sleep:3000:slow", "?wait=false");
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    support::wait_for("the agent to start the turn", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("start ")
    });
    let stop = retry_wine_spawn(|| {
        Command::new(&case.herald)
            .arg("--home")
            .arg(&case.root)
            .arg("--profile")
            .arg(&case.profile)
            .arg("stop")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    });
    let mut checkpoints = Vec::new();
    let started = std::time::Instant::now();
    loop {
        let status = registered(&case).unwrap().status;
        match status.state {
            ScmState::StopPending => {
                assert!(status.wait_hint > std::time::Duration::ZERO, "{status:?}");
                if checkpoints.last() != Some(&status.checkpoint) {
                    checkpoints.push(status.checkpoint);
                }
            }
            ScmState::Stopped => break,
            _ => {}
        }
        assert!(started.elapsed() < support::PATIENCE, "the service never stopped");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = stop.wait_with_output().unwrap();
    ok(&out);
    // The drain waited for the turn (about 3 s), reporting STOP_PENDING with a checkpoint that rose.
    assert!(checkpoints.len() >= 2, "checkpoints seen: {checkpoints:?}");
    assert!(checkpoints.windows(2).all(|w| w[0] < w[1]), "{checkpoints:?}");
    let agent = std::fs::read_to_string(&log).unwrap();
    assert!(agent.contains("end "), "the turn finished: {agent}");
    let (events, _) = herald_home::lifecycle::read_events(&case.home().lifecycle_log()).unwrap();
    let drain_end = events.iter().rev().find(|e| e.event == "drain_end").unwrap();
    assert_eq!(
        drain_end.field("finished").and_then(|v| v.as_u64()),
        Some(1),
        "{drain_end:?}"
    );
    assert_eq!(
        drain_end.field("cut").and_then(|v| v.as_u64()),
        Some(0),
        "{drain_end:?}"
    );
    ok(&case.herald(&["uninstall"]));
    assert!(registered(&case).is_none());
}

/// The service hosts Herald's monitor: a worker killed outright (TerminateProcess, like a crash or an OOM
/// kill) is replaced by the monitor within moments, while the SCM's service process and state never
/// change. (The SCM's own failure actions, the net for the monitor itself, are not implemented by Wine.)
#[test]
fn a_killed_worker_is_restarted_inside_the_running_service() {
    let case = case("crash");
    ok(&case.herald(&["install", "--backend", "windows-service"]));
    support::wait_for("the service's gateway to run", || case.running());
    let before = registered(&case).unwrap().status;
    assert_eq!(before.state, ScmState::Running);
    let state = read_record::<StateRecord>(&case.home().state_record())
        .present()
        .unwrap();
    let first = state.worker_pid.expect("a worker");

    // TerminateProcess with exit code 1, as Task Manager's "End task" or a crash ends it (Wine's
    // `taskkill /F` exits the process with 0, which reads as a worker that chose to stop).
    let monitor = read_record::<MonitorRecord>(&case.home().monitor_record())
        .present()
        .unwrap();
    let record = monitor.worker.expect("the monitor records its worker");
    assert_eq!(record.pid, first);
    herald_process::terminate::force_kill_verified(record.key(), &record.argv, record.exe.as_deref())
        .unwrap();
    support::wait_for("the monitor's next worker to serve", || {
        read_record::<StateRecord>(&case.home().state_record())
            .present()
            .is_some_and(|s| {
                s.state == herald_home::records::GatewayState::Running
                    && s.worker_pid.is_some_and(|w| w != first)
            })
    });
    let after = registered(&case).unwrap().status;
    assert_eq!(after.state, ScmState::Running, "the SCM saw no failure");
    assert_eq!(after.pid, before.pid, "the same service process");
    let (text, json) = status(&case);
    assert_eq!(json["restarts"], 1, "{text}");
    assert!(text.contains("1 restart,"), "{text}");
    let (events, _) = herald_home::lifecycle::read_events(&case.home().lifecycle_log()).unwrap();
    let exit = events
        .iter()
        .find(|e| e.event == "worker_exit")
        .expect("the monitor saw its worker die");
    assert_eq!(exit.field("planned").and_then(|v| v.as_bool()), Some(false));

    ok(&case.herald(&["uninstall"]));
    assert!(registered(&case).is_none());
    assert!(!case.running());
}

/// A worker that cannot start (its journal cannot be opened: a directory stands where `state.db` goes —
/// a failure a restart might cure, unlike a taken port, which exits 78) is restarted by the monitor until
/// the crash-loop breaker trips; the monitor then exits 1 and the service stops with service-specific error 1 — the
/// failure the SCM's failure actions restart (with growing delays) on Windows. `herald start` reports the
/// failed start, and `status` shows why.
#[test]
fn a_crash_looping_worker_stops_the_service_with_a_failure_for_the_scm() {
    let case = case("loop");
    std::fs::write(
        case.home().config_file(),
        "[http]\nlisten = \"127.0.0.1:0\"\n[supervisor]\ncrash_loop_max_exits = 1\n\
         crash_loop_window_secs = 60\n",
    )
    .unwrap();
    let journal = case.home().root().join("state.db");
    std::fs::create_dir_all(&journal).unwrap();
    ok(&case.herald(&["install", "--backend", "windows-service", "--no-start-now"]));
    let out = case.herald(&["start"]);
    let text = support::text(&out);
    assert!(!out.status.success(), "the start failed: {text}");
    assert!(text.contains("stopped while starting (exit code 1)"), "{text}");
    let service = registered(&case).unwrap();
    assert_eq!(service.status.state, ScmState::Stopped, "{text}");
    assert_eq!(service.status.exit, ScmExit::ServiceSpecific(1), "{text}");
    assert!(!case.running());
    let (text, json) = status(&case);
    assert!(text.contains("stopped (exit code 1)"), "{text}");
    assert_eq!(json["state"], "crash_looping", "{json}");
    let (events, _) = herald_home::lifecycle::read_events(&case.home().lifecycle_log()).unwrap();
    assert!(
        events.iter().any(|e| e.event == "crash_loop"),
        "{:?}",
        events.iter().map(|e| &e.event).collect::<Vec<_>>()
    );
    assert!(
        events.iter().filter(|e| e.event == "worker_spawned").count() >= 2,
        "restarted before giving up"
    );
    std::fs::remove_dir(&journal).unwrap();
    ok(&case.herald(&["uninstall"]));
}

#[test]
fn the_service_entry_point_refuses_to_run_from_a_console() {
    let case = case("console");
    for args in [
        &["run", "--windows-service"][..],
        &["run", "--no-supervise", "--windows-service"],
    ] {
        let out = case.herald(args);
        let text = support::text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {text}");
        assert!(text.contains("cannot run from a console"), "{text}");
        assert!(text.contains("1063"), "{text}");
    }
    assert!(
        !case.home().lock_file().exists() || !case.running(),
        "no gateway ran"
    );
}

#[test]
fn probe_9_names_the_run_value_and_the_service_replaces_it() {
    let case = case("autostart");
    let out = ok(&case.herald(&["install", "--backend", "startup", "--no-start-now"]));
    assert!(out.contains("herald installed with startup"), "{out}");
    assert!(case.run_value().is_some());

    // Registered, nothing running: only autostart at logon, which is not a contradiction.
    let (probe_ok, detail, code) = probe9(&case);
    assert!(probe_ok, "{detail}");
    assert!(
        detail.contains("Run value") && detail.contains("registered for this home"),
        "{detail}"
    );
    assert!(
        detail.contains("starts the gateway at logon") && detail.contains("not running"),
        "{detail}"
    );
    assert_eq!(code, Some(3));

    // The service replaces the Run value (one autostart entry per home) ...
    let out = ok(&case.herald(&["install", "--backend", "windows-service", "--no-start-now"]));
    assert!(out.contains("one autostart entry per home"), "{out}");
    assert_eq!(case.run_value(), None);
    assert!(registered(&case).is_some());
    // ... and the Run value replaces the service.
    let out = ok(&case.herald(&["install", "--backend", "startup", "--no-start-now"]));
    assert!(
        out.contains(&format!("scm: delete service {}", case.name())),
        "{out}"
    );
    assert!(registered(&case).is_none());
    assert!(case.run_value().is_some());
    ok(&case.herald(&["uninstall"]));
    assert_eq!(case.run_value(), None);
}

/// Wine's token is elevated, so `install --backend windows-service` runs in place (every test above);
/// the hidden `HERALD_FORCE_ELEVATION=1` makes it take the hand-off a prompt that is not elevated
/// takes: `ShellExecuteExW` with `runas` starts a second herald with every choice as arguments, this one
/// waits for it and prints its report — each line on the stream the child wrote it to — and exits with
/// its exit code. (Wine shows no UAC prompt and cannot refuse one: `ERROR_CANCELLED` is not exercised
/// here; its mapping is a unit test of herald-install.)
#[test]
fn a_prompt_that_is_not_elevated_hands_the_install_to_an_elevated_herald() {
    let case = case("uac");
    let run = |args: &[&str]| {
        case.command(&case.herald, args)
            .env(herald_install::elevate::FORCE_ENV, "1")
            .output()
            .unwrap()
    };
    let reports = || -> Vec<String> {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("herald-elevated-"))
            .collect()
    };
    // Wine's token is elevated: without the switch the install and uninstall run in place.
    assert!(
        herald_install::elevate::token_elevated().unwrap(),
        "Wine gives its processes an elevated token"
    );
    let out = ok(&case.herald(&["install", "--backend", "windows-service", "--no-start-now"]));
    assert!(!out.contains("UAC") && out.contains("herald installed"), "{out}");
    let out = ok(&case.herald(&["uninstall"]));
    assert!(
        !out.contains("UAC") && out.contains("herald uninstalled"),
        "{out}"
    );
    assert!(registered(&case).is_none());

    let out = run(&[
        "install",
        "--backend",
        "windows-service",
        "--no-start-now",
        "--no-start-on-login",
    ]);
    let text = ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stderr.contains("asking Windows (UAC) to run herald elevated"),
        "{text}"
    );
    assert!(
        stdout.contains("herald installed with windows-service"),
        "the child's outcome, printed here: {text}"
    );
    assert!(
        stderr.contains("the elevated herald exited with code 0"),
        "{text}"
    );
    // Every choice survived the relaunch: this home and profile, manual start, not started.
    let service = registered(&case).expect("the elevated herald registered the service");
    assert_eq!(service.home().as_deref(), case.root.to_str());
    let invocation = service.invocation();
    let at = invocation.args.iter().position(|a| a == "--profile").unwrap();
    assert_eq!(invocation.args[at + 1], case.profile);
    assert_eq!(
        service.start,
        herald_install::scm::ScmStart::Demand,
        "--no-start-on-login"
    );
    assert_eq!(service.status.state, ScmState::Stopped, "--no-start-now");
    assert!(!case.running());
    assert!(
        reports().is_empty(),
        "the report directory is deleted: {:?}",
        reports()
    );

    // A child that fails: its error arrives on this stderr, and its exit code (2, as the same command
    // run in place exits) is this one's.
    let refused = [
        "install",
        "--backend",
        "windows-service",
        "--system",
        "--run-as-user",
        "bob",
    ];
    let in_place = case.herald(&refused);
    assert_eq!(in_place.status.code(), Some(2), "{}", support::text(&in_place));
    let out = run(&refused);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", support::text(&out));
    assert!(stderr.contains("runs as LocalSystem"), "{stderr}");
    assert!(
        stderr.contains("the elevated herald exited with code 2"),
        "{stderr}"
    );

    // A dry run is never handed off (planning only reads the SCM).
    let out = ok(&run(&["uninstall", "--dry-run"]));
    assert!(
        !out.contains("UAC") && out.contains("scm: delete service"),
        "{out}"
    );
    // The uninstall of the service is.
    let out = ok(&run(&["uninstall"]));
    assert!(out.contains("UAC") && out.contains("herald uninstalled"), "{out}");
    assert!(registered(&case).is_none());
    assert!(reports().is_empty(), "{:?}", reports());
}

/// `herald upgrade` of a home the Windows Service runs: the running `herald.exe` (the service's process)
/// and `heraldw.exe` are renamed aside and the candidate's moved in, the restart goes through the SCM's
/// Stop and Start, and the service — its registration untouched, naming the same path — runs the new
/// build.
#[test]
fn an_upgrade_swaps_the_running_exe_and_restarts_the_service_through_the_scm() {
    let case = case("upgrade");
    let installed_dir = case.dir.path().join("installed");
    std::fs::create_dir_all(&installed_dir).unwrap();
    for program in ["herald.exe", "heraldw.exe"] {
        std::fs::copy(case.herald.with_file_name(program), installed_dir.join(program)).unwrap();
    }
    let herald = installed_dir.join("herald.exe");
    let run = |args: &[&str]| case.command(&herald, args).output().unwrap();
    ok(&run(&["install", "--backend", "windows-service"]));
    support::wait_for("the service's gateway to run", || case.running());
    let before = registered(&case).unwrap();
    let old_version = read_record::<PidRecord>(&case.home().pid_record())
        .present()
        .unwrap()
        .herald_version;

    let candidate = support::upgrade_candidate();
    let out = run(&["upgrade", "--from", candidate.to_str().unwrap()]);
    let said = support::text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("herald upgraded"), "{said}");
    let pid = read_record::<PidRecord>(&case.home().pid_record())
        .present()
        .unwrap();
    assert_ne!(pid.herald_version, old_version);
    let after = registered(&case).unwrap();
    assert_eq!(after.status.state, ScmState::Running);
    assert_ne!(after.status.pid, before.status.pid, "a new service process");
    assert_eq!(
        after.command_line, before.command_line,
        "the registration is untouched"
    );
    assert!(after.command_line.contains("installed"), "{}", after.command_line);
    assert!(installed_dir.join("herald.prev.exe").is_file());
    assert!(installed_dir.join("heraldw.prev.exe").is_file());
    let events = support::text(&run(&["logs", "--lifecycle", "-n", "200"]));
    assert!(events.contains("upgrade_healthy"), "{events}");

    ok(&run(&["uninstall"]));
    assert!(registered(&case).is_none());
}
