//! A flood of connections — idle, half-sent headers, bodies shorter than announced — from anyone who can
//! reach the HTTP port, before any token is checked, must not take the gateway's descriptors from its
//! control channel and records, must not stop a client already talking to it, and must drain away by
//! itself.
//!
//! Unix only: the test starts the gateway with a small `RLIMIT_NOFILE` (hard and soft), as a login shell's
//! 1024 would be under a bigger flood.

#![cfg(unix)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{Gateway, TestHome, post_message, wait_for};

/// The descriptor limit the gateway runs under: room for 72 connections after its reserve of 128.
const NOFILE: u64 = 200;
/// More connections than the cap and than the limit itself.
const FLOOD: usize = 300;

/// One request on a kept-alive connection; the status and the body.
fn exchange(stream: &mut BufReader<TcpStream>, port: u16, n: usize) -> (u16, String) {
    let body = format!(r#"{{"text":"steady {n}"}}"#);
    let request = format!(
        "POST /v1/sessions/steady/messages HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.get_mut().write_all(request.as_bytes()).unwrap();
    let mut status_line = String::new();
    stream.read_line(&mut status_line).unwrap();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut length = 0;
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Opens `n` connections that each misbehave in one of three ways; connections the kernel's backlog
/// cannot take (the listener stopped accepting at its cap) are skipped. `between` runs every 5
/// connections (the steady client keeps talking meanwhile, as a real one would).
fn flood(addr: SocketAddr, n: usize, mut between: impl FnMut()) -> Vec<TcpStream> {
    let mut open = Vec::new();
    for i in 0..n {
        if i % 5 == 0 {
            between();
        }
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(50)) else {
            continue;
        };
        let _ = match i % 3 {
            0 => Ok(()),
            1 => stream.write_all(b"POST /v1/sessions/x/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "),
            _ => stream.write_all(
                b"POST /v1/sessions/x/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                  Content-Length: 1000\r\n\r\n{\"text\":",
            ),
        };
        open.push(stream);
    }
    open
}

#[test]
fn a_connection_flood_leaves_the_gateway_serving_and_drains_away() {
    let home = TestHome::new();
    home.write(
        "herald.toml",
        b"[http]\nlisten = \"127.0.0.1:0\"\nidle_timeout_secs = 2\nbody_timeout_secs = 2\n",
    );
    let mut cmd = home.cmd(&["run", "--no-supervise"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: NOFILE as libc::rlim_t,
                rlim_max: NOFILE as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let gateway = Gateway::from_child(cmd.spawn().unwrap());
    home.wait_running(&gateway);
    let url = home.http_url();
    let addr: SocketAddr = url.strip_prefix("http://").unwrap().parse().unwrap();

    // A client already talking to the gateway, on a kept-alive connection.
    let mut steady = BufReader::new(TcpStream::connect(addr).unwrap());
    steady
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(exchange(&mut steady, addr.port(), 0).0, 200);

    let mut turns = 0;
    let flooding = flood(addr, FLOOD, || {
        turns += 1;
        let (status, body) = exchange(&mut steady, addr.port(), turns);
        assert_eq!(status, 200, "turn {turns} while the flood grew: {body}");
    });
    assert!(
        flooding.len() > 72,
        "the flood opened only {} connections",
        flooding.len()
    );

    // While flooded: the steady client is answered, the control channel answers its ping, and records
    // can be written (the deep status reads them; a stop rewrites them).
    let started = Instant::now();
    for n in turns + 1..=turns + 20 {
        let (status, body) = exchange(&mut steady, addr.port(), n);
        assert_eq!(status, 200, "turn {n} during the flood: {body}");
    }
    let (_, deep) = {
        let out = home.output(&["status", "--deep", "--json"]);
        (
            out.status.code(),
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
        )
    };
    let ping = deep["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == 7)
        .unwrap();
    assert_eq!(ping["ok"], true, "the control channel under the flood: {ping}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the steady client was held up"
    );

    // Past the idle and body timeouts, every flood connection has been closed by the gateway.
    std::thread::sleep(Duration::from_secs(3));
    let mut closed = 0;
    for mut stream in flooding {
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut sink = Vec::new();
        if stream.read_to_end(&mut sink).is_ok() {
            closed += 1;
        }
    }
    assert!(
        closed > 72,
        "only {closed} flood connections were closed by the gateway"
    );
    // And new clients get in again.
    wait_for("a new client to be answered after the flood", || {
        post_message(&url, "after", None, "hello", "").status == 200
    });

    let stop = home.output(&["stop"]);
    assert!(stop.status.success(), "{}", String::from_utf8_lossy(&stop.stderr));
    let (code, output) = gateway.wait();
    assert_eq!(code, Some(0), "{output}");
    assert!(
        output.contains("max_connections = 256 lowered to 72"),
        "the cap is sized to the descriptor limit: {output}"
    );
    assert!(!output.contains("Too many open files"), "{output}");
}
