//! Conversations through the real binary: turn numbers per session, failure apologies kept from the
//! agent, resets (HTTP and `herald chat --new`), the live count of turns in flight, and the one log
//! line each turn leaves. The agent is the `command` backend running the `test_agent` example, which
//! records the whole document it was given (`agent.log.turns`), so "what the agent saw" is asserted on
//! what it actually received.

mod support;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use support::{TestHome, agent_inputs, http, ok, post_message, test_agent, text, wait_for};

/// A home whose agent is `test_agent`, logging to `agent.log`; `gateway_keys` and `http_keys` are added
/// to those sections of `herald.toml`.
fn home_with_agent(gateway_keys: &str, http_keys: &str) -> (TestHome, PathBuf) {
    let home = TestHome::new();
    let log = home.root.join("agent.log");
    let quote = |p: &Path| serde_json::to_string(&p.display().to_string()).unwrap();
    home.write(
        "herald.toml",
        format!(
            "[gateway]\ndrain_timeout_secs = 5\n{gateway_keys}\n[http]\nlisten = \"127.0.0.1:0\"\n{http_keys}\n\
             [agent]\nbackend = \"command\"\n\n[agent.command]\ncommand = [{}, {}]\ntimeout_secs = 60\n",
            quote(&test_agent()),
            quote(&log)
        )
        .as_bytes(),
    );
    (home, log)
}

/// The history the agent was given with `message`, as (role, text) pairs.
fn history_seen(log: &Path, message: &str) -> Vec<(String, String)> {
    let inputs = agent_inputs(log);
    let input = inputs
        .iter()
        .rfind(|i| i["message"] == message)
        .unwrap_or_else(|| panic!("the agent never got {message:?}: {inputs:#?}"));
    input["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_owned(),
                m["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pair(role: &str, text: &str) -> (String, String) {
    (role.to_owned(), text.to_owned())
}

/// A listed message: (turn, conversation, role, text, status).
type Listed = (u64, u64, String, String, String);

/// A request that must be refused: (what, path, headers, body, status, error code).
type Refused<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, &'a [u8], u16, &'a str);

/// The session's history page, and each message's (turn, conversation, role, text, status).
fn listed(url: &str, session: &str, auth: &[(&str, &str)]) -> (Value, Vec<Listed>) {
    let page = http(url, "GET", &format!("/v1/sessions/{session}/messages"), auth, b"").json();
    let messages = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["turn"].as_u64().unwrap(),
                m["conversation"].as_u64().unwrap(),
                m["role"].as_str().unwrap().to_owned(),
                m["text"].as_str().unwrap().to_owned(),
                m["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (page, messages)
}

fn row(
    turn: u64,
    conversation: u64,
    role: &str,
    text: &str,
    status: &str,
) -> (u64, u64, String, String, String) {
    (
        turn,
        conversation,
        role.to_owned(),
        text.to_owned(),
        status.to_owned(),
    )
}

#[test]
fn a_failure_apology_is_stored_as_such_and_never_shown_to_the_agent() {
    let (home, log) = home_with_agent("", "");
    let _gateway = home.start(&["--no-supervise"]);
    let url = home.http_url();
    assert_eq!(
        post_message(&url, "f", None, "hello", "").json()["status"],
        "done"
    );
    let failed = post_message(&url, "f", None, "fail", "").json();
    assert_eq!(failed["status"], "failed", "{failed}");
    let apology = failed["reply"]["text"].as_str().unwrap().to_owned();
    assert!(apology.starts_with("Sorry"), "{apology}");
    assert_eq!(post_message(&url, "f", None, "next", "").json()["status"], "done");

    // The agent saw the conversation without the gateway's apology (the question stays: the user asked it).
    assert_eq!(
        history_seen(&log, "next"),
        [
            pair("user", "hello"),
            pair("assistant", "agent: hello"),
            pair("user", "fail")
        ]
    );
    // People see everything, the apology marked as a failure, and each turn's number in the session.
    let (_, messages) = listed(&url, "f", &[]);
    assert_eq!(
        messages,
        [
            row(1, 1, "user", "hello", "done"),
            row(1, 1, "assistant", "agent: hello", "done"),
            row(2, 1, "user", "fail", "failed"),
            row(2, 1, "assistant", &apology, "failed"),
            row(3, 1, "user", "next", "done"),
            row(3, 1, "assistant", "agent: next", "done"),
        ]
    );
    // Numbers are per session: another session starts at 1; the agent is told both ids.
    post_message(&url, "other", None, "hi", "");
    assert_eq!(listed(&url, "other", &[]).1[0].0, 1);
    let input = agent_inputs(&log)
        .into_iter()
        .rfind(|i| i["message"] == "hi")
        .unwrap();
    assert_eq!(input["turn"], 1, "{input}");
    assert!(input["turn_id"].as_i64().unwrap() >= 4, "{input}");
}

#[test]
fn a_reset_starts_afresh_keeps_the_history_and_is_guarded_like_the_rest_of_v1() {
    let token = "a-token-of-sixteen-chars";
    let (home, log) = home_with_agent("", &format!("token = \"{token}\"\n"));
    let _gateway = home.start(&["--no-supervise"]);
    let url = home.http_url();
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str())];
    let json_auth = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    let say = |text: &str| {
        let body = json!({"text": text}).to_string();
        let reply = http(
            &url,
            "POST",
            "/v1/sessions/r/messages",
            &json_auth,
            body.as_bytes(),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
    };
    let reset = |body: &[u8]| http(&url, "POST", "/v1/sessions/r/reset", &json_auth, body);

    say("one");
    say("two");
    let first = reset(b"");
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(
        first.json(),
        json!({"session": "r", "conversation": 2, "reset": true})
    );
    // Nothing said since: a second reset (a retry) changes nothing.
    assert_eq!(
        reset(b"{}").json(),
        json!({"session": "r", "conversation": 2, "reset": false})
    );
    say("three");
    say("four");
    assert_eq!(history_seen(&log, "three"), []);
    assert_eq!(
        history_seen(&log, "four"),
        [pair("user", "three"), pair("assistant", "agent: three")]
    );
    // The whole history is still there, each message with its conversation.
    let (page, messages) = listed(&url, "r", &auth);
    assert_eq!(page["conversation"], 2, "{page}");
    let summary: Vec<(u64, u64, String)> = messages.into_iter().map(|m| (m.0, m.1, m.3)).collect();
    let expected: Vec<(u64, u64, String)> = [
        (1, 1, "one"),
        (1, 1, "agent: one"),
        (2, 1, "two"),
        (2, 1, "agent: two"),
        (3, 2, "three"),
        (3, 2, "agent: three"),
        (4, 2, "four"),
        (4, 2, "agent: four"),
    ]
    .into_iter()
    .map(|(t, c, s)| (t, c, s.to_owned()))
    .collect();
    assert_eq!(summary, expected);
    let sessions = http(&url, "GET", "/v1/sessions", &auth, b"").json();
    assert_eq!(sessions["sessions"][0]["conversation"], 2, "{sessions}");
    assert_eq!(sessions["sessions"][0]["messages"], 8, "{sessions}");

    // Mistakes and intruders get the same JSON errors as every /v1 route, and reset nothing.
    let cases: Vec<Refused> = vec![
        (
            "no token",
            "/v1/sessions/r/reset",
            vec![("Content-Type", "application/json")],
            b"",
            401,
            "unauthorized",
        ),
        (
            "not JSON",
            "/v1/sessions/r/reset",
            vec![("Authorization", bearer.as_str())],
            b"",
            415,
            "unsupported_media_type",
        ),
        (
            "a cross-site page",
            "/v1/sessions/r/reset",
            vec![
                ("Authorization", bearer.as_str()),
                ("Content-Type", "application/json"),
                ("Origin", "https://evil.example"),
            ],
            b"",
            403,
            "cross_origin",
        ),
        (
            "a bad body",
            "/v1/sessions/r/reset",
            json_auth.to_vec(),
            b"{\"hard\": true}",
            400,
            "invalid_json",
        ),
        (
            "a bad session",
            "/v1/sessions/a%20b/reset",
            json_auth.to_vec(),
            b"",
            400,
            "invalid_session",
        ),
    ];
    for (name, path, headers, body, status, code) in cases {
        let response = http(&url, "POST", path, &headers, body);
        assert_eq!(response.status, status, "{name}: {}", response.body);
        assert_eq!(response.json()["error"], code, "{name}: {}", response.body);
    }
    let wrong_method = http(&url, "GET", "/v1/sessions/r/reset", &auth, b"");
    assert_eq!(wrong_method.status, 405, "{}", wrong_method.body);
    assert_eq!(listed(&url, "r", &auth).0["conversation"], 2);
    // An unknown session is fresh already, and is not created by a reset.
    assert_eq!(
        http(&url, "POST", "/v1/sessions/nobody/reset", &json_auth, b"").json(),
        json!({"session": "nobody", "conversation": 1, "reset": false})
    );
    let sessions = http(&url, "GET", "/v1/sessions", &auth, b"").json();
    assert_eq!(sessions["sessions"].as_array().unwrap().len(), 1, "{sessions}");
}

/// `herald chat` with `args`, `stdin` piped in; its stdout.
fn chat(home: &TestHome, args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut all = vec!["chat"];
    all.extend_from_slice(args);
    let mut child = home
        .cmd(&all)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    ok(&out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn chat_new_and_session_start_afresh_one_shot_and_interactive() {
    let (home, log) = home_with_agent("", "");
    let _gateway = home.start(&[]);
    let url = home.http_url();

    // One message at a time, in a named session.
    assert_eq!(chat(&home, &["--session", "cx", "hello"], ""), "agent: hello\n");
    assert_eq!(chat(&home, &["-s", "cx", "again"], ""), "agent: again\n");
    assert_eq!(
        history_seen(&log, "again"),
        [pair("user", "hello"), pair("assistant", "agent: hello")]
    );
    assert_eq!(chat(&home, &["-s", "cx", "--new", "fresh"], ""), "agent: fresh\n");
    assert_eq!(history_seen(&log, "fresh"), []);

    // Lines from standard input: --new resets once, before the first line.
    assert_eq!(
        chat(&home, &["--new", "-s", "cx"], "one\ntwo\n"),
        "agent: one\nagent: two\n"
    );
    assert_eq!(history_seen(&log, "one"), []);
    assert_eq!(
        history_seen(&log, "two"),
        [pair("user", "one"), pair("assistant", "agent: one")]
    );
    let (page, messages) = listed(&url, "cx", &[]);
    assert_eq!(page["conversation"], 3, "{page}");
    assert_eq!(messages.len(), 10, "the history stays: {messages:?}");

    // The default session is `cli`; --new works there too, and other sessions are untouched.
    assert_eq!(chat(&home, &["default one"], ""), "agent: default one\n");
    assert_eq!(chat(&home, &["--new", "default two"], ""), "agent: default two\n");
    assert_eq!(history_seen(&log, "default two"), []);
    assert_eq!(listed(&url, "cli", &[]).0["conversation"], 2);
    assert_eq!(listed(&url, "cx", &[]).0["conversation"], 3);
}

#[test]
fn status_and_the_state_record_show_the_turns_in_flight_live() {
    let (home, log) = home_with_agent("", "");
    // Supervised, as `herald start` and the service registrations run it: the worker counts the turns
    // and writes the state record the monitor's `status` reads.
    let _gateway = home.start(&[]);
    let url = home.http_url();
    let (_, idle) = home.status_json();
    assert_eq!(idle["in_flight"], 0, "{idle}");
    for i in 0..3 {
        let accepted = post_message(
            &url,
            &format!("live{i}"),
            None,
            &format!("gate:open:{i}"),
            "?wait=false",
        );
        assert_eq!(accepted.status, 202, "{}", accepted.body);
    }
    // The agents run (held at the gate): status, its JSON and the state record all say so.
    wait_for("status --json to count three turns in flight", || {
        home.status_json().1["in_flight"] == 3
    });
    assert_eq!(home.state().unwrap().in_flight, 3);
    let out = home.output(&["status"]);
    assert!(text(&out).contains("turns in flight: 3"), "{}", text(&out));
    wait_for("the agents to start", || {
        std::fs::read_to_string(&log).unwrap_or_default().lines().count() == 3
    });
    let mut gate = log.as_os_str().to_owned();
    gate.push(".gate-open");
    std::fs::write(PathBuf::from(gate), b"").unwrap();
    wait_for("status --json to count none once they end", || {
        home.status_json().1["in_flight"] == 0
    });
    assert_eq!(home.state().unwrap().in_flight, 0);
}

/// The `turn ended` lines of a gateway's output.
fn turn_lines(output: &str) -> Vec<&str> {
    output.lines().filter(|l| l.contains("turn ended")).collect()
}

#[test]
fn each_turn_logs_one_line_and_no_text_unless_asked() {
    let (home, log) = home_with_agent("", "");
    let gateway = home.start(&["--no-supervise"]);
    let url = home.http_url();
    post_message(&url, "logged", None, "a private word: pineapple", "");
    post_message(&url, "logged", None, "fail", "");
    assert_eq!(home.output(&["stop"]).status.code(), Some(0));
    let (code, output) = gateway.wait();
    assert_eq!(code, Some(0), "{output}");
    let lines = turn_lines(&output);
    assert_eq!(lines.len(), 2, "{output}");
    for (line, turn, outcome) in [(lines[0], 1, "done"), (lines[1], 2, "failed")] {
        for field in [
            "adapter=http".to_owned(),
            "session=logged".to_owned(),
            format!("turn={turn}"),
            "agent=command".to_owned(),
            format!("outcome={outcome}"),
            " ms=".to_owned(),
        ] {
            assert!(line.contains(&field), "{field} missing from {line:?}");
        }
    }
    assert!(
        !output.contains("pineapple"),
        "message text in the log:\n{output}"
    );

    // With the debug option, the line carries both texts; a turn cut by a stop (held at a gate that never
    // opens, with no drain time) says so.
    home.write(
        "herald.toml",
        std::fs::read_to_string(home.root.join("herald.toml"))
            .unwrap()
            .replace(
                "drain_timeout_secs = 5",
                "drain_timeout_secs = 0\nlog_message_text = true",
            )
            .as_bytes(),
    );
    let gateway = home.start(&["--no-supervise"]);
    let url = home.http_url();
    post_message(&url, "logged", None, "a visible word: mango", "");
    post_message(&url, "logged", None, "gate:never:stuck", "?wait=false");
    wait_for("the stuck turn to reach the agent", || {
        agent_inputs(&log)
            .iter()
            .any(|i| i["message"] == "gate:never:stuck")
    });
    assert_eq!(home.output(&["stop"]).status.code(), Some(0));
    let (code, output) = gateway.wait();
    assert_eq!(code, Some(0), "{output}");
    let lines = turn_lines(&output);
    assert_eq!(lines.len(), 2, "{output}");
    let done = lines.iter().find(|l| l.contains("turn=3")).expect("turn 3");
    assert!(done.contains("outcome=done"), "{done}");
    assert!(done.contains("a visible word: mango"), "{done}");
    assert!(done.contains("agent: a visible word: mango"), "{done}");
    let cut = lines.iter().find(|l| l.contains("turn=4")).expect("turn 4");
    assert!(cut.contains("outcome=interrupted"), "{cut}");
}
