//! Conversations that survive anything: kill -9 mid-turn, a planned stop that cuts turns, and a turn
//! that keeps being interrupted. The agent is the `command` backend running a real program (the
//! `test_agent` example) that logs every invocation, so "answered exactly once" is checked against both
//! the journal and what the agent actually did.

mod support;

use std::path::{Path, PathBuf};

use support::{TestHome, http, post_message, replies, test_agent, text, wait_for};

/// A home whose agent is `test_agent`, logging to `agent.log` in the home.
fn home_with_agent(drain_secs: u64) -> (TestHome, PathBuf) {
    home_with_agent_and(drain_secs, "")
}

/// Like [`home_with_agent`], with `agent_keys` added to `[agent]`.
fn home_with_agent_and(drain_secs: u64, agent_keys: &str) -> (TestHome, PathBuf) {
    let home = TestHome::new();
    let log = home.root.join("agent.log");
    let quote = |p: &Path| serde_json::to_string(&p.display().to_string()).unwrap();
    home.write(
        "herald.toml",
        format!(
            "[gateway]\ndrain_timeout_secs = {drain_secs}\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n\
             [agent]\nbackend = \"command\"\n{agent_keys}\n[agent.command]\ncommand = [{}, {}]\ntimeout_secs = 60\n",
            quote(&test_agent()),
            quote(&log)
        )
        .as_bytes(),
    );
    (home, log)
}

/// Starts the gateway and kills it once its agent has run again, until the agent log shows `attempts`
/// runs: each resume cut by a crash.
fn cut_by_crashes(home: &TestHome, log: &Path, attempts: usize) {
    for attempt in 2..=attempts {
        let gateway = home.start(&["--no-supervise"]);
        wait_for(&format!("attempt {attempt}"), || agent_log(log).len() == attempt);
        gateway.kill();
    }
}

/// `herald stop` in the background (a planned stop that waits on in-flight turns), output captured.
fn spawn_stop(home: &TestHome) -> std::process::Child {
    home.cmd(&["stop"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn agent_log(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn all_answered(url: &str, session: &str, count: usize) -> bool {
    let replies = replies(url, session);
    replies.len() == count && replies.values().all(|r| !r.is_empty())
}

#[test]
fn kill_9_mid_turn_loses_nothing_and_answers_each_message_once() {
    let (home, log) = home_with_agent(5);
    let gateway = home.start(&["--no-supervise"]);
    let url = home.http_url();
    let ids: Vec<String> = (0..6).map(|i| format!("m{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        // Half the turns are quick and finish before the kill; half are slow and are cut by it.
        let text = if i % 2 == 0 {
            format!("sleep:6000:slow {i}")
        } else {
            format!("quick {i}")
        };
        let accepted = post_message(&url, "crash", Some(id), &text, "?wait=false");
        assert_eq!(accepted.status, 202, "{}", accepted.body);
    }
    wait_for("the slow turns to reach the agent", || {
        agent_log(&log)
            .iter()
            .filter(|l| l.starts_with("start") && l.contains("slow"))
            .count()
            == 3
    });
    wait_for("the quick turns to finish", || {
        replies(&url, "crash").values().filter(|r| !r.is_empty()).count() == 3
    });
    gateway.kill();

    let _gateway = home.start(&["--no-supervise"]);
    let url = home.http_url();
    wait_for("every message to be answered", || all_answered(&url, "crash", 6));
    for (id, replies) in replies(&url, "crash") {
        assert_eq!(replies.len(), 1, "{id}: {replies:?}");
        assert!(replies[0].starts_with("agent: "), "{id}: {replies:?}");
    }
    let resumed = home
        .events()
        .into_iter()
        .find(|e| e.event == "turns_resumed")
        .expect("a turns_resumed event");
    assert_eq!(resumed.field("resumed").and_then(|v| v.as_u64()), Some(3));
    // The quick turns ran once; the slow ones twice (cut by the kill, resumed once).
    let starts = agent_log(&log).iter().filter(|l| l.starts_with("start")).count();
    assert_eq!(starts, 9, "{:?}", agent_log(&log));
    // A client retrying a message from before the crash gets the one stored reply, not a new turn.
    let retry = post_message(&url, "crash", Some("m0"), "sleep:6000:slow 0", "");
    assert_eq!(retry.json()["reply"]["text"], "agent: sleep:6000:slow 0");
    assert_eq!(
        agent_log(&log).iter().filter(|l| l.starts_with("start")).count(),
        9
    );
}

#[test]
fn a_planned_stop_cuts_turns_that_then_resume_once() {
    let (home, log) = home_with_agent(1);
    let gateway = home.start(&["--no-supervise"]);
    let url = home.http_url();
    for i in 0..3 {
        let accepted = post_message(
            &url,
            "planned",
            Some(&format!("p{i}")),
            "sleep:4000:long",
            "?wait=false",
        );
        assert_eq!(accepted.status, 202);
    }
    // A client waiting on a turn hears it was interrupted, with the id to retry.
    let waiting = {
        let url = url.clone();
        std::thread::spawn(move || post_message(&url, "planned", Some("w"), "sleep:4000:waiting", ""))
    };
    wait_for("all four turns to reach the agent", || {
        agent_log(&log).iter().filter(|l| l.starts_with("start")).count() == 4
    });
    let stopper = spawn_stop(&home);
    // While it drains, new messages are turned away with Retry-After.
    let mut refused = None;
    // (A message that slips in as the drain begins is stored but sent away unstarted: a 503
    // `interrupted` with its id, to retry after the restart. The next one is refused outright.)
    wait_for("a message to be refused while draining", || {
        let response = post_message(&url, "late", None, "too late", "");
        let draining = response.status == 503 && response.json()["error"] == "draining";
        if draining {
            refused = Some(response);
        }
        draining
    });
    let refused = refused.unwrap();
    assert_eq!(refused.json()["error"], "draining");
    assert_eq!(refused.header("retry-after"), Some("5"));
    let out = stopper.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let waited = waiting.join().unwrap();
    assert_eq!(waited.status, 503, "{}", waited.body);
    assert_eq!(waited.json()["error"], "interrupted");
    assert_eq!(waited.json()["id"], "w");
    let (code, output) = gateway.wait();
    assert_eq!(code, Some(0), "{output}");
    let drain_end = home
        .events()
        .into_iter()
        .rfind(|e| e.event == "drain_end")
        .unwrap();
    assert_eq!(
        drain_end.field("cut").and_then(|v| v.as_u64()),
        Some(4),
        "{drain_end:?}"
    );

    let _gateway = home.start(&["--no-supervise"]);
    let url = home.http_url();
    wait_for("the cut turns to be answered", || {
        all_answered(&url, "planned", 4)
    });
    for (id, replies) in replies(&url, "planned") {
        assert_eq!(replies.len(), 1, "{id}: {replies:?}");
    }
    // The retry a client was told to make gets the reply.
    let retry = post_message(&url, "planned", Some("w"), "sleep:4000:waiting", "");
    assert_eq!(retry.json()["reply"]["text"], "agent: sleep:4000:waiting");
}

#[test]
fn a_turn_interrupted_again_and_again_is_closed_with_an_explanation() {
    let (home, log) = home_with_agent(5);
    let stuck = "sleep:60000:never finishes";
    {
        let gateway = home.start(&["--no-supervise"]);
        let url = home.http_url();
        assert_eq!(
            post_message(&url, "loop", Some("x"), stuck, "?wait=false").status,
            202
        );
        wait_for("the first attempt", || agent_log(&log).len() == 1);
        gateway.kill();
    }
    // Resumes 1, 2 and 3, each cut by a crash.
    cut_by_crashes(&home, &log, 4);
    let _gateway = home.start(&["--no-supervise"]);
    let url = home.http_url();
    wait_for("the turn to be closed", || all_answered(&url, "loop", 1));
    let reply = post_message(&url, "loop", Some("x"), stuck, "").json();
    assert_eq!(reply["status"], "failed");
    assert!(
        reply["reply"]["text"]
            .as_str()
            .unwrap()
            .contains("Please send it again"),
        "{reply}"
    );
    assert_eq!(
        agent_log(&log).len(),
        4,
        "no fifth attempt: {:?}",
        agent_log(&log)
    );
    let history = http(&url, "GET", "/v1/sessions/loop/messages", &[], b"").json();
    assert_eq!(history["messages"].as_array().unwrap().len(), 2);
}

#[test]
fn an_agent_failure_is_a_clear_reply_not_a_hang() {
    let (home, _log) = home_with_agent(5);
    let _gateway = home.start(&["--no-supervise"]);
    let url = home.http_url();
    let reply = post_message(&url, "f", None, "fail", "");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let json = reply.json();
    assert_eq!(json["status"], "failed");
    let text = json["reply"]["text"].as_str().unwrap();
    assert!(text.contains("asked to fail"), "{text}");
    // The conversation goes on, and the agent sees it.
    let next = post_message(&url, "f", None, "hello", "").json();
    assert_eq!(next["reply"]["text"], "agent: hello");
}

#[test]
fn status_deep_sees_the_http_adapter_drain_and_a_lying_url() {
    let (home, log) = home_with_agent(10);
    let gateway = home.start(&["--no-supervise"]);
    let url = home.http_url();
    let deep = |home: &TestHome| {
        let out = home.output(&["status", "--deep", "--json"]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), json)
    };
    let probe = |json: &serde_json::Value, id: u64| {
        json["probes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .cloned()
            .unwrap()
    };
    let (code, healthy) = deep(&home);
    assert_eq!(code, Some(0), "{healthy}");
    assert_eq!(probe(&healthy, 8)["ok"], true, "{healthy}");
    assert!(probe(&healthy, 10)["detail"].as_str().unwrap().contains(&url));

    // A turn in flight keeps the drain open long enough to look at it.
    post_message(&url, "d", None, "sleep:5000:slow", "?wait=false");
    wait_for("the turn to start", || !agent_log(&log).is_empty());
    let stopper = spawn_stop(&home);
    let mut draining = serde_json::Value::Null;
    wait_for("--deep to see the drain", || {
        let (_, json) = deep(&home);
        let seen = probe(&json, 8)["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("draining");
        if seen {
            draining = json;
        }
        seen
    });
    assert_eq!(probe(&draining, 8)["ok"], false);
    assert!(draining["verdict"].as_str().unwrap().contains("P8"), "{draining}");
    assert!(stopper.wait_with_output().unwrap().status.success());
    let (code, output) = gateway.wait();
    assert_eq!(code, Some(0), "{output}");

    // A state record whose URL nobody answers on: P8 and P10 say so. (Tampered with once the start-up
    // probe has judged the agent: that change rewrites the record.)
    let _gateway = home.start(&["--no-supervise"]);
    wait_for("the agent's first word", || {
        home.status_json().1["agent"]["state"] == "connected"
    });
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let path = home.home().state_record();
    let mut record: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    record["endpoints"]["http_url"] = dead.clone().into();
    std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
    let (code, lying) = deep(&home);
    assert_eq!(code, Some(1), "{lying}");
    assert_eq!(probe(&lying, 8)["ok"], false, "{lying}");
    assert_eq!(probe(&lying, 10)["ok"], false, "{lying}");
    assert!(
        probe(&lying, 10)["detail"].as_str().unwrap().contains(&dead),
        "{lying}"
    );
    assert!(
        lying["verdict"].as_str().unwrap().contains("HTTP adapter"),
        "{lying}"
    );
}

/// The messages of the `start` lines of the agent log, in the order the agent started them.
fn started_messages(log: &Path) -> Vec<String> {
    agent_log(log)
        .iter()
        .filter_map(|l| l.strip_prefix("start "))
        .map(|l| l.split_once(' ').map_or("", |(_, message)| message).to_owned())
        .collect()
}

/// The most agents the log shows running at once (each writes `end` before it exits).
fn most_at_once(log: &Path) -> usize {
    let (mut now, mut most) = (0usize, 0usize);
    for line in agent_log(log) {
        if line.starts_with("start ") {
            now += 1;
            most = most.max(now);
        } else if line.starts_with("end ") {
            now = now.saturating_sub(1);
        }
    }
    most
}

#[test]
fn a_flood_of_turns_waits_in_a_fair_line_within_the_concurrency_limit() {
    // One slot, so the agents start strictly one after another and the log shows the line's order.
    let (home, log) = home_with_agent_and(5, "max_concurrent_turns = 1\n");
    let gateway = home.start(&["--no-supervise"]);
    let url = home.http_url();
    let threads_before = os_threads(gateway.pid());
    // One session floods the gateway; two others then post one message each.
    let mut posted = Vec::new();
    for i in 0..12 {
        posted.push(("flood", format!("a{i}")));
    }
    posted.push(("quiet", "b0".to_owned()));
    posted.push(("other", "c0".to_owned()));
    for (session, name) in &posted {
        // The first turn lasts long enough for every other message to be in line before it ends.
        let ms = if name == "a0" { 3000 } else { 300 };
        let text = format!("sleep:{ms}:{name}");
        let accepted = post_message(&url, session, Some(name), &text, "?wait=false");
        assert_eq!(accepted.status, 202, "{}", accepted.body);
    }
    // The rest wait in line, and `status` shows the line.
    let mut seen = serde_json::Value::Null;
    wait_for("status to show the line", || {
        seen = home.status_json().1;
        seen["queued"].as_u64().is_some_and(|n| n >= 8)
    });
    assert_eq!(
        seen["in_flight"].as_u64(),
        seen["queued"].as_u64().map(|n| n + 1),
        "{seen}"
    );
    assert_eq!(seen["turn_slots"], 1, "{seen}");
    let out = home.output(&["status"]);
    assert!(
        text(&out).contains("waiting in line, at most 1 run at once)"),
        "{}",
        text(&out)
    );
    // Waiting costs neither a process nor a thread.
    if let (Some(before), Some(now)) = (threads_before, os_threads(gateway.pid())) {
        assert!(
            now <= before + 3,
            "{before} threads before the flood, {now} with the line"
        );
    }
    if let Some(agents) = os_children(gateway.pid()) {
        assert!(agents <= 1, "{agents} agent processes for one slot");
    }

    wait_for("every turn to be answered", || {
        ["flood", "quiet", "other"]
            .iter()
            .map(|s| replies(&url, s).values().filter(|r| !r.is_empty()).count())
            .sum::<usize>()
            == posted.len()
    });
    assert_eq!(most_at_once(&log), 1, "{:?}", agent_log(&log));
    let order: Vec<String> = started_messages(&log)
        .iter()
        .map(|m| m.rsplit(':').next().unwrap_or_default().to_owned())
        .collect();
    // First in, first out within the session...
    let flood: Vec<&String> = order.iter().filter(|m| m.starts_with('a')).collect();
    let expected: Vec<String> = (0..12).map(|i| format!("a{i}")).collect();
    assert_eq!(flood, expected.iter().collect::<Vec<_>>(), "{order:?}");
    // ...and round-robin across sessions: after the flood's next turn, each other session's one.
    assert_eq!(&order[..4], ["a0", "a1", "b0", "c0"], "{order:?}");
}

#[test]
fn a_turn_that_only_waited_in_line_is_not_counted_as_resumed() {
    let (home, log) = home_with_agent_and(5, "max_concurrent_turns = 1\n");
    let stuck = "sleep:60000:never finishes";
    {
        let gateway = home.start(&["--no-supervise"]);
        let url = home.http_url();
        assert_eq!(
            post_message(&url, "line", Some("x"), stuck, "?wait=false").status,
            202
        );
        assert_eq!(
            post_message(&url, "line", Some("y"), "behind it", "?wait=false").status,
            202
        );
        wait_for("the first attempt", || agent_log(&log).len() == 1);
        gateway.kill();
    }
    // `x` is resumed (and cut) three more times; `y` waits behind it every time without being tried.
    cut_by_crashes(&home, &log, 4);
    let _gateway = home.start(&["--no-supervise"]);
    let url = home.http_url();
    wait_for("both turns to be closed", || all_answered(&url, "line", 2));
    let replies = replies(&url, "line");
    assert!(replies["x"][0].contains("Please send it again"), "{replies:?}");
    assert_eq!(replies["y"], ["agent: behind it"], "{replies:?}");
}

/// How many threads `pid` has (Linux; `None` elsewhere).
fn os_threads(pid: u32) -> Option<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

/// How many live processes have `pid` as their parent (Linux; `None` elsewhere).
fn os_children(pid: u32) -> Option<usize> {
    let entries = std::fs::read_dir("/proc").ok()?;
    let mut children = 0;
    for entry in entries.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces, so split after its closing parenthesis.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let (state, ppid) = (fields.next(), fields.next());
        if ppid == Some(&pid.to_string()) && state != Some("Z") {
            children += 1;
        }
    }
    Some(children)
}
