//! The control channel, spoken to directly as a client: ping is answered by the running gateway, status
//! is live, drain keeps the process up but not ready, and a restart request exits 75.

mod support;

use std::time::Duration;

use herald_home::records::GatewayState;
use herald_process::control::{self, ClientError, Request};
use support::*;

const TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn ping_and_status_are_answered_by_the_gateway() {
    let home = TestHome::new();
    let gateway = home.start(&[]);
    let pong = control::call(&home.home(), Request::Ping, TIMEOUT).unwrap();
    assert!(pong.ok);
    assert_eq!(pong.pid, home.worker_pid(), "answered by the serving worker");
    let status = control::call(&home.home(), Request::Status, TIMEOUT).unwrap();
    assert_eq!(status.state, Some(GatewayState::Running));
    assert_eq!(status.in_flight, Some(0));
    assert!(status.uptime_ms.is_some());
    assert!(home.output(&["stop"]).status.success());
    assert_eq!(gateway.wait().0, Some(0));
}

#[test]
fn no_gateway_means_not_listening() {
    let home = TestHome::new();
    home.home().ensure().unwrap();
    match control::call(&home.home(), Request::Ping, TIMEOUT) {
        Err(ClientError::NotListening { .. }) => {}
        other => panic!("expected NotListening, got {other:?}"),
    }
}

#[test]
fn drain_keeps_the_process_up_until_stopped() {
    let home = TestHome::new();
    let gateway = home.start(&[]);
    let drained = control::call(&home.home(), Request::Drain, TIMEOUT).unwrap();
    assert!(drained.ok);
    assert_eq!(drained.drain.map(|d| (d.finished, d.cut)), Some((0, 0)));
    assert_eq!(home.state().unwrap().state, GatewayState::Draining);
    let status = control::call(&home.home(), Request::Status, TIMEOUT).unwrap();
    assert_eq!(status.state, Some(GatewayState::Draining));
    let events = home.event_names();
    assert_eq!(events.iter().filter(|e| *e == "drain_begin").count(), 1);

    assert!(home.output(&["stop"]).status.success());
    assert_eq!(gateway.wait().0, Some(0));
    // The stop after a drain does not drain twice.
    let events = home.event_names();
    assert_eq!(
        events.iter().filter(|e| *e == "drain_begin").count(),
        1,
        "{events:?}"
    );
}

#[test]
fn restart_request_exits_75_without_a_monitor() {
    let home = TestHome::new();
    let gateway = home.start(&["--no-supervise"]);
    let reply = control::call(&home.home(), Request::Stop { restart: true }, TIMEOUT).unwrap();
    assert!(reply.ok);
    assert_eq!(gateway.wait().0, Some(75));
    let state = home.state().unwrap();
    assert_eq!(state.state, GatewayState::Stopped);
    assert_eq!(state.last_exit.unwrap().code, 75);
}

#[test]
fn garbage_on_the_channel_gets_an_error_and_the_gateway_carries_on() {
    use std::io::{BufRead, Write};
    let home = TestHome::new();
    let gateway = home.start(&[]);
    for garbage in [
        &b"hello\n"[..],
        b"{\"op\":\"explode\"}\n",
        b"\xff\xfe\n",
        b"[\"ping\"]\n",
    ] {
        let mut stream = std::io::BufReader::new(raw_connect(&home));
        stream.get_mut().write_all(garbage).unwrap();
        let mut reply = String::new();
        stream.read_line(&mut reply).unwrap();
        let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(reply["ok"], false, "{garbage:?}");
        assert!(reply["error"].is_string());
    }
    assert!(control::call(&home.home(), Request::Ping, TIMEOUT).unwrap().ok);
    assert!(home.output(&["stop"]).status.success());
    assert_eq!(gateway.wait().0, Some(0));
}

#[cfg(unix)]
fn raw_connect(home: &TestHome) -> impl std::io::Read + std::io::Write {
    let stream = std::os::unix::net::UnixStream::connect(home.home().control_socket()).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream
}

#[cfg(windows)]
fn raw_connect(home: &TestHome) -> impl std::io::Read + std::io::Write {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(home.home().control_pipe_name())
        .unwrap()
}
