//! The `openai` backend through the whole gateway: HTTP in, the real mock-llm server (npm
//! `@dwmkerr/mock-llm`) as the OpenAI-compatible agent, the reply stored and returned. The backend's
//! own edge cases (retries, streaming framing, timeouts) are tested in `herald-openai`.
//!
//! The peer is started here (`node $HERALD_MOCK_LLM`, default `ci/peers/node_modules/...`), or, when
//! `HERALD_MOCK_LLM_URL` names a running one (under Wine, where a Windows test cannot start node), used
//! as it is after resetting its rules.

#[path = "support/bot_api.rs"]
mod bot_api;
mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use support::{TestHome, http, post_message, wait_for};

struct Peer {
    url: String,
    child: Option<Child>,
    /// Held while a test uses a shared server (`HERALD_MOCK_LLM_URL`): tests script its rules in turn.
    _shared: Option<std::sync::MutexGuard<'static, ()>>,
}

/// Tests that share one running server take turns (each rewrites its rules).
static SHARED: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Peer {
    /// Replaces mock-llm's rules (`{"rules": [...]}`, matched last first).
    fn script(&self, rules: &serde_json::Value) {
        let set = http(
            &self.url,
            "POST",
            "/config",
            &[("Content-Type", "application/json")],
            rules.to_string().as_bytes(),
        );
        assert!(set.status < 300, "POST /config: {}", set.status);
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn peer() -> Peer {
    if let Ok(url) = std::env::var("HERALD_MOCK_LLM_URL") {
        let guard = SHARED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let reset = http(&url, "DELETE", "/config", &[], b"");
        assert!(
            reset.status < 300,
            "cannot reset mock-llm at {url}: {}",
            reset.status
        );
        return Peer {
            url,
            child: None,
            _shared: Some(guard),
        };
    }
    let entry = std::env::var_os("HERALD_MOCK_LLM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../ci/peers/node_modules/@dwmkerr/mock-llm/dist/main.js")
        });
    assert!(
        entry.exists(),
        "the mock-llm test peer is missing at {}: run `bash ci/peers/install-mock-llm.sh`",
        entry.display()
    );
    // mock-llm cannot say which port it took, so one is picked here — and another test's listener may
    // take it before mock-llm binds. Then mock-llm exits: pick again. Ready means mock-llm's own
    // `/health` answering, not merely something listening on the port.
    let cwd = tempfile::tempdir().unwrap();
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("node")
            .arg(&entry)
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .current_dir(cwd.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node (needed for the mock-llm test peer)");
        let mut peer = Peer {
            url: format!("http://127.0.0.1:{port}"),
            child: Some(child),
            _shared: None,
        };
        let mut exited = false;
        wait_for("mock-llm to answer /health (or exit)", || {
            exited = peer
                .child
                .as_mut()
                .is_some_and(|c| c.try_wait().ok().flatten().is_some());
            exited || support::try_http(&peer.url, "GET", "/health", &[], b"").is_ok_and(|r| r.status == 200)
        });
        if !exited {
            return peer;
        }
        eprintln!("mock-llm exited on port {port} (taken meanwhile?); trying another");
    }
    panic!("mock-llm did not start on any of five ports");
}

/// The agent's health state as `status --json` shows it.
fn agent_state(home: &TestHome) -> String {
    home.status_json().1["agent"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn home_with_openai(base_url: &str) -> TestHome {
    let home = TestHome::new();
    home.write(
        "herald.toml",
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\n[agent]\nbackend = \"openai\"\n\n[agent.openai]\n\
             base_url = \"{base_url}/v1\"\nmodel = \"test-model\"\napi_key_env = \"\"\n\
             timeout_secs = 5\nmax_retries = 1\n"
        )
        .as_bytes(),
    );
    home
}

#[test]
fn an_openai_compatible_server_answers_through_the_gateway() {
    let peer = peer();
    let home = home_with_openai(&peer.url);
    let _gateway = home.start(&["--no-supervise"]);
    let url = home.http_url();
    let reply = post_message(&url, "llm", Some("q1"), "hello from herald", "");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let json = reply.json();
    assert_eq!(json["status"], "done", "{json}");
    // mock-llm's default answer repeats the last user message.
    assert_eq!(json["reply"]["text"], "hello from herald");
    let second = post_message(&url, "llm", Some("q2"), "and again", "").json();
    assert_eq!(second["reply"]["text"], "and again");
    let history = http(&url, "GET", "/v1/sessions/llm/messages", &[], b"").json();
    assert_eq!(history["messages"].as_array().unwrap().len(), 4);
}

#[test]
fn an_unreachable_endpoint_is_a_clear_reply_within_the_budget() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let home = home_with_openai(&format!("http://127.0.0.1:{port}"));
    let _gateway = home.start(&["--no-supervise"]);
    let url = home.http_url();
    let started = std::time::Instant::now();
    let reply = post_message(&url, "down", None, "anyone there?", "");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let json = reply.json();
    assert_eq!(json["status"], "failed", "{json}");
    assert!(
        json["reply"]["text"].as_str().unwrap().contains("unavailable"),
        "{json}"
    );
}

/// The key a service-managed gateway needs comes from the home's secrets store: a gateway started with
/// an empty environment sends it (the mock answers "authorized" only to that exact header), and the
/// value appears in no file of the home and no output.
#[test]
fn a_gateway_with_no_environment_gets_its_key_from_the_secrets_store() {
    const KEY: &str = "sk-herald-store-5f2a9c71d3";
    const VAR: &str = "HERALD_TEST_STORE_KEY_VARIABLE";
    let peer = peer();
    let answer = |text: &str| {
        serde_json::json!({"choices":[{"message":{"role":"assistant","content":text},"finish_reason":"stop"}]})
            .to_string()
    };
    let rules = serde_json::json!({"rules": [
        {"path": "/v1/chat/completions", "method": "POST", "match": "@",
         "response": {"status": 200, "content": answer("anonymous")}},
        {"path": "/v1/chat/completions", "method": "POST",
         "match": format!("headers.authorization == 'Bearer {KEY}'"),
         "response": {"status": 200, "content": answer("authorized")}},
    ]});
    peer.script(&rules);

    let home = TestHome::new();
    home.write(
        "herald.toml",
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\n[agent]\nbackend = \"openai\"\n\n[agent.openai]\n\
             base_url = \"{}/v1\"\nmodel = \"m\"\napi_key_env = \"{VAR}\"\nstream = false\nmax_retries = 0\n",
            peer.url
        )
        .as_bytes(),
    );
    let mut outputs = String::new();
    // Without the key anywhere, the start fails at once (exit 78), naming the variable and the fix.
    let refused = home.output(&["run", "--no-supervise"]);
    let text = support::text(&refused);
    assert_eq!(refused.status.code(), Some(78), "{text}");
    assert!(text.contains(VAR) && text.contains("herald secret set"), "{text}");
    outputs.push_str(&text);

    let mut set = home.cmd(&["secret", "set", VAR]);
    set.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = set.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(format!("{KEY}\n").as_bytes()).unwrap();
    }
    let stored = child.wait_with_output().unwrap();
    outputs.push_str(&support::ok(&stored));

    let mut run = home.cmd(&["run", "--no-supervise"]);
    // Nothing of this environment: what a service manager gives (on Windows the few variables a
    // process needs to start stay).
    #[cfg(unix)]
    run.env_clear();
    let child = run
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let gateway = support::Gateway::from_child(child);
    home.wait_running(&gateway);
    let url = home.http_url();
    let reply = post_message(&url, "keyed", None, "who am I?", "").json();
    assert_eq!(reply["status"], "done", "{reply}");
    assert_eq!(reply["reply"]["text"], "authorized", "{reply}");

    for args in [
        &["status"][..],
        &["status", "--json"],
        &["status", "--deep"],
        &["config", "show"],
        &["config", "check"],
        &["secret", "list"],
        &["logs", "-n", "1000"],
        &["logs", "--lifecycle", "-n", "1000"],
    ] {
        let out = home.output(args);
        outputs.push_str(&support::text(&out));
    }
    outputs.push_str(&support::ok(&home.output(&["stop"])));
    let (_, log) = gateway.wait();
    outputs.push_str(&log);
    assert!(!outputs.contains(KEY), "the key was printed:\n{outputs}");
    assert!(outputs.contains(VAR), "{outputs}");
    for file in files_under(&home.root) {
        if file.file_name().is_some_and(|n| n == "secrets.json") {
            continue;
        }
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(KEY),
            "the key is in {}",
            file.display()
        );
    }
}

/// Every file under `dir`, recursively (links not followed).
fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => pending.push(entry.path()),
                Ok(t) if t.is_file() => files.push(entry.path()),
                _ => {}
            }
        }
    }
    files
}

/// `herald doctor` lists the models with the key: a key the server refuses fails the agent line (naming
/// the URL and the variable, never the key), the right one passes.
#[test]
fn doctor_fails_the_agent_when_the_server_refuses_the_key() {
    const GOOD: &str = "sk-herald-doctor-good-1b2c";
    const BAD: &str = "sk-herald-doctor-bad-9f8e";
    const VAR: &str = "HERALD_TEST_DOCTOR_OPENAI_KEY";
    let peer = peer();
    let models = serde_json::json!({"object": "list", "data": [{"id": "m", "object": "model"}]}).to_string();
    let refused =
        serde_json::json!({"error": {"message": "Incorrect API key", "type": "invalid_request_error"}})
            .to_string();
    let rules = serde_json::json!({"rules": [
        {"path": "/v1/models", "method": "GET", "response": {"status": 401, "content": refused}},
        {"path": "/v1/models", "method": "GET", "match": format!("headers.authorization == 'Bearer {GOOD}'"),
         "response": {"status": 200, "content": models}},
    ]});
    peer.script(&rules);
    let home = TestHome::new();
    home.write(
        "herald.toml",
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[agent]\nbackend = \"openai\"\n[agent.openai]\n\
             base_url = \"{}/v1\"\nmodel = \"m\"\napi_key_env = \"{VAR}\"\n",
            peer.url
        )
        .as_bytes(),
    );
    let doctor = |key: &str| {
        let out = home.cmd(&["doctor", "--json"]).env(VAR, key).output().unwrap();
        let all = support::text(&out);
        assert!(!all.contains(key), "the key was printed: {all}");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let agent = json["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == "agent")
            .unwrap()
            .clone();
        (out.status.code(), agent)
    };
    let (code, agent) = doctor(BAD);
    assert_eq!(code, Some(1), "{agent}");
    assert_eq!(agent["verdict"], "FAIL", "{agent}");
    let detail = agent["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!(
            "GET {}/v1/models refused the API key (HTTP 401)",
            peer.url
        )) && detail.contains(VAR),
        "{detail}"
    );
    let (_, agent) = doctor(GOOD);
    assert_eq!(agent["verdict"], "PASS", "{agent}");
}

/// An agent endpoint that starts failing: the agent is `degraded` in `status`, `--json` and `--deep`;
/// after `[gateway] outage_notice_secs` the allowed Telegram user is told once (not once per failed
/// turn); when the endpoint works again the agent is `connected` and the user is told that too.
#[test]
fn an_agent_that_starts_failing_is_degraded_users_are_told_once_and_it_recovers() {
    const TOKEN: &str = "4343:NOTICE-TOKEN";
    const USER: i64 = 41;
    let peer = peer();
    let telegram = bot_api::BotApi::start(TOKEN);
    let home = TestHome::new();
    home.write(
        "herald.toml",
        format!(
            "[gateway]\noutage_notice_secs = 1\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n[agent]\n\
             backend = \"openai\"\n\n[agent.openai]\nbase_url = \"{}/v1\"\nmodel = \"m\"\napi_key_env = \"\"\n\
             stream = false\nmax_retries = 0\ntimeout_secs = 5\n\n[telegram]\nenabled = true\n\
             token = \"{TOKEN}\"\napi_base = \"{}\"\nallowed_users = [{USER}]\npoll_timeout_secs = 1\n\
             min_poll_interval_ms = 100\n",
            peer.url, telegram.url
        )
        .as_bytes(),
    );
    let gateway = home.start(&[]);
    let url = home.http_url();
    let agent_state = || agent_state(&home);
    let hello = post_message(&url, "s", None, "hello", "").json();
    assert_eq!(hello["status"], "done", "{hello}");
    wait_for("the agent to be connected", || agent_state() == "connected");

    let down = serde_json::json!({"error": {"message": "overloaded"}}).to_string();
    peer.script(&serde_json::json!({"rules": [
        {"path": "/v1/chat/completions", "method": "POST", "match": "@",
         "response": {"status": 500, "content": down}},
        {"path": "/v1/models", "method": "GET", "match": "@",
         "response": {"status": 500, "content": down}},
    ]}));
    for n in 0..2 {
        let reply = post_message(&url, "s", None, &format!("fail {n}"), "").json();
        assert_eq!(reply["status"], "failed", "{reply}");
    }
    wait_for("the agent to be degraded", || agent_state() == "degraded");
    let (_, status) = home.status_json();
    assert!(
        status["agent"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("2 turns in a row failed"),
        "{status}"
    );
    let text = support::text(&home.output(&["status"]));
    assert!(text.contains("agent openai: degraded since"), "{text}");
    let deep = home.output(&["status", "--deep"]);
    let deep_text = support::text(&deep);
    assert_eq!(deep.status.code(), Some(1), "{deep_text}");
    assert!(deep_text.contains("its agent is failing"), "{deep_text}");

    let notices = || {
        telegram
            .sent_to(USER)
            .into_iter()
            .filter(|m| m.text.starts_with("Herald notice"))
            .map(|m| m.text)
            .collect::<Vec<_>>()
    };
    wait_for("the outage notice", || !notices().is_empty());
    // More failed turns and more time: still one notice.
    let reply = post_message(&url, "s", None, "fail again", "").json();
    assert_eq!(reply["status"], "failed", "{reply}");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let told = notices();
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0].contains("the agent (openai) has been failing"),
        "{told:?}"
    );
    assert!(
        !told[0].contains("overloaded"),
        "no error text in a chat: {told:?}"
    );
    assert!(home.status_json().1["agent"]["notice_sent"].is_string());

    let reset = http(&peer.url, "DELETE", "/config", &[], b"");
    assert!(reset.status < 300);
    assert_eq!(
        post_message(&url, "s", None, "back?", "").json()["status"],
        "done"
    );
    wait_for("the agent to be connected again", || agent_state() == "connected");
    wait_for("the recovery notice", || notices().len() == 2);
    assert_eq!(notices()[1], "Herald notice: The agent (openai) works again.");
    let out = home.output(&["stop", "--timeout", "30"]);
    assert!(out.status.success(), "{}", support::text(&out));
    gateway.wait();
}

/// An endpoint that refuses the key makes the agent `misconfigured`, and only that fails `/readyz`
/// (`agent_unusable`, no Retry-After): the gateway cannot answer anyone until it is fixed. Once the
/// endpoint takes the key again, the gateway's own recheck sees it — no user message needed — and
/// `/readyz` is 200 again.
#[test]
fn a_refused_key_is_misconfigured_fails_readyz_and_the_recheck_sees_it_fixed() {
    let peer = peer();
    let refused =
        serde_json::json!({"error": {"message": "Incorrect API key", "type": "invalid_request_error"}})
            .to_string();
    peer.script(&serde_json::json!({"rules": [
        {"path": "/v1/models", "method": "GET", "match": "@", "response": {"status": 401, "content": refused}},
        {"path": "/v1/chat/completions", "method": "POST", "match": "@",
         "response": {"status": 401, "content": refused}},
    ]}));
    let home = home_with_openai(&peer.url);
    let gateway = home.start(&[]);
    let url = home.http_url();
    let agent_state = || agent_state(&home);
    wait_for("the start-up probe to find the key refused", || {
        agent_state() == "misconfigured"
    });
    let ready = http(&url, "GET", "/readyz", &[], b"");
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.json()["status"], "agent_unusable", "{}", ready.body);
    assert_eq!(ready.json()["agent"], "misconfigured", "{}", ready.body);
    assert!(
        ready.header("retry-after").is_none(),
        "it does not pass by itself"
    );
    // A turn still gets its clear apology (the API itself works).
    let reply = post_message(&url, "k", None, "hello?", "").json();
    assert_eq!(reply["status"], "failed", "{reply}");

    // Fixed: the key is taken again (mock-llm lists no models of its own: the rule does).
    let models = serde_json::json!({"object": "list", "data": [{"id": "m", "object": "model"}]}).to_string();
    peer.script(&serde_json::json!({"rules": [
        {"path": "/v1/models", "method": "GET", "match": "@", "response": {"status": 200, "content": models}},
    ]}));
    // The recheck runs 5 s after the failure, then 10 s later: no message is sent meanwhile.
    let fixed = std::time::Instant::now();
    while agent_state() != "connected" {
        assert!(
            fixed.elapsed() < std::time::Duration::from_secs(40),
            "the recheck did not see the endpoint fixed: {}",
            home.status_json().1
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let ready = http(&url, "GET", "/readyz", &[], b"");
    assert_eq!(ready.status, 200, "{}", ready.body);
    let out = home.output(&["stop", "--timeout", "30"]);
    assert!(out.status.success(), "{}", support::text(&out));
    gateway.wait();
}

/// A streamed completion (mock-llm's streaming mode, slowed down) shows in the Telegram chat as a draft
/// that grows by edits, at most one a second, and ends as the one message holding the whole answer.
#[test]
fn a_streamed_completion_grows_as_one_telegram_draft() {
    const TOKEN: &str = "4444:STREAM-TOKEN";
    const USER: i64 = 42;
    let answer = "Streaming answers arrive piece by piece, and the chat shows them growing in place.";
    let peer = peer();
    let completion = serde_json::json!({
        "id": "c1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": answer}}]});
    let models = serde_json::json!({"object": "list", "data": [{"id": "m", "object": "model"}]});
    peer.script(&serde_json::json!({
        "streaming": {"chunkSize": 8, "chunkIntervalMs": 300},
        "rules": [
            {"path": "/v1/chat/completions", "method": "POST", "match": "@",
             "response": {"status": 200, "content": completion.to_string()}},
            {"path": "/v1/models", "method": "GET", "match": "@",
             "response": {"status": 200, "content": models.to_string()}},
        ]
    }));
    let telegram = bot_api::BotApi::start(TOKEN);
    let home = openai_telegram_home(&peer, &telegram, USER, true);
    let gateway = home.start(&[]);
    telegram.user_says(USER, USER, "tell me about streaming");
    wait_for("a draft", || {
        telegram
            .sent_to(USER)
            .first()
            .is_some_and(|m| !m.text.is_empty() && m.text != answer)
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while telegram.sent_to(USER).first().is_none_or(|m| m.text != answer) {
        assert!(
            std::time::Instant::now() < deadline,
            "no whole answer: {:?} {:?} {:?}",
            telegram.sent_to(USER),
            telegram.edits(),
            home.output(&["logs", "-n", "40"])
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let sent = telegram.sent_to(USER);
    assert_eq!(sent.len(), 1, "one message: {sent:?}");
    let edits = telegram.edits();
    assert!(edits.len() >= 2, "it grew: {edits:?}");
    for pair in edits.windows(2) {
        let gap = pair[1].0.duration_since(pair[0].0);
        assert!(gap >= std::time::Duration::from_millis(900), "{gap:?}: {edits:?}");
    }
    // Every draft was a beginning of the answer.
    assert!(
        edits.iter().all(|(_, _, text)| answer.starts_with(text.as_str())),
        "{edits:?}"
    );
    assert!(home.output(&["stop"]).status.success());
    gateway.wait();
}

/// A photo sent on Telegram reaches the model as an image part of the user's message (the vision format),
/// inline as a `data:` URL: mock-llm answers "saw it" only when the request it received says so.
#[test]
fn a_telegram_photo_reaches_the_model_as_an_image_part() {
    const TOKEN: &str = "4545:PHOTO-TOKEN";
    const USER: i64 = 43;
    let peer = peer();
    let reply = completion;
    // "abc" is "YWJj" in base64. Rules: the last that matches wins.
    let seen = "body.messages[-1].content[0].text == 'what is this?' && \
                body.messages[-1].content[1].type == 'image_url' && \
                body.messages[-1].content[1].image_url.url == 'data:image/jpeg;base64,YWJj'";
    peer.script(&serde_json::json!({"rules": [
        {"path": "/v1/chat/completions", "method": "POST", "match": "@",
         "response": {"status": 200, "content": reply("no picture here")}},
        {"path": "/v1/chat/completions", "method": "POST", "match": seen,
         "response": {"status": 200, "content": reply("saw it")}},
        {"path": "/v1/models", "method": "GET", "match": "@",
         "response": {"status": 200, "content": serde_json::json!({"object": "list", "data": []}).to_string()}},
    ]}));
    let telegram = bot_api::BotApi::start(TOKEN);
    let home = openai_telegram_home(&peer, &telegram, USER, false);
    let gateway = home.start(&[]);
    telegram.user_says(USER, USER, "what is this?");
    wait_for("the text-only answer", || {
        telegram
            .sent_to(USER)
            .first()
            .is_some_and(|m| m.text == "no picture here")
    });
    telegram.user_sends_file(
        USER,
        "photo",
        serde_json::json!({"width": 1, "height": 1}),
        b"abc",
        Some("what is this?"),
    );
    wait_for("the answer to the photo", || telegram.sent_to(USER).len() == 2);
    assert_eq!(telegram.sent_to(USER)[1].text, "saw it");
    assert!(home.output(&["stop"]).status.success());
    gateway.wait();
}

#[test]
fn a_voice_note_is_transcribed_on_the_same_server_and_the_model_reads_the_text() {
    const TOKEN: &str = "4646:VOICE-TOKEN";
    const USER: i64 = 44;
    let peer = peer();
    let reply = completion;
    let models = serde_json::json!({"object": "list", "data": []}).to_string();
    // mock-llm does not parse multipart bodies; the rule checks the request is an upload, and the chat
    // rule checks the transcript became the message.
    let transcription = |status: u16, content: String| {
        serde_json::json!({"path": "/v1/audio/transcriptions", "method": "POST",
            "match": "starts_with(headers.\"content-type\", 'multipart/form-data')",
            "response": {"status": status, "content": content}})
    };
    peer.script(&serde_json::json!({"rules": [
        {"path": "/v1/chat/completions", "method": "POST", "match": "@",
         "response": {"status": 200, "content": reply("heard nothing")}},
        {"path": "/v1/chat/completions", "method": "POST",
         "match": "body.messages[-1].content == 'turn on the lights'",
         "response": {"status": 200, "content": reply("lights on")}},
        transcription(200, serde_json::json!({"text": " turn on the lights "}).to_string()),
        {"path": "/v1/models", "method": "GET", "match": "@", "response": {"status": 200, "content": models}},
    ]}));
    let telegram = bot_api::BotApi::start(TOKEN);
    let home = openai_telegram_home_with(
        &peer,
        &telegram,
        USER,
        false,
        "transcribe_model = \"whisper-1\"\n",
    );
    let gateway = home.start(&[]);
    let voice = serde_json::json!({"duration": 1, "mime_type": "audio/ogg"});
    telegram.user_sends_file(USER, "voice", voice.clone(), b"OggS voice", None);
    wait_for("the answer to the voice note", || {
        !telegram.sent_to(USER).is_empty()
    });
    assert_eq!(telegram.sent_to(USER)[0].text, "lights on");

    // A transcription the server refuses does not fail the turn: the model is told, and answers.
    peer.script(&serde_json::json!({"rules": [
        {"path": "/v1/chat/completions", "method": "POST", "match": "@",
         "response": {"status": 200, "content": reply("heard nothing")}},
        {"path": "/v1/chat/completions", "method": "POST",
         "match": "contains(body.messages[-1].content, 'could not be transcribed: HTTP 500')",
         "response": {"status": 200, "content": reply("told it failed")}},
        transcription(500, serde_json::json!({"error": {"message": "no such model"}}).to_string()),
        {"path": "/v1/models", "method": "GET", "match": "@", "response": {"status": 200, "content": models}},
    ]}));
    telegram.user_sends_file(USER, "voice", voice, b"OggS again", None);
    wait_for("the answer to the second voice note", || {
        telegram.sent_to(USER).len() == 2
    });
    assert_eq!(telegram.sent_to(USER)[1].text, "told it failed");
    assert!(home.output(&["stop"]).status.success());
    gateway.wait();
}

/// A chat completion answering `text`, as mock-llm's rules give it (a JSON string).
fn completion(text: &str) -> String {
    serde_json::json!({
        "id": "c1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": text}}]})
    .to_string()
}

/// A home whose agent is `peer` (OpenAI, streamed or not) and whose Telegram bot is `telegram`, `user`
/// allowed.
fn openai_telegram_home(peer: &Peer, telegram: &bot_api::BotApi, user: i64, stream: bool) -> TestHome {
    openai_telegram_home_with(peer, telegram, user, stream, "")
}

/// As [`openai_telegram_home`], with `openai_keys` added to `[agent.openai]`.
fn openai_telegram_home_with(
    peer: &Peer,
    telegram: &bot_api::BotApi,
    user: i64,
    stream: bool,
    openai_keys: &str,
) -> TestHome {
    let home = TestHome::new();
    home.write(
        "herald.toml",
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\n[agent]\nbackend = \"openai\"\n\n[agent.openai]\n\
             base_url = \"{}/v1\"\nmodel = \"m\"\napi_key_env = \"\"\nstream = {stream}\nmax_retries = 0\n\
             timeout_secs = 30\n{openai_keys}\n[telegram]\nenabled = true\ntoken = \"{}\"\napi_base = \"{}\"\n\
             allowed_users = [{user}]\npoll_timeout_secs = 1\nmin_poll_interval_ms = 100\n",
            peer.url, telegram.token, telegram.url
        )
        .as_bytes(),
    );
    home
}
