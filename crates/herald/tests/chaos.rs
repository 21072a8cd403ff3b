//! A bounded chaos soak: HTTP clients send messages with idempotency keys while the gateway is hit, at
//! random moments, by SIGKILL of the worker, SIGKILL of the monitor, planned stops, restarts, `run
//! --replace`, and SIGSTOP/SIGCONT. At the end every acknowledged message has exactly one reply, no
//! message made two turns, no herald process of this home is left, the records are consistent, and
//! `status --deep` was healthy before the final stop.
//!
//! Bounded by count and time. The default is the short CI run; for the long one by hand:
//! `HERALD_CHAOS_SECS=600 HERALD_CHAOS_CLIENTS=16 cargo test -p herald --test chaos -- --nocapture`.

#![cfg(unix)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::{TestHome, http, try_http, wait_for};

/// Messages per session: a session's whole history fits in one page of the history API.
const SESSION_MESSAGES: u64 = 200;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small xorshift generator: the soak's randomness, reproducible from the seed it prints.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) on a pid read from this test home's own records; a stale pid only fails.
    unsafe { libc::kill(pid as i32, signal) };
}

/// Every process whose command line names this home (the gateway's monitor, worker, agents).
fn processes_of(home: &Path) -> Vec<u32> {
    let needle = home.display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .map(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false);
        if cmdline.contains(&needle) && !zombie {
            found.push(pid);
        }
    }
    found
}

/// Sends one message until it is answered (same id every time), or the deadline passes.
fn send_until_answered(url: &str, session: &str, id: &str, text: &str, deadline: Instant) -> Option<String> {
    let body = serde_json::json!({"text": text, "id": id}).to_string();
    while Instant::now() < deadline {
        let attempt = try_http(
            url,
            "POST",
            &format!("/v1/sessions/{session}/messages"),
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        if let Ok(response) = attempt
            && response.status == 200
        {
            return response.json()["reply"]["text"].as_str().map(str::to_owned);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn chaos_soak_loses_nothing_and_doubles_nothing() {
    let seconds = env_number("HERALD_CHAOS_SECS", 20);
    let clients = env_number("HERALD_CHAOS_CLIENTS", 4);
    let max_messages = env_number("HERALD_CHAOS_MESSAGES", 2000);
    let seed = env_number(
        "HERALD_CHAOS_SEED",
        u64::from(std::process::id()) * 2_654_435_761 + 1,
    );
    eprintln!("chaos: {seconds} s, {clients} clients, at most {max_messages} messages, seed {seed}");

    let home = TestHome::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    // A real agent process per turn, taking 0-50 ms, so kills land in the middle of turns.
    let agent = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/test_agent");
    assert!(
        agent.exists(),
        "{} is missing: run the tests with `cargo test`",
        agent.display()
    );
    let log = home.root.join("agent.log");
    home.write(
        "herald.toml",
        format!(
            "[gateway]\ndrain_timeout_secs = 2\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [supervisor]\ncrash_loop_max_exits = 1000\ncrash_loop_window_secs = 1\n\n\
             [agent]\nbackend = \"command\"\n\n[agent.command]\ncommand = [{:?}, {:?}]\n",
            agent.display().to_string(),
            log.display().to_string()
        )
        .as_bytes(),
    );
    let start = |home: &TestHome| {
        let out = home.output(&["start", "--timeout", "30"]);
        assert!(out.status.success(), "{}", support::text(&out));
    };
    start(&home);

    let stop_clients = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let soak_end = Instant::now() + Duration::from_secs(seconds);
    let give_up = soak_end + Duration::from_secs(90);
    let mut workers = Vec::new();
    for c in 0..clients {
        let (url, stop, sent) = (url.clone(), stop_clients.clone(), sent.clone());
        workers.push(std::thread::spawn(move || {
            let mut answered: BTreeMap<String, String> = BTreeMap::new();
            let mut unanswered = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && sent.fetch_add(1, Ordering::Relaxed) < max_messages {
                n += 1;
                let id = format!("c{c}-{n}");
                let text = format!("sleep:{}:msg {id}", n % 50);
                let session = format!("chaos{c}-{}", n / SESSION_MESSAGES);
                match send_until_answered(&url, &session, &id, &text, give_up) {
                    Some(reply) => {
                        assert_eq!(reply, format!("agent: {text}"), "{id}");
                        answered.insert(id, reply);
                    }
                    None => unanswered.push(id),
                }
            }
            (answered, unanswered, n)
        }));
    }

    let mut rng = Rng(seed);
    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
    let mut replacers: Vec<Child> = Vec::new();
    while Instant::now() < soak_end {
        std::thread::sleep(Duration::from_millis(200 + rng.below(800)));
        let Some(state) = home.state() else { continue };
        let action = match rng.below(6) {
            0 => "kill -9 worker",
            1 => "kill -9 monitor",
            2 => "planned stop + start",
            3 => "restart",
            4 => "run --replace",
            _ => "SIGSTOP/SIGCONT worker",
        };
        *counts.entry(action).or_default() += 1;
        match action {
            "kill -9 worker" => {
                if let Some(worker) = state.worker_pid {
                    signal(worker, libc::SIGKILL);
                }
            }
            "kill -9 monitor" => {
                signal(state.pid, libc::SIGKILL);
                // The orphaned worker stops itself (its monitor is gone); start a new gateway.
                wait_for("the home to be free", || {
                    !herald_home::lock::InstanceLock::is_held(&home.home().lock_file()).unwrap_or(true)
                });
                start(&home);
            }
            "planned stop + start" => {
                assert!(home.output(&["stop"]).status.success());
                start(&home);
            }
            "restart" => {
                let out = home.output(&["restart"]);
                assert!(out.status.success(), "{}", support::text(&out));
            }
            "run --replace" => {
                let child = home
                    .cmd(&["run", "--replace"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                let pid = child.id();
                replacers.push(child);
                wait_for("the replacement to run", || {
                    home.state().is_some_and(|s| {
                        s.pid == pid && s.state == herald_home::records::GatewayState::Running
                    })
                });
            }
            _ => {
                if let Some(worker) = state.worker_pid {
                    signal(worker, libc::SIGSTOP);
                    std::thread::sleep(Duration::from_millis(300 + rng.below(700)));
                    signal(worker, libc::SIGCONT);
                }
            }
        }
        // Reap replacers that have been replaced in turn.
        replacers.retain_mut(|c| c.try_wait().ok().flatten().is_none());
    }
    stop_clients.store(true, Ordering::Relaxed);

    let mut answered = BTreeMap::new();
    let mut unanswered = Vec::new();
    let mut sessions = Vec::new();
    for (c, worker) in workers.into_iter().enumerate() {
        let (a, u, n) = worker.join().unwrap();
        answered.extend(a);
        unanswered.extend(u);
        sessions.extend((0..=n / SESSION_MESSAGES).map(|s| format!("chaos{c}-{s}")));
    }
    // Make sure a gateway runs for the final checks (the last action may have left none starting).
    if !herald_home::lock::InstanceLock::is_held(&home.home().lock_file()).unwrap_or(false) {
        start(&home);
    }
    wait_for("the gateway to be running", || {
        home.state()
            .is_some_and(|s| s.state == herald_home::records::GatewayState::Running)
    });

    // Exactly one reply per message, the right one, and one user message per id.
    let mut doubled = 0;
    let mut lost = 0;
    let mut per_id: BTreeMap<String, (u32, Vec<String>)> = BTreeMap::new();
    for session in &sessions {
        let history = http(
            &url,
            "GET",
            &format!("/v1/sessions/{session}/messages?limit=1000"),
            &[],
            b"",
        )
        .json();
        for m in history["messages"].as_array().unwrap() {
            let entry = per_id.entry(m["id"].as_str().unwrap().to_owned()).or_default();
            match m["role"].as_str().unwrap() {
                "user" => entry.0 += 1,
                _ => entry.1.push(m["text"].as_str().unwrap().to_owned()),
            }
        }
    }
    for (id, (questions, replies)) in &per_id {
        if *questions != 1 || replies.len() > 1 {
            doubled += 1;
            eprintln!("chaos: {id}: {questions} user messages, replies {replies:?}");
        }
        if let Some(reply) = answered.get(id)
            && replies.first() != Some(reply)
        {
            lost += 1;
            eprintln!("chaos: {id}: acknowledged reply {reply:?} but stored {replies:?}");
        }
    }
    for id in answered.keys() {
        if !per_id.contains_key(id) {
            lost += 1;
            eprintln!("chaos: {id} was answered but is not in the history");
        }
    }
    let deep = home.output(&["status", "--deep"]);
    let deep_healthy = deep.status.success();
    assert!(home.output(&["stop"]).status.success());
    for mut child in replacers {
        let _ = child.wait();
    }
    wait_for("every process of this home to be gone", || {
        processes_of(&home.root).is_empty()
    });
    let pid_record = home.pid_record();
    eprintln!(
        "chaos: messages answered {}, unanswered {}, actions {counts:?}, lost {lost}, doubled {doubled}, \
         deep healthy {deep_healthy}",
        answered.len(),
        unanswered.len()
    );
    assert_eq!((lost, doubled), (0, 0));
    assert!(unanswered.is_empty(), "never answered: {unanswered:?}");
    assert!(deep_healthy, "{}", support::text(&deep));
    assert!(
        pid_record.present().is_none(),
        "the PID record outlived the gateway"
    );
    assert!(
        answered.len() >= clients as usize,
        "the soak sent too little to mean anything"
    );
}
