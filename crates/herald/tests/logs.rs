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

/// Runs `herald logs ARGS` and returns stdout (the command must succeed).
fn logs_out(home: &TestHome, args: &[&str]) -> String {
    let mut all = vec!["logs"];
    all.extend_from_slice(args);
    let out = home.output(&all);
    assert!(out.status.success(), "{all:?}: {}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn since_keeps_recent_lines_with_their_continuations() {
    let home = TestHome::new();
    let now = std::time::SystemTime::now();
    let stamp =
        |ago_secs: u64| humantime::format_rfc3339_micros(now - Duration::from_secs(ago_secs)).to_string();
    let log = format!(
        "{old}  INFO old news\n  old continuation\n{new}  WARN fresh news key=1\n  fresh continuation\n",
        old = stamp(2 * 3600),
        new = stamp(60),
    );
    home.write("logs/stdio.log", log.as_bytes());

    for since in ["1h".to_owned(), stamp(3600)] {
        let out = logs_out(&home, &["--since", &since]);
        assert!(!out.contains("old"), "--since {since}: {out}");
        assert!(
            out.contains("fresh news key=1\n  fresh continuation\n"),
            "--since {since}: {out}"
        );
    }
    // Without --since, everything (up to -n).
    assert!(logs_out(&home, &[]).contains("old continuation"));
    assert_eq!(
        logs_out(&home, &["--since", "3h", "-n", "1"]),
        "  fresh continuation\n"
    );

    // --json: one object per line, a continuation joined to its line.
    let out = logs_out(&home, &["--since", "1h", "--json"]);
    let objects: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(objects.len(), 1, "{out}");
    assert_eq!(objects[0]["level"], "warn");
    assert_eq!(objects[0]["time"], stamp(60));
    assert_eq!(objects[0]["message"], "fresh news key=1\n  fresh continuation");

    let bad = home.output(&["logs", "--since", "last tuesday"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(text(&bad).contains("neither a duration"), "{}", text(&bad));
}

#[test]
fn lifecycle_events_filter_by_since_and_print_as_json() {
    let home = TestHome::new();
    home.home().ensure().unwrap();
    let log = LifecycleLog::new(home.home().lifecycle_log());
    let mut old = LifecycleEvent::new(EventKind::Start, 1).with("mark", "old");
    old.ts = "2020-01-01T00:00:00.000Z".into();
    log.append(&old).unwrap();
    log.append(&LifecycleEvent::new(EventKind::Ready, 1).with("mark", "new"))
        .unwrap();

    let out = logs_out(&home, &["--lifecycle", "--since", "1d"]);
    assert!(out.contains("mark=new") && !out.contains("mark=old"), "{out}");
    let out = logs_out(
        &home,
        &["--lifecycle", "--json", "--since", "2019-12-31T00:00:00Z"],
    );
    let events: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.len(), 2, "{out}");
    assert_eq!(events[0]["mark"], "old");
    assert_eq!(events[1]["event"], "ready");
    assert_eq!(events[1]["pid"], 1);
}

#[test]
fn the_real_gateway_log_parses_into_json() {
    let home = TestHome::new();
    assert!(home.output(&["start"]).status.success());
    wait_for("the gateway's running line as JSON", || {
        logs_out(&home, &["--json"]).lines().any(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            value["message"]
                .as_str()
                .is_some_and(|m| m.contains("herald gateway running"))
                && value["level"] == "info"
                && value["time"].as_str().is_some_and(|t| t.ends_with('Z'))
        })
    });
    assert!(home.output(&["stop"]).status.success());
}

/// The first line `herald logs ARGS -f` writes to stderr; the follower is then ended.
fn follow_notice(home: &TestHome, args: &[&str]) -> String {
    let mut all = vec!["logs", "-f"];
    all.extend_from_slice(args);
    let mut follower = home
        .cmd(&all)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = follower.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stderr).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(PATIENCE).expect("a notice on stderr");
    let _ = follower.kill();
    let _ = follower.wait();
    line
}

#[test]
fn follow_says_what_it_waits_for() {
    let home = TestHome::new();
    let idle = follow_notice(&home, &[]);
    assert!(
        idle.starts_with("following ") && idle.contains("no gateway runs on this home now"),
        "{idle}"
    );
    let lifecycle = follow_notice(&home, &["--lifecycle"]);
    assert!(lifecycle.contains("one line per lifecycle event"), "{lifecycle}");

    // A gateway run in the foreground writes to its own terminal: -f says so rather than wait silently.
    let gateway = home.start(&[]);
    let foreground = follow_notice(&home, &[]);
    assert!(
        foreground.contains(&format!(
            "(pid {}) was not started by `herald start`",
            gateway.pid()
        )),
        "{foreground}"
    );
    assert!(home.output(&["stop"]).status.success());
    assert_eq!(gateway.wait().0, Some(0));

    assert!(home.output(&["start"]).status.success());
    let detached = follow_notice(&home, &[]);
    assert!(
        detached.contains("the output of the gateway started detached"),
        "{detached}"
    );
    assert!(home.output(&["stop"]).status.success());
}
