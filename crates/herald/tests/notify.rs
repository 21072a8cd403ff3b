//! `herald run --no-supervise` under a `Type=notify` unit: the real binary with a real Unix datagram socket
//! as `NOTIFY_SOCKET` receives `READY=1` once it serves, `WATCHDOG=1` at half of `WATCHDOG_USEC`, and
//! `STOPPING=1` when a planned stop starts draining — and nothing at all without `NOTIFY_SOCKET`.
#![cfg(unix)]

mod support;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use support::TestHome;

fn next(sock: &UnixDatagram, deadline: Instant) -> Option<String> {
    let mut buf = [0u8; 512];
    let left = deadline.checked_duration_since(Instant::now())?;
    sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .unwrap();
    let n = sock.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Reads messages until `want` arrives (collecting all of them), or panics at the deadline.
fn until(sock: &UnixDatagram, want: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + support::PATIENCE;
    loop {
        match next(sock, deadline) {
            Some(message) => {
                let done = message.lines().any(|l| l == want);
                seen.push(message);
                if done {
                    return;
                }
            }
            None => panic!("no {want} within the deadline; received {seen:?}"),
        }
    }
}

#[test]
fn the_standalone_gateway_notifies_ready_watchdog_and_stopping() {
    let home = TestHome::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();

    let mut cmd = home.cmd(&["run", "--no-supervise"]);
    cmd.env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();

    let mut seen = Vec::new();
    until(&sock, "READY=1", &mut seen);
    assert!(
        matches!(home.state(), Some(s) if s.state == herald_home::records::GatewayState::Running),
        "READY=1 only once the gateway serves"
    );
    until(&sock, "WATCHDOG=1", &mut seen);

    // SAFETY: kill has no memory preconditions; the pid is our own live child.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    until(&sock, "STOPPING=1", &mut seen);
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "a planned stop exits 0; messages: {seen:?}"
    );
    let ready = seen.iter().position(|m| m == "READY=1").unwrap();
    let stopping = seen.iter().position(|m| m == "STOPPING=1").unwrap();
    assert!(ready < stopping);
    assert_eq!(seen.iter().filter(|m| *m == "READY=1").count(), 1);
    assert_eq!(seen.iter().filter(|m| *m == "STOPPING=1").count(), 1);
}

#[test]
fn nothing_is_sent_without_notify_socket() {
    let home = TestHome::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    // WATCHDOG_USEC alone does not make the gateway send anything (and the socket is not named).
    let mut cmd = home.cmd(&["run", "--no-supervise"]);
    cmd.env_remove("NOTIFY_SOCKET")
        .env("WATCHDOG_USEC", "100000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    support::wait_for(
        "the gateway to run",
        || matches!(home.state(), Some(s) if s.state == herald_home::records::GatewayState::Running),
    );
    assert_eq!(next(&sock, Instant::now() + Duration::from_millis(300)), None);
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
