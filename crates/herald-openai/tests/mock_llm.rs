//! The OpenAI backend against a real peer: the npm package `@dwmkerr/mock-llm`, an OpenAI-compatible
//! mock server scripted through its `/config` endpoint (rules matched by JMESPath and by request order,
//! any status and body, streamed answers with a chunk size and interval).
//!
//! Each test starts its own server (`node <entry>` with `PORT` and `HOST=127.0.0.1`) and kills it on
//! drop. The entry is `$HERALD_MOCK_LLM`, or `ci/peers/node_modules/@dwmkerr/mock-llm/dist/main.js` as
//! installed by `bash ci/peers/install-mock-llm.sh`; a missing peer fails the test rather than skipping
//! it. When `$HERALD_MOCK_LLM_URL` is set (`http://127.0.0.1:PORT`), the tests use that running server
//! instead, one test at a time: this is how the Windows build, running under Wine where it cannot start
//! the Linux node, tests against the same peer.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use herald_gateway::agent::{Agent, AgentError, HistoryMessage, Role, TurnRequest};
use herald_home::config::OpenAiConfig;
use herald_home::secrets::Variables;
use herald_home::sync::MutexExt;
use herald_openai::OpenAiAgent;
use herald_openai::backoff::{Backoff, Jitter};
use serde_json::{Value, json};
use tokio::time::Instant;

const VERSION: &str = "0.1.29";

/// The default answer: the last message, echoed.
const ECHO: &str = r#"{"id":"chatcmpl-{{timestamp}}","object":"chat.completion","model":"{{jmes request body.model}}","choices":[{"index":0,"message":{"role":"assistant","content":"{{jmes request body.messages[-1].content}}"},"finish_reason":"stop"}]}"#;

/// An answer that shows what was sent: every message as `role: content`, the Authorization header,
/// the model and the stream flag.
const REFLECT: &str = r#"{"choices":[{"message":{"role":"assistant","content":"{{jmes request join(' | ', body.messages[*].join(': ', [role, content]))}} / auth={{jmes request headers.authorization}} / model={{jmes request body.model}} / stream={{jmes request body.stream}}"},"finish_reason":"stop"}]}"#;

/// One mock-llm for one test; the server it started (if any) dies with it.
struct Peer {
    base_url: String,
    child: Option<Child>,
    _log_dir: Option<tempfile::TempDir>,
    _shared: Option<MutexGuard<'static, ()>>,
}

/// Tests that share one running server (`HERALD_MOCK_LLM_URL`) take turns.
static SHARED: Mutex<()> = Mutex::new(());

impl Peer {
    /// A server answering with `rules`, streaming `chunk_size` characters every `interval_ms`.
    async fn start(rules: Vec<Value>, chunk_size: u32, interval_ms: u32) -> Peer {
        let peer = match std::env::var("HERALD_MOCK_LLM_URL") {
            Ok(url) if !url.trim().is_empty() => Peer {
                base_url: url.trim().trim_end_matches('/').to_owned(),
                child: None,
                _log_dir: None,
                _shared: Some(SHARED.lock_unpoisoned()),
            },
            _ => Peer::spawn().await,
        };
        peer.configure(rules, chunk_size, interval_ms).await;
        peer
    }

    /// Replaces the rules (a test holds one `Peer` at a time: a shared server's lock is not reentrant).
    async fn configure(&self, rules: Vec<Value>, chunk_size: u32, interval_ms: u32) {
        let config = json!({
            "streaming": { "chunkSize": chunk_size, "chunkIntervalMs": interval_ms },
            "rules": rules,
        });
        let client = reqwest::Client::new();
        let config_url = format!("{}/config", self.base_url);
        // DELETE resets the request counters that `sequence` rules match on; POST replaces the rules.
        let reset = client.delete(&config_url).send().await.expect("DELETE /config");
        assert!(reset.status().is_success(), "DELETE /config: {}", reset.status());
        let set = client
            .post(&config_url)
            .header("content-type", "application/json")
            .body(config.to_string())
            .send()
            .await
            .expect("POST /config");
        assert!(set.status().is_success(), "POST /config: {}", set.status());
    }

    async fn spawn() -> Peer {
        let entry = entry();
        let log_dir = tempfile::tempdir().expect("temp dir");
        for _ in 0..3 {
            let port = free_port();
            let log = std::fs::File::create(log_dir.path().join("mock-llm.log")).expect("log file");
            let mut command = if entry.ends_with(".js") {
                let mut node = Command::new(std::env::var("HERALD_NODE").unwrap_or_else(|_| "node".into()));
                node.arg(&entry);
                node
            } else {
                Command::new(&entry)
            };
            // Its own empty working directory, so no stray `mock-llm.yaml` is loaded.
            command
                .current_dir(log_dir.path())
                .env("PORT", port.to_string())
                .env("HOST", "127.0.0.1")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log file"))
                .stderr(log);
            let child = command.spawn().unwrap_or_else(|e| {
                panic!(
                    "cannot start mock-llm ({entry}) with node: {e}. Install node, or point \
                     HERALD_MOCK_LLM_URL at a running mock-llm (needed under Wine)"
                )
            });
            let mut peer = Peer {
                base_url: format!("http://127.0.0.1:{port}"),
                child: Some(child),
                _log_dir: None,
                _shared: None,
            };
            if peer.wait_ready().await {
                peer._log_dir = Some(log_dir);
                return peer;
            }
            // Exited early (most likely the port was taken in between): try another port.
        }
        let log = std::fs::read_to_string(log_dir.path().join("mock-llm.log")).unwrap_or_default();
        panic!("mock-llm did not start; its last output:\n{log}");
    }

    /// Polls `/health` until the server answers (true) or its process exits (false).
    async fn wait_ready(&mut self) -> bool {
        let client = reqwest::Client::new();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Some(child) = &mut self.child
                && let Ok(Some(_status)) = child.try_wait()
            {
                return false;
            }
            let health = client.get(format!("{}/health", self.base_url)).send().await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("mock-llm at {} did not answer /health within 30 s", self.base_url);
    }

    fn v1(&self) -> String {
        format!("{}/v1", self.base_url)
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

/// Where mock-llm's entry script is, or a failure saying how to install it.
fn entry() -> String {
    if let Ok(path) = std::env::var("HERALD_MOCK_LLM")
        && !path.trim().is_empty()
    {
        assert!(
            std::path::Path::new(&path).exists(),
            "HERALD_MOCK_LLM={path} does not exist"
        );
        return path;
    }
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = workspace.join("ci/peers/node_modules/@dwmkerr/mock-llm/dist/main.js");
    assert!(
        path.exists(),
        "the mock-llm test peer (@dwmkerr/mock-llm@{VERSION}) is not installed at {}: run \
         `bash ci/peers/install-mock-llm.sh` (or set HERALD_MOCK_LLM to its dist/main.js, or \
         HERALD_MOCK_LLM_URL to a running server)",
        path.display()
    );
    path.to_string_lossy().into_owned()
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

fn rule(content: &str) -> Value {
    json!({ "path": "/v1/chat/completions", "method": "POST", "match": "@",
            "response": { "status": 200, "content": content } })
}

/// An OpenAI-style error answer, for the `sequence`-th request (counting from 0) or for every request.
fn error_rule(status: u16, message: &str, sequence: Option<u32>) -> Value {
    let content = json!({ "error": { "message": message, "type": "test_error", "code": null } }).to_string();
    let mut rule = json!({ "path": "/v1/chat/completions", "method": "POST",
                           "response": { "status": status, "content": content } });
    if let Some(sequence) = sequence {
        rule["sequence"] = json!(sequence);
    }
    rule
}

fn config(base_url: &str, stream: bool) -> OpenAiConfig {
    OpenAiConfig {
        base_url: base_url.into(),
        model: "mock-model".into(),
        api_key_env: "HERALD_TEST_UNSET_KEY_VARIABLE_7d1e".into(),
        system_prompt: None,
        transcribe_model: None,
        stream,
        timeout_secs: 10,
        max_retries: 3,
        history_messages: 50,
    }
}

fn turn(message: &str) -> TurnRequest {
    TurnRequest {
        adapter: "http".into(),
        chat_id: "c1".into(),
        turn_id: 7,
        turn: 1,
        message: message.into(),
        history: vec![],
        attachments: Vec::new(),
    }
}

/// Retries after 20–40 ms instead of 0.25–8 s, so the retry tests are quick.
fn fast_backoff() -> Backoff {
    Backoff {
        base: Duration::from_millis(40),
        max: Duration::from_millis(200),
        jitter: Jitter::Equal,
    }
}

fn fast_agent(config: &OpenAiConfig) -> OpenAiAgent {
    OpenAiAgent::with_api_key(config, None)
        .expect("agent")
        .with_backoff(fast_backoff())
}

#[tokio::test]
async fn answers_without_streaming() {
    let peer = Peer::start(vec![rule(ECHO)], 50, 5).await;
    let agent = fast_agent(&config(&peer.v1(), false));
    assert_eq!(
        agent.reply(&turn("hello from herald")).await,
        Ok("hello from herald".into())
    );
}

#[tokio::test]
async fn assembles_a_streamed_answer() {
    // Three characters per chunk: the answer arrives as many `data:` events.
    let peer = Peer::start(vec![rule(ECHO)], 3, 2).await;
    let agent = fast_agent(&config(&peer.v1(), true));
    let message = "a longer message, streamed back three characters at a time — with ünïcödé ✓";
    assert_eq!(agent.reply(&turn(message)).await, Ok(message.into()));
}

#[tokio::test]
async fn sends_system_prompt_recent_history_and_message() {
    let peer = Peer::start(vec![rule(REFLECT)], 50, 5).await;
    let mut cfg = config(&peer.v1(), false);
    cfg.system_prompt = Some("You are terse".into());
    cfg.history_messages = 2;
    let agent = fast_agent(&cfg);
    let mut request = turn("third question");
    request.history = [
        (Role::User, "first"),
        (Role::Assistant, "reply one"),
        (Role::User, "second"),
    ]
    .into_iter()
    .map(|(role, text)| HistoryMessage {
        role,
        text: text.into(),
    })
    .collect();
    assert_eq!(
        agent.reply(&request).await,
        Ok(
            "system: You are terse | assistant: reply one | user: second | user: third question \
            / auth=null / model=mock-model / stream=false"
                .into()
        )
    );
}

#[tokio::test]
async fn sends_the_key_from_the_environment_and_none_when_not_named() {
    let peer = Peer::start(vec![rule(REFLECT)], 50, 5).await;
    // CARGO_PKG_NAME is set by cargo for the test process (and passed through Wine): a variable that
    // is surely set, read without `set_var`.
    let mut cfg = config(&peer.v1(), false);
    cfg.api_key_env = "CARGO_PKG_NAME".into();
    let expected = match std::env::var("CARGO_PKG_NAME") {
        Ok(key) if !key.is_empty() => format!("Bearer {key}"),
        _ => "null".into(),
    };
    let with_key = OpenAiAgent::new(&cfg, &Variables::environment_only()).expect("agent");
    let answer = with_key.reply(&turn("hi")).await.expect("answer").text;
    assert!(answer.contains(&format!("/ auth={expected} /")), "{answer}");

    let mut anonymous = config(&peer.v1(), true);
    anonymous.api_key_env = String::new();
    let without = OpenAiAgent::new(&anonymous, &Variables::environment_only()).expect("agent");
    let answer = without.reply(&turn("hi")).await.expect("answer").text;
    assert!(
        answer.ends_with("/ auth=null / model=mock-model / stream=true"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_client_error_is_not_retried_and_carries_the_servers_message() {
    // The first request gets 401; a retry would get the echo.
    let peer = Peer::start(
        vec![
            rule(ECHO),
            error_rule(401, "Incorrect API key provided.", Some(0)),
        ],
        50,
        5,
    )
    .await;
    let agent = fast_agent(&config(&peer.v1(), false));
    assert_eq!(
        agent.reply(&turn("hi")).await,
        Err(AgentError::Misconfigured(format!(
            "HTTP 401 Unauthorized from {}/chat/completions: Incorrect API key provided.",
            peer.v1()
        )))
    );
    assert_eq!(agent.reply(&turn("again")).await, Ok("again".into()));
}

#[tokio::test]
async fn server_errors_and_rate_limits_are_retried() {
    let rules = vec![
        rule(ECHO),
        error_rule(500, "The server had an error", Some(0)),
        error_rule(429, "Rate limit reached", Some(1)),
        error_rule(503, "Overloaded", Some(2)),
    ];
    let peer = Peer::start(rules, 50, 5).await;
    let agent = fast_agent(&config(&peer.v1(), false));
    assert_eq!(
        agent.reply(&turn("third time lucky")).await,
        Ok("third time lucky".into())
    );
}

#[tokio::test]
async fn retries_stop_at_max_retries_with_the_last_error() {
    let rules = vec![
        rule(ECHO),
        error_rule(500, "The server had an error", Some(0)),
        error_rule(429, "Rate limit reached", Some(1)),
    ];
    let peer = Peer::start(rules, 50, 5).await;
    let mut cfg = config(&peer.v1(), false);
    cfg.max_retries = 1;
    let agent = fast_agent(&cfg);
    assert_eq!(
        agent.reply(&turn("hi")).await,
        Err(AgentError::Failed(format!(
            "HTTP 429 Too Many Requests from {}/chat/completions: Rate limit reached",
            peer.v1()
        )))
    );

    // No retries at all: the first answer is final.
    peer.configure(vec![rule(ECHO), error_rule(502, "Bad gateway", Some(0))], 50, 5)
        .await;
    let mut cfg = config(&peer.v1(), false);
    cfg.max_retries = 0;
    assert_eq!(
        fast_agent(&cfg).reply(&turn("hi")).await,
        Err(AgentError::Failed(format!(
            "HTTP 502 Bad Gateway from {}/chat/completions: Bad gateway",
            peer.v1()
        )))
    );
}

#[tokio::test]
async fn retries_never_outlast_the_budget() {
    // Every request fails; with the default schedule (0.25–0.5 s, 0.5–1 s, 1–2 s, …) and ten retries
    // allowed, the two-second budget ends it first.
    let peer = Peer::start(vec![error_rule(503, "Overloaded", None)], 50, 5).await;
    let mut cfg = config(&peer.v1(), false);
    cfg.timeout_secs = 2;
    cfg.max_retries = 10;
    let agent = OpenAiAgent::with_api_key(&cfg, None).expect("agent");
    let started = Instant::now();
    let answer = agent.reply(&turn("hi")).await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(2300), "took {elapsed:?}");
    assert!(
        answer
            == Err(AgentError::Failed(format!(
                "HTTP 503 Service Unavailable from {}/chat/completions: Overloaded",
                peer.v1()
            )))
            || answer == Err(AgentError::Timeout(Duration::from_secs(2))),
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_slow_stream_times_out_within_the_budget() {
    // One character every two seconds: the answer would take ten.
    let peer = Peer::start(vec![rule(ECHO)], 1, 2000).await;
    let mut cfg = config(&peer.v1(), true);
    cfg.timeout_secs = 1;
    let agent = fast_agent(&cfg);
    let started = Instant::now();
    assert_eq!(
        agent.reply(&turn("tardy")).await,
        Err(AgentError::Timeout(Duration::from_secs(1)))
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_error_inside_a_stream_is_a_failure() {
    // Streaming, mock-llm sends an error rule's body as a `data:` event of a 200 answer, as OpenAI does
    // for errors that happen mid-stream.
    let peer = Peer::start(
        vec![rule(ECHO), error_rule(500, "The model crashed", Some(0))],
        50,
        5,
    )
    .await;
    let agent = fast_agent(&config(&peer.v1(), true));
    assert_eq!(
        agent.reply(&turn("hi")).await,
        Err(AgentError::Failed(
            "the server reported an error: The model crashed".into()
        ))
    );
}

#[tokio::test]
async fn empty_and_malformed_answers_are_failures() {
    let empty = r#"{"choices":[{"message":{"role":"assistant","content":""},"finish_reason":"stop"}]}"#;
    let peer = Peer::start(vec![rule(empty)], 50, 5).await;
    for stream in [false, true] {
        assert_eq!(
            fast_agent(&config(&peer.v1(), stream)).reply(&turn("hi")).await,
            Err(AgentError::Failed(
                r#"the answer was empty (finish_reason "stop")"#.into()
            )),
            "stream={stream}"
        );
    }
    peer.configure(vec![rule(r#"{"choices":[]}"#)], 50, 5).await;
    assert_eq!(
        fast_agent(&config(&peer.v1(), false)).reply(&turn("hi")).await,
        Err(AgentError::Failed("malformed answer: no choices".into()))
    );
    peer.configure(vec![rule(r#"{"object":"list","data":[]}"#)], 50, 5)
        .await;
    assert_eq!(
        fast_agent(&config(&peer.v1(), false)).reply(&turn("hi")).await,
        Err(AgentError::Failed("malformed answer: no choices".into()))
    );
}

#[tokio::test]
async fn base_url_with_or_without_v1_or_as_the_full_endpoint_works_and_a_wrong_one_is_named() {
    let peer = Peer::start(vec![rule(ECHO)], 50, 5).await;
    for base in [
        peer.base_url.clone(),
        format!("{}/", peer.base_url),
        peer.v1(),
        format!("{}/", peer.v1()),
        format!("{}/chat/completions", peer.v1()),
    ] {
        let agent = fast_agent(&config(&base, false));
        assert_eq!(agent.reply(&turn("hi")).await, Ok("hi".into()), "{base}");
    }
    // Another path: mock-llm has no rule for it; the 404 names the URL and asks about /v1.
    let agent = fast_agent(&config(&format!("{}/api", peer.base_url), false));
    let Err(AgentError::Failed(message)) = agent.reply(&turn("hi")).await else {
        panic!("expected a failure");
    };
    assert!(
        message.starts_with(&format!(
            "HTTP 404 Not Found from {}/api/chat/completions: ",
            peer.base_url
        )),
        "{message}"
    );
    assert!(message.contains("end in /v1"), "{message}");
}

#[tokio::test]
async fn many_turns_at_once_each_get_their_own_answer() {
    let peer = Peer::start(vec![rule(ECHO)], 4, 2).await;
    let agent = Arc::new(fast_agent(&config(&peer.v1(), true)));
    let mut turns = tokio::task::JoinSet::new();
    for i in 0..8 {
        let agent = Arc::clone(&agent);
        turns.spawn(async move { (i, agent.reply(&turn(&format!("message number {i}"))).await) });
    }
    let mut answered = 0;
    while let Some(joined) = turns.join_next().await {
        let (i, answer) = joined.expect("turn task");
        assert_eq!(answer, Ok(format!("message number {i}").into()));
        answered += 1;
    }
    assert_eq!(answered, 8);
}

#[tokio::test]
async fn connection_refused_is_unavailable_after_the_retries() {
    // A port nobody listens on (no peer needed).
    let port = free_port();
    let mut cfg = config(&format!("http://127.0.0.1:{port}/v1"), false);
    cfg.max_retries = 2;
    let agent = fast_agent(&cfg);
    let started = Instant::now();
    match agent.reply(&turn("hi")).await {
        Err(AgentError::Unavailable(why)) => {
            assert!(
                why.starts_with(&format!(
                    "cannot connect to http://127.0.0.1:{port}/v1/chat/completions: "
                )),
                "{why}"
            );
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}
