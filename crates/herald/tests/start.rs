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
