//! A stand-in agent for the `command` backend in herald's own tests (built by `cargo test` as an
//! example, so it runs the same on Linux and under Wine).
//!
//! Usage: `test_agent LOG` — reads the turn JSON from stdin, appends it as one line to `LOG.turns` (what
//! the agent was given, history included), appends `start <turn_id> <message>` to LOG, sleeps when the
//! message starts with `sleep:<ms>:`, waits until the file `LOG.gate-<name>` exists when it starts with
//! `gate:<name>:`, appends `end <turn_id>`, and replies `agent: <message>`. A message `fail` exits 3 with
//! a message on stderr. A message `stream:<n>:<ms>:...` writes `line 1` … `line <n>`, one line every
//! `<ms>` ms (flushed: what `[agent.command] stream = true` shows as a draft), and nothing else. A message
//! `files:<name>,<name>,...` writes each name into the turn's `files_dir` (its text: `content of <name>`)
//! and answers `{"reply": "here are your files", "files": [names]}`; a name starting with `!` is named
//! without being written (`!/etc/passwd`: a file outside the folder). Every run also appends `start
//! <turn_id> <unix_ms> <parent_pid>` and `end <turn_id> <unix_ms> <parent_pid>` to `LOG.runs` (when each
//! run of a turn began and ended, and which gateway ran it: what the replica tests check overlap with).

use std::io::{Read, Write};
use std::time::Duration;

fn main() {
    let log = std::env::args().nth(1).expect("usage: test_agent LOG");
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).expect("stdin");
    let turn: serde_json::Value = serde_json::from_str(&input).expect("turn JSON on stdin");
    let message = turn["message"].as_str().unwrap_or_default().to_owned();
    let turn_id = turn["turn_id"].as_i64().unwrap_or(-1);
    append(&format!("{log}.turns"), &turn.to_string());
    append(&log, &format!("start {turn_id} {message}"));
    let runs = format!("{log}.runs");
    // The gateway that started it (its parent now: a killed gateway's orphan is adopted by another).
    let gateway = parent();
    append(&runs, &format!("start {turn_id} {} {gateway}", unix_ms()));
    let _ended = Ended {
        runs,
        turn_id,
        gateway,
    };
    if message == "fail" {
        eprintln!("test_agent: asked to fail");
        std::process::exit(3);
    }
    if let Some(rest) = message.strip_prefix("stream:")
        && let Some((n, rest)) = rest.split_once(':')
        && let Some((ms, _)) = rest.split_once(':')
        && let (Ok(n), Ok(ms)) = (n.parse::<u32>(), ms.parse::<u64>())
    {
        let mut out = std::io::stdout();
        for i in 1..=n {
            writeln!(out, "line {i}").expect("stdout");
            out.flush().expect("stdout");
            std::thread::sleep(Duration::from_millis(ms));
        }
        append(&log, &format!("end {turn_id}"));
        return;
    }
    if let Some(names) = message.strip_prefix("files:") {
        let dir = turn["files_dir"].as_str().expect("a files_dir");
        let mut named = Vec::new();
        for name in names.split(',') {
            match name.strip_prefix('!') {
                Some(only_named) => named.push(only_named.to_owned()),
                None => {
                    std::fs::write(std::path::Path::new(dir).join(name), format!("content of {name}"))
                        .expect("write a file");
                    named.push(name.to_owned());
                }
            }
        }
        append(&log, &format!("end {turn_id}"));
        print!(
            "{}",
            serde_json::json!({"reply": "here are your files", "files": named})
        );
        return;
    }
    if let Some(rest) = message.strip_prefix("sleep:")
        && let Some((ms, _)) = rest.split_once(':')
        && let Ok(ms) = ms.parse::<u64>()
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
    if let Some(rest) = message.strip_prefix("gate:")
        && let Some((name, _)) = rest.split_once(':')
    {
        // The test opens the gate by creating the file; a test that never does is killed with the
        // gateway (or gives up here after two minutes).
        let gate = format!("{log}.gate-{name}");
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while !std::path::Path::new(&gate).exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    append(&log, &format!("end {turn_id}"));
    print!("agent: {message}");
}

/// Appends the run's `end` line however the run ends (a `return` or the end of `main`).
struct Ended {
    runs: String,
    turn_id: i64,
    gateway: u32,
}

impl Drop for Ended {
    fn drop(&mut self) {
        append(
            &self.runs,
            &format!("end {} {} {}", self.turn_id, unix_ms(), self.gateway),
        );
    }
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

#[cfg(unix)]
fn parent() -> u32 {
    std::os::unix::process::parent_id()
}

#[cfg(not(unix))]
fn parent() -> u32 {
    0
}

fn append(path: &str, line: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("log file");
    // One write per line: concurrent agents append to the same file, and two writes could interleave.
    file.write_all(format!("{line}\n").as_bytes()).expect("log write");
}
