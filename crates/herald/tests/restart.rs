//! `herald restart`, now and after another process exits (the updater case).

mod support;

use std::time::{Duration, Instant};

use support::*;

fn running_pid(home: &TestHome) -> Option<u64> {
    let (code, status) = home.status_json();
    (code == 0).then(|| status["pid"].as_u64()).flatten()
}

#[test]
fn restart_replaces_the_gateway_with_a_fresh_one() {
    let home = TestHome::new();
    assert!(home.output(&["start"]).status.success());
    let before = running_pid(&home).unwrap();
    let out = home.output(&["restart"]);
    assert!(out.status.success(), "{}", text(&out));
    let after = running_pid(&home).unwrap();
    assert_ne!(before, after);
    assert!(home.output(&["stop"]).status.success());
}

#[test]
fn restart_after_exit_waits_for_that_process_then_restarts() {
    let home = TestHome::new();
    assert!(home.output(&["start"]).status.success());
    let before = running_pid(&home).unwrap();

    // The "updater": any process we control; here a gateway on another home.
    let updater_home = TestHome::new();
    let updater = updater_home.start(&["--no-supervise"]);
    let asked = Instant::now();
    let out = home.output(&["restart", "--after-exit", &updater.pid().to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("will restart after pid"), "{}", text(&out));
    assert!(asked.elapsed() < Duration::from_secs(10), "returns at once");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        running_pid(&home),
        Some(before),
        "nothing happens while the process lives"
    );

    assert!(updater_home.output(&["stop"]).status.success());
    assert_eq!(updater.wait().0, Some(0));
    wait_for("the gateway to be restarted", || {
        home.events().iter().any(|e| e.event == "restart_after_exit")
    });
    let event = home
        .events()
        .into_iter()
        .find(|e| e.event == "restart_after_exit")
        .unwrap();
    assert_eq!(
        event.field("outcome").and_then(|v| v.as_str()),
        Some("restarted"),
        "{event:?}"
    );
    let after = running_pid(&home).unwrap();
    assert_ne!(before, after);
    assert!(home.output(&["stop"]).status.success());
}

#[test]
fn restart_after_exit_of_a_gone_pid_restarts_at_once() {
    let home = TestHome::new();
    assert!(home.output(&["start"]).status.success());
    let before = running_pid(&home).unwrap();
    let mut gone = retry_wine_spawn(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("--version")
            .spawn()
    });
    let gone_pid = gone.id();
    gone.wait().unwrap();
    let out = home.output(&["restart", "--after-exit", &gone_pid.to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("restarting now"), "{}", text(&out));
    assert_ne!(running_pid(&home).unwrap(), before);
    assert!(home.output(&["stop"]).status.success());
}
