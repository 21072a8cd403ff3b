//! `herald logs`: the last N lifecycle events as lines, the detached gateway's output, and following a
//! log across rotation.

mod support;

use std::io::BufRead;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use herald_home::lifecycle::{EventKind, LifecycleEvent, LifecycleLog};
use support::*;

#[test]
fn last_n_lifecycle_events_one_line_each() {
    let home = TestHome::new();
    let gateway = home.start(&["--no-supervise"]);
    assert!(home.output(&["stop"]).status.success());
    assert_eq!(gateway.wait().0, Some(0));
    let out = home.output(&["logs", "--lifecycle", "-n", "3"]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[0].contains("drain_begin"), "{stdout}");
    assert!(
        lines[2].contains("exit") && lines[2].contains("code=0"),
        "{stdout}"
    );
    assert!(
        lines[2].contains(&format!("pid {}", gateway_pid(&home))),
        "{stdout}"
    );
}

fn gateway_pid(home: &TestHome) -> u32 {
    home.state().unwrap().pid
}

#[test]
fn the_detached_gateways_output_is_in_the_gateway_log() {
    let home = TestHome::new();
    let empty = home.output(&["logs"]);
    assert!(text(&empty).contains("no log yet"), "{}", text(&empty));
    assert!(home.output(&["start"]).status.success());
    // `start` returns once the gateway serves; its log line then passes through the monitor's relay, so
    // it lands in the file moments later.
    wait_for("the gateway's output in the log", || {
        text(&home.output(&["logs"])).contains("herald gateway running")
    });
    assert!(home.output(&["stop"]).status.success());
}

#[test]
fn follow_survives_rotation() {
    let home = TestHome::new();
    home.home().ensure().unwrap();
    let log = LifecycleLog::new(home.home().lifecycle_log());
    log.append(&LifecycleEvent::new(EventKind::Start, 1).with("mark", "before"))
        .unwrap();

    let mut follower = home
        .cmd(&["logs", "--lifecycle", "-f", "-n", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let expect = |mark: &str| {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(&format!("mark={mark}")) => return,
                Ok(_) => continue,
                Err(_) => panic!("the follower never printed mark={mark}"),
            }
        }
    };
    expect("before");
    // Give the follower a moment to reach its wait, then append.
    std::thread::sleep(Duration::from_millis(200));
    log.append(&LifecycleEvent::new(EventKind::Ready, 1).with("mark", "appended"))
        .unwrap();
    expect("appended");

    // Rotate as the log does (rename, then a new file), and write to the new file.
    std::fs::rename(log.path(), log.rotated_path(1)).unwrap();
    log.append(&LifecycleEvent::new(EventKind::Exit, 1).with("mark", "rotated"))
        .unwrap();
    expect("rotated");

    let _ = follower.kill();
    let _ = follower.wait();
}
