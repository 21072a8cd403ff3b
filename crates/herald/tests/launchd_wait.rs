//! The exit-code contract under launchd. launchd's `KeepAlive = {SuccessfulExit = false}` restarts every
//! non-zero exit — it cannot exempt 78 — so the plist runs `herald run --no-supervise --launchd`, and a
//! gateway started that way never exits 78: it stays up, idle in `startup_failed`, until `herald.toml`
//! loads, and a stop ends it with exit 0 (which launchd leaves stopped). These run the real binary with
//! the plist's invocation in a temp home.

mod support;

use std::time::Duration;

use herald_home::records::GatewayState;
use support::{Gateway, TestHome, ok, text, wait_for};

/// Invalid: a number where a string is not allowed.
const BROKEN: &[u8] = b"[gateway]\ndrain_timeout_secs = \"soon\"\n";

/// The plist's invocation (`ProgramArguments` after `--home`).
const LAUNCHD: [&str; 2] = ["--no-supervise", "--launchd"];

fn wait_startup_failed(home: &TestHome, gateway: &Gateway) {
    let pid = gateway.pid();
    wait_for(
        &format!("gateway {pid} to wait in startup_failed"),
        || matches!(home.state(), Some(s) if s.state == GatewayState::StartupFailed && s.pid == pid),
    );
}

#[test]
fn a_broken_config_waits_alive_then_serves_once_fixed_and_stop_exits_0() {
    let home = TestHome::new();
    home.write("herald.toml", BROKEN);
    let mut gateway = home.spawn(&LAUNCHD);
    let pid = gateway.pid();
    wait_startup_failed(&home, &gateway);

    // Longer than launchd's ThrottleInterval would matter here: the process is still there, and still
    // the same one (it did not exit 78 to be respawned).
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        gateway.try_exit_code(),
        None,
        "the gateway exited instead of waiting"
    );

    let out = home.output(&["status"]);
    let status = text(&out);
    assert_eq!(out.status.code(), Some(0), "{status}");
    assert!(
        status.contains(&format!("running (pid {})", gateway.pid())),
        "{status}"
    );
    assert!(status.contains("startup_failed"), "{status}");
    assert!(
        status.contains("not serving:") && status.contains("drain_timeout_secs"),
        "status names the reason: {status}"
    );
    let (code, json) = home.status_json();
    assert_eq!(code, 0);
    assert_eq!(json["state"], "startup_failed");
    assert!(
        json["waiting"]
            .as_str()
            .is_some_and(|w| w.contains("drain_timeout_secs")),
        "{json}"
    );
    let events = home.events();
    let failed = support::find(&events, gateway.pid(), "startup_failed");
    assert_eq!(
        failed.field("waiting").and_then(|w| w.as_str()),
        Some("herald.toml")
    );
    assert!(
        !support::names_for(&events, gateway.pid()).contains(&"exit".to_owned()),
        "{events:#?}"
    );

    // Fixed: the same process starts serving, and answers a chat turn.
    home.write("herald.toml", b"[gateway]\ndrain_timeout_secs = 5\n");
    home.wait_running(&gateway);
    let reply = ok(&home.output(&["chat", "hello"]));
    assert!(reply.contains("echo: hello"), "{reply}");
    let out = ok(&home.output(&["status"]));
    assert!(!out.contains("not serving"), "{out}");

    ok(&home.output(&["stop"]));
    let (code, output) = gateway.wait();
    assert_eq!(code, Some(0), "{output}");
    let names = support::names_for(&home.events(), pid);
    assert!(names.contains(&"ready".to_owned()), "{names:?}");
    assert_eq!(
        names.iter().filter(|n| *n == "start").count(),
        1,
        "one process throughout: {names:?}"
    );
}

#[test]
fn herald_stop_during_the_wait_exits_0_and_leaves_it_stopped() {
    let home = TestHome::new();
    home.write("herald.toml", BROKEN);
    let gateway = home.spawn(&LAUNCHD);
    wait_startup_failed(&home, &gateway);
    let pid = gateway.pid();

    let out = home.output(&["stop"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (code, output) = gateway.wait();
    assert_eq!(
        code,
        Some(0),
        "exit 0 is the one code launchd leaves stopped: {output}"
    );

    let state = home.state().unwrap();
    assert_eq!(state.state, GatewayState::Stopped);
    assert_eq!(state.last_exit.as_ref().map(|e| e.code), Some(0));
    assert!(home.pid_record().present().is_none(), "the PID record is removed");
    let events = home.events();
    let stop = support::find(&events, pid, "stop_requested");
    assert_eq!(
        stop.field("source").and_then(|s| s.as_str()),
        Some("control_channel")
    );
    let exit = support::find(&events, pid, "exit");
    assert_eq!(exit.field("code").and_then(serde_json::Value::as_i64), Some(0));
    let (code, _) = home.status_json();
    assert_eq!(code, 3, "not running after the stop");
}

#[cfg(unix)]
#[test]
fn sigterm_during_the_wait_exits_0() {
    let home = TestHome::new();
    home.write("herald.toml", BROKEN);
    let gateway = home.spawn(&LAUNCHD);
    wait_startup_failed(&home, &gateway);
    gateway.signal(libc::SIGTERM);
    let (code, output) = gateway.wait();
    assert_eq!(code, Some(0), "{output}");
}

#[test]
fn a_config_still_broken_after_an_edit_keeps_waiting_with_the_new_reason() {
    let home = TestHome::new();
    home.write("herald.toml", BROKEN);
    let mut gateway = home.spawn(&LAUNCHD);
    wait_startup_failed(&home, &gateway);
    home.write("herald.toml", b"[gateway]\nno_such_key = 1\n");
    wait_for("the new reason", || {
        home.state()
            .and_then(|s| s.detail)
            .is_some_and(|d| d.contains("no_such_key"))
    });
    assert_eq!(gateway.try_exit_code(), None);
    // `herald reload` reads it at once: still broken (78, naming why), then valid (the gateway starts).
    let out = home.output(&["reload"]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(
        text(&out).contains("still invalid") && text(&out).contains("no_such_key"),
        "{}",
        text(&out)
    );
    home.write("herald.toml", b"");
    let out = ok(&home.output(&["reload"]));
    assert!(out.contains("valid now: the gateway starts"), "{out}");
    home.wait_running(&gateway);
    ok(&home.output(&["stop"]));
    assert_eq!(gateway.wait().0, Some(0));
}

#[test]
fn without_launchd_a_broken_config_still_exits_78() {
    let home = TestHome::new();
    home.write("herald.toml", BROKEN);
    let (code, output) = home.spawn(&["--no-supervise"]).wait();
    assert_eq!(code, Some(78), "{output}");
    let out = home.output(&["run", "--launchd"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--launchd needs --no-supervise: {}",
        text(&out)
    );
}

#[test]
fn a_key_nobody_provides_waits_and_a_secret_set_starts_it() {
    let home = TestHome::new();
    home.write(
        "herald.toml",
        b"[agent]\nbackend = \"openai\"\n[agent.openai]\nbase_url = \"http://127.0.0.1:9/v1\"\n\
          api_key_env = \"HERALD_LAUNCHD_WAIT_TEST_KEY\"\n",
    );
    let mut gateway = home.spawn(&LAUNCHD);
    wait_startup_failed(&home, &gateway);
    let reason = home.state().and_then(|s| s.detail).unwrap_or_default();
    assert!(reason.contains("HERALD_LAUNCHD_WAIT_TEST_KEY"), "{reason}");
    assert_eq!(gateway.try_exit_code(), None);

    let mut set = home.cmd(&["secret", "set", "HERALD_LAUNCHD_WAIT_TEST_KEY"]);
    set.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = set.spawn().unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"sk-test").unwrap();
    }
    ok(&child.wait_with_output().unwrap());
    home.wait_running(&gateway);
    ok(&home.output(&["stop"]));
    assert_eq!(gateway.wait().0, Some(0));
}

#[test]
fn a_stop_marker_during_the_wait_exits_0() {
    let home = TestHome::new();
    home.write("herald.toml", BROKEN);
    let gateway = home.spawn(&LAUNCHD);
    wait_startup_failed(&home, &gateway);
    let out = home.output(&["stop", "--via", "marker"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("via stop marker"), "{}", text(&out));
    let (code, output) = gateway.wait();
    assert_eq!(code, Some(0), "{output}");
}
