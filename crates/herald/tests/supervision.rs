//! Supervision: the monitor restarts a worker that dies, immediately and then with backoff, gives up on
//! a crash loop, honours exit codes 75 and 78, and a worker whose monitor dies stops by itself.

mod support;

use std::time::{Duration, Instant};

use herald_home::atomic::read_record;
use herald_home::records::{MonitorRecord, ProcessKey};
use herald_process::control::{self, Request};
use support::*;

fn kill_worker(home: &TestHome) -> u32 {
    let monitor = read_record::<MonitorRecord>(&home.home().monitor_record())
        .present()
        .unwrap();
    let worker = monitor.worker.unwrap();
    let key = ProcessKey {
        pid: worker.pid,
        start_time: worker.start_time,
    };
    herald_process::force_kill_verified(key, &worker.argv, worker.exe.as_deref()).unwrap();
    worker.pid
}

#[test]
fn a_killed_worker_is_serving_again_at_once() {
    let home = TestHome::new();
    let gateway = home.start(&[]);
    let old = home.worker_pid();
    let killed_at = Instant::now();
    assert_eq!(kill_worker(&home), old);
    let new = home.wait_new_worker(old);
    let recovered = killed_at.elapsed();
    if cfg!(target_os = "linux") {
        assert!(
            recovered < Duration::from_secs(1),
            "serving again after {recovered:?}"
        );
    }
    assert!(
        control::call(&home.home(), Request::Ping, Duration::from_secs(10))
            .unwrap()
            .ok
    );
    let (code, status) = home.status_json();
    assert_eq!(code, 0);
    assert_eq!(status["pid"], gateway.pid(), "pid is the monitor");
    assert_eq!(status["worker_pid"], new);
    assert_eq!(status["restarts"], 1);
    let reason = status["last_restart_reason"].as_str().unwrap();
    assert!(
        reason.contains("SIGKILL") || reason.contains("exit code 1"),
        "{reason}"
    );
    let events = home.events();
    let exit = events.iter().find(|e| e.event == "worker_exit").unwrap();
    assert_eq!(exit.field("planned").and_then(|v| v.as_bool()), Some(false));
    assert!(home.output(&["stop"]).status.success());
    assert_eq!(gateway.wait().0, Some(0));
}

#[test]
fn restart_request_starts_a_new_worker_immediately() {
    let home = TestHome::new();
    let gateway = home.start(&[]);
    let old = home.worker_pid();
    let reply = control::call(
        &home.home(),
        Request::Stop { restart: true },
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(reply.ok);
    home.wait_new_worker(old);
    let (_, status) = home.status_json();
    assert_eq!(status["restarts"], 1);
    // A restart asked over the control channel is a planned one, and one restart is said in the singular.
    let exit = home
        .events()
        .into_iter()
        .find(|e| e.event == "worker_exit")
        .expect("worker_exit");
    assert_eq!(
        exit.field("planned").and_then(|v| v.as_bool()),
        Some(true),
        "{exit:?}"
    );
    let status_text = ok(&home.output(&["status"]));
    assert!(status_text.contains("(supervised, 1 restart,"), "{status_text}");
    assert!(
        status["last_restart_reason"]
            .as_str()
            .unwrap()
            .contains("restart requested")
    );
    assert!(home.output(&["stop"]).status.success());
    assert_eq!(gateway.wait().0, Some(0));
}

#[test]
fn a_worker_exiting_78_is_not_restarted() {
    let home = TestHome::new();
    let gateway = home.start(&[]);
    // The config breaks while running; the next worker cannot start and must not be retried.
    home.write("herald.toml", b"[gateway]\ndrain_timeout_secs = \"never\"\n");
    kill_worker(&home);
    let (code, _) = gateway.wait();
    assert_eq!(code, Some(78));
    let names = home.event_names();
    assert_eq!(
        names.iter().filter(|n| *n == "worker_spawned").count(),
        2,
        "{names:?}"
    );
}

#[test]
fn the_orphan_of_a_killed_monitor_stops_itself_and_the_home_recovers() {
    let home = TestHome::new();
    let gateway = home.start(&[]);
    let worker = home.worker_pid();
    gateway.kill();
    wait_for("the orphaned worker to stop", || {
        home.events().iter().any(|e| {
            e.pid == worker && e.event == "exit" && e.field("code").and_then(|v| v.as_u64()) == Some(0)
        })
    });
    let events = home.events();
    let requested = find(&events, worker, "stop_requested");
    assert_eq!(
        requested.field("source").and_then(|v| v.as_str()),
        Some("monitor_gone")
    );

    let next = home.start(&[]);
    assert!(home.output(&["stop"]).status.success());
    assert_eq!(next.wait().0, Some(0));
}

#[test]
fn no_supervise_runs_a_single_process() {
    let home = TestHome::new();
    let gateway = home.start(&["--no-supervise"]);
    let state = home.state().unwrap();
    assert_eq!(state.worker_pid, None);
    assert_eq!(state.pid, gateway.pid());
    let (_, status) = home.status_json();
    assert_eq!(status["worker_pid"], serde_json::Value::Null);
    assert!(home.output(&["stop"]).status.success());
    assert_eq!(gateway.wait().0, Some(0));
    let names = names_for(&home.events(), state.pid);
    assert_eq!(
        names,
        [
            "start",
            "ready",
            "stop_requested",
            "drain_begin",
            "drain_end",
            "exit"
        ]
    );
}

/// A worker that fails at once (its control socket path is blocked by a directory) is restarted with
/// backoff, then the breaker trips: `crash_looping`, the worker's last stderr lines in the event, exit 1.
#[cfg(unix)]
#[test]
fn a_crash_loop_trips_the_breaker_with_backoff_and_no_spin() {
    let home = TestHome::new();
    home.write(
        "herald.toml",
        b"[supervisor]\ncrash_loop_max_exits = 2\ncrash_loop_window_secs = 60\n",
    );
    std::fs::create_dir_all(home.home().control_socket().join("blocker")).unwrap();
    let started = Instant::now();
    let gateway = home.spawn(&[]);
    let (code, output) = gateway.wait();
    let elapsed = started.elapsed();
    assert_eq!(code, Some(1), "{output}");
    // Delays 0 s then 1 s before the third (tripping) exit: backoff happened, nothing spun.
    assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    let state = home.state().unwrap();
    assert_eq!(state.state, herald_home::records::GatewayState::CrashLooping);
    let events = home.events();
    let names: Vec<_> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        names.iter().filter(|n| **n == "worker_spawned").count(),
        3,
        "{names:?}"
    );
    let crash = events
        .iter()
        .find(|e| e.event == "crash_loop")
        .expect("crash_loop event");
    assert_eq!(crash.field("exits").and_then(|v| v.as_u64()), Some(3));
    assert!(
        crash
            .field("last_exit")
            .unwrap()
            .as_str()
            .unwrap()
            .contains("exit code 1")
    );
    let tail = crash.field("stderr_tail").unwrap().to_string();
    assert!(tail.contains("control channel"), "{tail}");
    let (status_code, status) = home.status_json();
    assert_eq!(status_code, 3);
    assert_eq!(status["state"], "crash_looping");
}

/// A FIFO planted at the stop marker's path used to block the monitor in `open()`: a worker killed then
/// was not restarted for 15 s and more while `status` said running. The monitor now reads markers without
/// blocking, ignores (and removes) anything that is not a regular file, and restarts at once.
/// The worker's executable loses its execute permission for a moment (as a replaced or scanned file can
/// be unusable for a moment): the monitor tries the spawn again and serves once it works; when it never
/// does, the monitor gives up after five attempts, exit 1, saying why.
#[cfg(unix)]
#[test]
fn a_worker_that_cannot_be_started_is_tried_again_then_given_up() {
    use std::os::unix::fs::PermissionsExt;

    let home = TestHome::new();
    // A copy: its mode is the test's to change (the cargo-built one is shared with every other test).
    let dir = tempfile::Builder::new().prefix("herald-spawn").tempdir().unwrap();
    let herald = dir.path().join("herald");
    std::fs::copy(env!("CARGO_BIN_EXE_herald"), &herald).unwrap();
    let set_mode = |mode: u32| {
        std::fs::set_permissions(&herald, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let mut cmd = home.cmd_of(&herald, &["run"]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // A copy just written may be "text file busy" while another test's fork still holds its descriptor.
    let mut attempts = 0;
    let child = loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempts < 100 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            other => break other.unwrap(),
        }
    };
    let gateway = Gateway::from_child(child);
    home.wait_running(&gateway);
    let first = home.worker_pid();

    // No execute bit: exec fails (for root too) until it is back.
    set_mode(0o644);
    kill_worker(&home);
    wait_for("a failed spawn", || {
        home.event_names().iter().any(|e| e == "worker_spawn_failed")
    });
    set_mode(0o755);
    let second = home.wait_new_worker(first);
    let failed = home
        .events()
        .into_iter()
        .find(|e| e.event == "worker_spawn_failed")
        .unwrap();
    assert_eq!(failed.field("attempt").and_then(|v| v.as_u64()), Some(1));
    assert_eq!(failed.field("retry_in_ms").and_then(|v| v.as_u64()), Some(100));
    let error = failed.field("error").and_then(|v| v.as_str()).unwrap();
    assert!(error.contains("ermission denied"), "{error}");
    let (code, status) = home.status_json();
    assert_eq!(code, 0, "{status}");
    assert_eq!(status["worker_pid"], second);

    // Never again: five attempts over about 7.6 s, then exit 1 with the reason in the state record.
    set_mode(0o644);
    kill_worker(&home);
    let (code, output) = gateway.wait();
    assert_eq!(code, Some(1), "{output}");
    let attempts: Vec<u64> = home
        .events()
        .iter()
        .filter(|e| e.event == "worker_spawn_failed")
        .filter_map(|e| e.field("attempt").and_then(|v| v.as_u64()))
        .collect();
    assert_eq!(attempts, [1, 1, 2, 3, 4], "{output}");
    let last_exit = home.state().unwrap().last_exit.unwrap();
    assert_eq!(last_exit.code, 1);
    let reason = last_exit.reason;
    assert!(
        reason.contains("cannot start the worker") && reason.contains("5 attempts"),
        "{reason}"
    );
    let (code, status) = home.status_json();
    assert_eq!(code, 3, "{status}");
}

#[cfg(unix)]
#[test]
fn a_fifo_at_the_stop_marker_does_not_stall_the_monitor() {
    let home = TestHome::new();
    let gateway = home.start(&[]);
    let marker = home.home().stop_marker();
    let c_path = std::ffi::CString::new(marker.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    wait_for("the monitor to set the planted FIFO aside", || {
        home.event_names().iter().any(|e| e == "marker_ignored")
    });
    let old = home.worker_pid();
    let killed_at = Instant::now();
    kill_worker(&home);
    home.wait_new_worker(old);
    assert!(
        killed_at.elapsed() < Duration::from_secs(5),
        "serving again only after {:?}",
        killed_at.elapsed()
    );
    assert!(!marker.exists(), "the FIFO is removed");
    assert!(home.output(&["stop"]).status.success());
    assert_eq!(gateway.wait().0, Some(0));
}

/// The pids of running processes whose command line is exactly `sleep <arg>`.
#[cfg(target_os = "linux")]
fn sleepers(arg: &str) -> Vec<u32> {
    let wanted = format!("sleep\0{arg}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            (cmdline == wanted.as_bytes() && !zombie).then_some(pid)
        })
        .collect()
}

/// A worker killed while its agent runs used to leave the agent's process tree behind, reparented to
/// init, while the resumed turn ran the agent again beside it (four agents per message under repeated
/// kills). The monitor now adopts what a dead worker leaves and ends it before the next worker resumes.
#[cfg(target_os = "linux")]
#[test]
fn a_killed_workers_agents_are_ended_before_its_turns_resume() {
    let home = TestHome::new();
    let arg = format!("{}.{}", 41, std::process::id());
    home.write(
        "herald.toml",
        format!(
            "[gateway]\ndrain_timeout_secs = 1\n[http]\nlisten = \"127.0.0.1:0\"\n[agent]\nbackend = \"command\"\n[agent.command]\n\
             command = [\"sh\", \"-c\", \"cat >/dev/null; sleep {arg}; echo done\"]\ntimeout_secs = 300\n"
        )
        .as_bytes(),
    );
    let gateway = home.start(&[]);
    let url = home.http_url();
    let posted = post_message(&url, "slow", Some("m1"), "hello", "?wait=false");
    assert_eq!(posted.status, 202, "{}", posted.body);
    let mut first = Vec::new();
    wait_for("the agent to run", || {
        first = sleepers(&arg);
        !first.is_empty()
    });
    let old = home.worker_pid();
    kill_worker(&home);
    home.wait_new_worker(old);
    wait_for("the killed worker's agent to be gone", || {
        sleepers(&arg).iter().all(|pid| !first.contains(pid))
    });
    // The turn resumes: its agent runs again — alone.
    wait_for("the resumed agent", || !sleepers(&arg).is_empty());
    assert_eq!(
        sleepers(&arg).len(),
        1,
        "agents side by side: {:?}",
        sleepers(&arg)
    );
    assert!(home.event_names().iter().any(|e| e == "orphans_ended"));
    assert!(home.output(&["stop"]).status.success());
    assert_eq!(gateway.wait().0, Some(0));
    wait_for("no agent left after the stop", || sleepers(&arg).is_empty());
}

/// The same on every OS with a real reaper of agent trees (Linux: the monitor as subreaper; Windows: the
/// agent's job object, killed when the dead worker's handle to it closes): an agent whose worker is
/// killed never runs to its end beside the resumed turn. The stand-in agent logs `start` and, after its
/// sleep, `end`: a surviving orphan would log a second `end`.
#[cfg(any(target_os = "linux", windows))]
#[test]
fn a_killed_workers_agent_never_finishes_beside_the_resumed_turn() {
    let home = TestHome::new();
    let log = home.root.join("agent.log");
    let quote = |p: &std::path::Path| serde_json::to_string(&p.display().to_string()).unwrap();
    home.write(
        "herald.toml",
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[agent]\nbackend = \"command\"\n[agent.command]\n\
             command = [{}, {}]\ntimeout_secs = 120\n",
            quote(&test_agent()),
            quote(&log)
        )
        .as_bytes(),
    );
    let lines = || -> Vec<String> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let gateway = home.start(&[]);
    let url = home.http_url();
    let posted = post_message(&url, "orphan", Some("m1"), "sleep:3000:slow", "?wait=false");
    assert_eq!(posted.status, 202, "{}", posted.body);
    wait_for("the agent to start", || !lines().is_empty());
    let old = kill_worker(&home);
    home.wait_new_worker(old);
    let url = home.http_url();
    wait_for("the resumed turn's reply", || {
        let history = http(&url, "GET", "/v1/sessions/orphan/messages", &[], b"").json();
        history["messages"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["role"] == "assistant"))
    });
    // Long enough for a surviving first agent (started 3 s before its end) to have ended too.
    std::thread::sleep(Duration::from_secs(4));
    let log = lines();
    assert_eq!(
        log.iter().filter(|l| l.starts_with("start ")).count(),
        2,
        "{log:?}"
    );
    assert_eq!(
        log.iter().filter(|l| l.starts_with("end ")).count(),
        1,
        "the killed worker's agent ran on: {log:?}"
    );
    assert!(home.output(&["stop"]).status.success());
    assert_eq!(gateway.wait().0, Some(0));
}
