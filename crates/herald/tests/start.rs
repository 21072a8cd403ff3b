//! `herald start`: a detached gateway that survives its parent, reported only once ready.

mod support;

use herald_home::records::GatewayState;
use support::*;

fn started_pid(output: &str) -> u32 {
    let rest = output
        .split("herald started (pid ")
        .nth(1)
        .unwrap_or_else(|| panic!("{output}"));
    rest.split(')').next().unwrap().parse().unwrap()
}

#[test]
fn start_returns_once_ready_and_the_gateway_outlives_it() {
    let home = TestHome::new();
    let out = home.output(&["start"]);
    assert!(out.status.success(), "{}", text(&out));
    let pid = started_pid(&text(&out));
    // `herald start` has exited; the gateway it started serves on.
    let (code, status) = home.status_json();
    assert_eq!(code, 0, "{status}");
    assert_eq!(status["pid"], pid);
    assert_eq!(home.state().unwrap().state, GatewayState::Running);
    let spawn = home
        .events()
        .into_iter()
        .find(|e| e.event == "detached_spawn")
        .expect("detached_spawn event");
    assert_eq!(
        spawn.field("gateway_pid").and_then(|v| v.as_u64()),
        Some(u64::from(pid))
    );
    // Job objects are a Windows matter: elsewhere the event says nothing about one.
    assert_eq!(
        spawn.field("broke_away_from_job").is_some(),
        cfg!(windows),
        "{spawn:?}"
    );
    #[cfg(unix)]
    {
        // SAFETY: getsid(2) has no memory-safety preconditions.
        let session = unsafe { libc::getsid(pid as i32) };
        assert_eq!(
            session, pid as i32,
            "the gateway leads its own session (no controlling terminal)"
        );
    }

    let again = home.output(&["start"]);
    assert!(again.status.success());
    assert!(
        text(&again).contains(&format!("already running (pid {pid})")),
        "{}",
        text(&again)
    );

    let stop = home.output(&["stop"]);
    assert!(stop.status.success(), "{}", text(&stop));
    let (code, _) = home.status_json();
    assert_eq!(code, 3);
}

/// A gateway whose state record cannot be written (a full disk; here a directory where the record goes,
/// which fails the same write on every OS and needs no root) serves all the same, and `start` says so
/// and exits 0 instead of waiting out its timeout for a record that never comes.
#[test]
fn start_succeeds_when_the_gateway_serves_but_cannot_write_its_state_record() {
    let home = TestHome::new();
    let out = home.output(&["start"]);
    assert!(out.status.success(), "{}", text(&out));
    let stop = home.output(&["stop"]);
    assert!(stop.status.success(), "{}", text(&stop));
    let record = home.run_dir().join("state.json");
    std::fs::remove_file(&record).unwrap();
    std::fs::create_dir(&record).unwrap();

    let began = std::time::Instant::now();
    let out = home.output(&["start", "--timeout", "20"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        began.elapsed() < std::time::Duration::from_secs(15),
        "{:?}",
        began.elapsed()
    );
    let pid = started_pid(&text(&out));
    let ping = herald_process::control::call(
        &home.home(),
        herald_process::control::Request::Status,
        std::time::Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(ping.gateway_pid, Some(pid));
    assert_eq!(ping.state, Some(GatewayState::Running));
    let stop = home.output(&["stop"]);
    assert!(stop.status.success(), "{}", text(&stop));
}

/// Two homes set to one port: the second `start` fails at once, naming the address (and, on Linux, the
/// first gateway's worker holding it) — not a crash loop after 15 s of silence.
#[test]
fn a_port_held_by_another_gateway_fails_the_start_at_once_without_a_crash_loop() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!("[http]\nlisten = \"127.0.0.1:{port}\"\n");
    let first = TestHome::new();
    first.write("herald.toml", config.as_bytes());
    let out = first.output(&["start"]);
    assert!(out.status.success(), "{}", text(&out));

    let second = TestHome::new();
    second.write("herald.toml", config.as_bytes());
    let began = std::time::Instant::now();
    let out = second.output(&["start"]);
    let took = began.elapsed();
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    let message = text(&out);
    assert!(
        message.contains(&format!("127.0.0.1:{port} is already in use")),
        "{message}"
    );
    if cfg!(target_os = "linux") {
        let holder = first.worker_pid();
        assert!(message.contains(&format!("(pid {holder})")), "{message}");
    }
    // Not restarted: no crash loop to report.
    assert!(
        !second.event_names().iter().any(|e| e == "restart_scheduled"),
        "{:?}",
        second.event_names()
    );
    let (code, status) = second.status_json();
    assert_eq!(code, 3, "{status}");
    assert!(!status.to_string().contains("crash"), "{status}");

    assert!(first.output(&["stop"]).status.success());
}

#[test]
fn a_gateway_that_dies_during_start_up_is_reported_with_its_log() {
    let home = TestHome::new();
    home.write("herald.toml", b"[gateway]\nwhoops = 1\n");
    let out = home.output(&["start"]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let message = text(&out);
    assert!(message.contains("exited during start-up"), "{message}");
    assert!(
        message.contains("whoops"),
        "the log tail names the problem: {message}"
    );
    assert!(!message.contains("herald started"), "{message}");
}

/// Ten `start`s at once leave one gateway, and every caller — whose wish, a running gateway, is met —
/// exits 0 and names it.
#[test]
fn parallel_starts_all_succeed_with_one_gateway() {
    let home = TestHome::new();
    let starts: Vec<_> = (0..10)
        .map(|_| {
            home.cmd(&["start", "--timeout", "30"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut pids = std::collections::BTreeSet::new();
    for start in starts {
        let out = start.wait_with_output().unwrap();
        assert!(out.status.success(), "a parallel start failed: {}", text(&out));
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        let pid = said
            .split("pid ")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or_else(|| panic!("no pid in {said:?}"));
        pids.insert(pid);
    }
    assert_eq!(pids.len(), 1, "the callers name different gateways: {pids:?}");
    let (code, status) = home.status_json();
    assert_eq!(code, 0);
    assert_eq!(status["pid"].as_u64().map(|p| p as u32), pids.first().copied());
    assert!(home.output(&["stop"]).status.success());
}

/// `stop` racing `start`: whichever wins, `stop` exits 0 and never leaves a gateway it saw running.
#[test]
fn a_stop_racing_a_start_never_fails() {
    for round in 0..10 {
        let home = TestHome::new();
        let start = home
            .cmd(&["start", "--timeout", "30"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(round * 3));
        let stop = home.output(&["stop"]);
        assert!(stop.status.success(), "round {round}: {}", text(&stop));
        let _ = start.wait_with_output().unwrap();
        // A gateway that was running when `stop` looked is gone; one that started after it may run.
        if String::from_utf8_lossy(&stop.stdout).starts_with("stopped") {
            let (code, _) = home.status_json();
            assert_eq!(code, 3, "round {round}: the stopped gateway is running");
        }
        let _ = home.output(&["stop"]);
    }
}
