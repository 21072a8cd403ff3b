//! The gateway process lifecycle, end to end against the real binary: start → ready → planned stop by
//! every path, crash recovery, single instance, `--replace`.

mod support;

use std::time::Duration;

use herald_home::atomic::RecordRead;
use herald_home::records::GatewayState;
use support::*;

const STOP_SEQUENCE: [&str; 6] = [
    "start",
    "ready",
    "stop_requested",
    "drain_begin",
    "drain_end",
    "exit",
];

/// After a planned stop of a supervised gateway (`pid` is the monitor): exit 0, `stopped` with the exit
/// recorded, no PID record; the worker went through the full sequence and drained exactly once; some
/// process recorded the stop with the expected source; the monitor exited 0 without restarting.
fn assert_clean_stop(home: &TestHome, pid: u32, code: Option<i32>, source: &str) {
    assert_eq!(code, Some(0));
    let state = home.state().expect("state record");
    assert_eq!(state.state, GatewayState::Stopped);
    assert_eq!(state.pid, pid);
    assert_eq!(state.last_exit.as_ref().map(|e| e.code), Some(0));
    assert_eq!(home.pid_record(), RecordRead::Missing);
    let events = home.events();
    let worker = state.worker_pid.expect("supervised by default");
    assert_eq!(names_for(&events, worker), STOP_SEQUENCE, "{events:#?}");
    assert!(
        events.iter().any(
            |e| e.event == "stop_requested" && e.field("source").and_then(|v| v.as_str()) == Some(source)
        ),
        "no stop_requested from {source}: {events:#?}"
    );
    let drain_end = find(&events, worker, "drain_end");
    assert_eq!(drain_end.field("cut").and_then(|v| v.as_u64()), Some(0));
    let monitor = names_for(&events, pid);
    assert_eq!(monitor.first().map(String::as_str), Some("start"));
    assert_eq!(
        monitor.iter().filter(|e| *e == "worker_spawned").count(),
        1,
        "{monitor:?}"
    );
    assert!(!monitor.contains(&"restart_scheduled".to_owned()), "{monitor:?}");
    let exit = find(&events, pid, "exit");
    assert_eq!(exit.field("code").and_then(|v| v.as_u64()), Some(0));
    let (code, status) = home.status_json();
    assert_eq!(code, 3, "{status}");
    assert_eq!(status["running"], false);
}

#[test]
fn stop_via_control_channel() {
    let home = TestHome::new();
    let gateway = home.start(&[]);
    let pid = gateway.pid();

    let (code, status) = home.status_json();
    assert_eq!(code, 0, "{status}");
    assert_eq!(status["running"], true);
    assert_eq!(status["pid"], pid);
    assert_eq!(status["state"], "running");
    assert!(status["uptime_secs"].is_u64());
    assert_eq!(status["warnings"].as_array().unwrap().len(), 0, "{status}");

    let out = home.output(&["stop", "--via", "channel"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("via control channel"), "{}", text(&out));
    let (code, _) = gateway.wait();
    assert_clean_stop(&home, pid, code, "control_channel");
}

#[test]
fn stop_via_marker() {
    let home = TestHome::new();
    let gateway = home.start(&[]);
    let pid = gateway.pid();
    let out = home.output(&["stop", "--via", "marker"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("via stop marker"), "{}", text(&out));
    let (code, _) = gateway.wait();
    assert_clean_stop(&home, pid, code, "marker");
    assert!(!home.home().stop_marker().exists(), "the marker is consumed");
}

#[test]
fn stop_when_not_running_is_a_clear_success() {
    let home = TestHome::new();
    let out = home.output(&["stop"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out).contains("not running"), "{}", text(&out));
}

#[test]
fn kill_leaves_stale_records_and_the_next_run_recovers() {
    let home = TestHome::new();
    let gateway = home.start(&[]);
    let pid = gateway.pid();
    gateway.kill();

    // The records still claim a running gateway; the lock says otherwise, and status believes the lock.
    assert!(matches!(home.pid_record(), RecordRead::Present(r) if r.pid == pid));
    let (code, status) = home.status_json();
    assert_eq!(code, 3, "{status}");
    assert_eq!(status["running"], false);
    let warnings = status["warnings"].to_string();
    assert!(warnings.contains("stale PID record"), "{status}");

    let stop = home.output(&["stop"]);
    assert_eq!(stop.status.code(), Some(0));
    assert!(text(&stop).contains("not running"), "{}", text(&stop));

    let second = home.start(&[]);
    assert_ne!(second.pid(), pid);
    let out = home.output(&["stop"]);
    assert!(out.status.success(), "{}", text(&out));
    let (code, _) = second.wait();
    assert_eq!(code, Some(0));
}

#[test]
fn ten_concurrent_runs_leave_exactly_one() {
    let home = TestHome::new();
    let gateways: Vec<Gateway> = (0..10).map(|_| home.spawn(&[])).collect();
    let mut running = Vec::new();
    let mut refused = 0;
    for mut gateway in gateways {
        // Losers exit on their own within the lock retry window; the winner keeps running.
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            if let Some(code) = gateway.try_exit_code() {
                assert_eq!(code, Some(1), "a losing instance must exit 1");
                refused += 1;
                let (_, output) = gateway.wait();
                assert!(output.contains("already running"), "{output}");
                break;
            }
            if matches!(home.state(), Some(s) if s.pid == gateway.pid() && s.state == GatewayState::Running) {
                running.push(gateway);
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "instance neither ran nor exited"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    assert_eq!(running.len(), 1, "exactly one instance must survive");
    assert_eq!(refused, 9);
    let survivor = running.pop().unwrap();
    let message_pid = survivor.pid();
    let (code, status) = home.status_json();
    assert_eq!(code, 0);
    assert_eq!(status["pid"], message_pid);
    assert!(home.output(&["stop"]).status.success());
    assert_eq!(survivor.wait().0, Some(0));
}

#[test]
fn second_run_names_the_running_pid() {
    let home = TestHome::new();
    let first = home.start(&[]);
    let out = home.output(&["run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains(&format!("already running (pid {})", first.pid())),
        "{}",
        text(&out)
    );
    assert!(home.output(&["stop"]).status.success());
    assert_eq!(first.wait().0, Some(0));
}

#[test]
fn replace_stops_the_old_instance_and_takes_over() {
    let home = TestHome::new();
    let old = home.start(&[]);
    let old_pid = old.pid();
    let new = home.spawn(&["--replace"]);
    let (old_code, _) = old.wait();
    assert_eq!(old_code, Some(0), "the old instance drains and exits 0");
    home.wait_running(&new);
    let events = home.events();
    let replaced = events
        .iter()
        .find(|e| e.event == "replaced")
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert_eq!(
        replaced.field("old_pid").and_then(|v| v.as_u64()),
        Some(u64::from(old_pid))
    );
    let start = find(&events, new.pid(), "start");
    assert_eq!(start.field("replaced").and_then(|v| v.as_bool()), Some(true));
    assert!(home.output(&["stop"]).status.success());
    assert_eq!(new.wait().0, Some(0));
}

#[test]
fn replace_on_an_idle_home_just_runs() {
    let home = TestHome::new();
    let gateway = home.start(&["--replace"]);
    assert!(home.output(&["stop"]).status.success());
    assert_eq!(gateway.wait().0, Some(0));
}

#[test]
fn foreign_and_expired_markers_are_removed_and_ignored() {
    use herald_home::atomic::write_record;
    use herald_home::records::{ProcessKey, StopMarker};

    let home = TestHome::new();
    home.home().ensure().unwrap();
    // Left over from a previous gateway: must not stop the next one.
    let leftover = StopMarker {
        version: 1,
        target: ProcessKey {
            pid: 1,
            start_time: 1,
        },
        expires_at_ms: u64::MAX,
        requested_by: "a previous stop".into(),
        restart: false,
    };
    write_record(&home.home().stop_marker(), &leftover).unwrap();
    let gateway = home.start(&[]);
    assert!(!home.home().stop_marker().exists());

    // Addressed to this gateway but expired: ignored too.
    let record = home.pid_record().present().unwrap();
    let expired = StopMarker {
        target: record.key(),
        expires_at_ms: 1,
        ..leftover
    };
    write_record(&home.home().stop_marker(), &expired).unwrap();
    wait_for("the expired marker to be removed", || {
        !home.home().stop_marker().exists()
    });
    wait_for("two marker_ignored events", || {
        home.event_names()
            .iter()
            .filter(|n| *n == "marker_ignored")
            .count()
            == 2
    });
    assert!(gateway_is_running(&home));

    // Garbage in the marker file: ignored and removed as well.
    home.write("run/stop/stop.marker", b"\x00\xffnot a marker");
    wait_for("the garbage marker to be removed", || {
        !home.home().stop_marker().exists()
    });
    assert!(gateway_is_running(&home));

    assert!(home.output(&["stop"]).status.success());
    assert_eq!(gateway.wait().0, Some(0));
}

fn gateway_is_running(home: &TestHome) -> bool {
    home.status_json().1["running"] == true
}

#[cfg(unix)]
mod unix {
    use super::*;

    #[test]
    fn stop_via_each_signal() {
        // SIGHUP is a reload, not a stop (tests/reload.rs).
        for (signal, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
            let home = TestHome::new();
            let gateway = home.start(&[]);
            let pid = gateway.pid();
            gateway.signal(signal);
            let (code, _) = gateway.wait();
            assert_clean_stop(&home, pid, code, &format!("signal:{name}"));
            // The worker, too, records the signal that was sent (the monitor forwards it as it came).
            let worker = home.state().and_then(|s| s.worker_pid).expect("worker pid");
            let events = home.events();
            let request = find(&events, worker, "stop_requested");
            assert_eq!(
                request.field("source").and_then(|v| v.as_str()),
                Some(format!("signal:{name}").as_str()),
                "{events:#?}"
            );
        }
    }

    #[test]
    fn stop_via_sigterm_path_of_the_cli() {
        let home = TestHome::new();
        let gateway = home.start(&[]);
        let pid = gateway.pid();
        let out = home.output(&["stop", "--via", "signal"]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("via SIGTERM"), "{}", text(&out));
        let (code, _) = gateway.wait();
        assert_clean_stop(&home, pid, code, "signal:SIGTERM");
    }

    fn signal_pid(pid: u32, signal: i32) {
        // SAFETY: kill(2) on a worker this test started (through its monitor) and that is still alive.
        assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
    }

    #[test]
    fn a_wedged_gateway_is_force_killed_after_the_timeout() {
        let home = TestHome::new();
        let gateway = home.start(&[]);
        let pid = gateway.pid();
        let worker = home.worker_pid();
        signal_pid(worker, libc::SIGSTOP);
        let started = std::time::Instant::now();
        let out = home.output(&["stop", "--timeout", "4"]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("via force kill"), "{}", text(&out));
        assert!(started.elapsed() < Duration::from_secs(15));
        let (code, _) = gateway.wait();
        assert_eq!(code, None, "killed by a signal");
        let events = home.events();
        let kill = events
            .iter()
            .find(|e| e.event == "force_kill")
            .expect("force_kill event");
        assert_eq!(
            kill.field("target_pid").and_then(|v| v.as_u64()),
            Some(u64::from(pid))
        );
        let state = home.state().unwrap();
        assert_eq!(state.state, GatewayState::Stopped);
        assert!(state.last_exit.unwrap().reason.contains("force-killed"));
        assert_eq!(home.pid_record(), RecordRead::Missing);
    }

    #[test]
    fn no_force_reports_a_timeout_and_kills_nothing() {
        let home = TestHome::new();
        let mut gateway = home.start(&[]);
        let worker = home.worker_pid();
        signal_pid(worker, libc::SIGSTOP);
        let out = home.output(&["stop", "--timeout", "1", "--no-force", "--via", "channel"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains("did not"), "{}", text(&out));
        assert_eq!(gateway.try_exit_code(), None, "still alive");
        signal_pid(worker, libc::SIGCONT);
        // The queued stop request from the channel is honoured once it runs again.
        assert_eq!(gateway.wait().0, Some(0));
    }
}
