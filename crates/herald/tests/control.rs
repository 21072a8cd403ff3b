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

/// A home whose path is too long for a Unix socket puts its control socket in this user's private runtime
/// directory — `<temp>/herald-<uid>/`, 0700, checked to be this user's — never straight into a shared
/// temp dir where another user could take the name first. One owned by someone else is refused by name.
#[cfg(unix)]
#[test]
fn a_long_home_keeps_its_socket_in_a_private_directory() {
    use std::os::unix::fs::PermissionsExt;
    let base = tempfile::tempdir().unwrap();
    let tmp = base.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let long = base.path().join("h".repeat(60)).join("e".repeat(60));
    let herald = |args: &[&str]| {
        retry_wine_spawn(|| {
            std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
                .arg("--home")
                .arg(&long)
                .args(args)
                .env("TMPDIR", &tmp)
                .env_remove("XDG_RUNTIME_DIR")
                .env_remove("HERALD_HOME")
                .stdin(std::process::Stdio::null())
                .output()
        })
    };
    std::fs::create_dir_all(&long).unwrap();
    std::fs::write(long.join("herald.toml"), "[http]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let started = herald(&["start", "--timeout", "30"]);
    assert!(started.status.success(), "{}", text(&started));
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let private = tmp.join(format!("herald-{uid}"));
    let meta = std::fs::symlink_metadata(&private).expect("the private runtime directory");
    assert!(meta.is_dir());
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    let sockets: Vec<_> = std::fs::read_dir(&private).unwrap().flatten().collect();
    assert_eq!(sockets.len(), 1, "{sockets:?}");
    let status = herald(&["status", "--deep"]);
    assert!(status.status.success(), "{}", text(&status));
    assert!(herald(&["stop"]).status.success());
    // Nothing of ours lies loose in the shared temp dir.
    let loose: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(loose, [std::ffi::OsString::from(format!("herald-{uid}"))]);

    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // Another user took the directory's name first: refused by name, not served through.
        std::os::unix::fs::chown(&private, Some(65534), Some(65534)).unwrap();
        let refused = herald(&["start", "--timeout", "10"]);
        assert!(!refused.status.success());
        assert!(
            text(&refused).contains("belongs to uid 65534"),
            "{}",
            text(&refused)
        );
        // The monitor keeps retrying its worker until its breaker trips: stop it now.
        let stop = herald(&["stop"]);
        assert!(stop.status.success(), "{}", text(&stop));
    }
}
