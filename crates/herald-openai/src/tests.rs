//! Unit tests of the agent itself: construction, the messages it sends, redaction, and the cases the
//! mock-llm peer cannot produce (a `Retry-After` header, odd SSE framing, a stream that never ends),
//! against a scripted HTTP/1.1 server on the loopback interface.

use std::time::Duration;

use herald_gateway::agent::{Agent, AgentError, HistoryMessage, Role, TurnRequest};
use herald_home::config::OpenAiConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;

use super::*;
use crate::backoff::Jitter;

const KEY: &str = "sk-test-4f1c9a7e";

fn config(base_url: &str) -> OpenAiConfig {
    OpenAiConfig {
        base_url: base_url.into(),
        model: "test-model".into(),
        api_key_env: "HERALD_TEST_UNSET_KEY_VARIABLE_7d1e".into(),
        system_prompt: None,
        transcribe_model: None,
        stream: false,
        timeout_secs: 5,
        max_retries: 2,
        history_messages: 50,
    }
}

fn turn(message: &str, history: &[(Role, &str)]) -> TurnRequest {
    TurnRequest {
        adapter: "http".into(),
        chat_id: "c".into(),
        turn_id: 1,
        turn: 1,
        message: message.into(),
        history: history
            .iter()
            .map(|&(role, text)| HistoryMessage {
                role,
                text: text.into(),
            })
            .collect(),
        attachments: Vec::new(),
    }
}

fn fast() -> Backoff {
    Backoff {
        base: Duration::from_millis(20),
        max: Duration::from_millis(100),
        jitter: Jitter::Equal,
    }
}

#[test]
fn endpoint_is_base_plus_chat_completions() {
    for (base, expected) in [
        (
            "https://api.openai.com/v1",
            "https://api.openai.com/v1/chat/completions",
        ),
        (
            "http://127.0.0.1:8080/v1/",
            "http://127.0.0.1:8080/v1/chat/completions",
        ),
        (
            " http://localhost:11434/v1 ",
            "http://localhost:11434/v1/chat/completions",
        ),
        // A bare server: the usual API base, /v1.
        (
            "https://api.openai.com",
            "https://api.openai.com/v1/chat/completions",
        ),
        (
            "https://api.openai.com/",
            "https://api.openai.com/v1/chat/completions",
        ),
        // The full endpoint: used as it is.
        (
            "https://api.openai.com/v1/chat/completions",
            "https://api.openai.com/v1/chat/completions",
        ),
        (
            "https://api.openai.com/v1/chat/completions/",
            "https://api.openai.com/v1/chat/completions",
        ),
        (
            "http://proxy:8000/chat/completions",
            "http://proxy:8000/chat/completions",
        ),
        // Another API base: as given.
        (
            "https://openrouter.ai/api/v1",
            "https://openrouter.ai/api/v1/chat/completions",
        ),
    ] {
        let agent = OpenAiAgent::with_api_key(&config(base), None).expect(base);
        assert_eq!(agent.endpoint().as_str(), expected);
    }
}

#[test]
fn bad_base_urls_and_models_are_refused() {
    for base in [
        "",
        "api.openai.com/v1",
        "ftp://host/v1",
        "file:///v1",
        "http://host/v1?x=1",
        "http:// /v1",
    ] {
        let error = OpenAiAgent::with_api_key(&config(base), None).expect_err(base);
        assert!(
            matches!(error, OpenAiError::InvalidBaseUrl { .. }),
            "{base}: {error}"
        );
    }
    let mut no_model = config("http://localhost/v1");
    no_model.model = " ".into();
    assert!(matches!(
        OpenAiAgent::with_api_key(&no_model, None),
        Err(OpenAiError::EmptyModel)
    ));
}

#[test]
fn the_key_is_not_in_debug_output_or_errors() {
    let agent = OpenAiAgent::with_api_key(&config("http://localhost/v1"), Some(KEY.into())).expect("agent");
    let debug = format!("{agent:?}");
    assert!(!debug.contains(KEY), "{debug}");
    assert!(debug.contains("ApiKey(<redacted>)"), "{debug}");
    assert_eq!(agent.redact(&format!("bad key {KEY}!")), "bad key <redacted>!");

    let bad = format!("{KEY}\nInjected: header");
    let error = OpenAiAgent::with_api_key(&config("http://localhost/v1"), Some(bad)).expect_err("newline");
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(KEY), "{shown}");
    assert!(matches!(error, OpenAiError::InvalidApiKey { .. }));
}

#[test]
fn a_named_key_that_is_nowhere_is_an_error_naming_the_variable() {
    let error =
        OpenAiAgent::new(&config("http://localhost/v1"), &Variables::environment_only()).expect_err("no key");
    assert!(matches!(error, OpenAiError::MissingApiKey { .. }));
    let text = error.to_string();
    assert!(text.contains("HERALD_TEST_UNSET_KEY_VARIABLE_7d1e"), "{text}");
    assert!(text.contains("herald secret set"), "{text}");
}

#[test]
fn an_empty_key_variable_sends_no_authorization() {
    let agent = OpenAiAgent::with_api_key(&config("http://localhost/v1"), Some("  ".into())).expect("agent");
    assert!(agent.authorization.is_none());
    let mut anonymous = config("http://localhost/v1");
    anonymous.api_key_env = String::new();
    let agent = OpenAiAgent::new(&anonymous, &Variables::environment_only()).expect("agent");
    assert!(agent.authorization.is_none());
    assert!(agent.wants_history());
    assert_eq!(agent.name(), "openai");
}

#[test]
fn messages_are_system_then_recent_history_then_user() {
    let mut cfg = config("http://localhost/v1");
    cfg.system_prompt = Some("be brief".into());
    cfg.history_messages = 2;
    let agent = OpenAiAgent::with_api_key(&cfg, None).expect("agent");
    let request = turn(
        "now",
        &[
            (Role::User, "one"),
            (Role::Assistant, "two"),
            (Role::User, "three"),
        ],
    );
    let sent: Vec<(&str, &str)> = agent
        .messages(&request, &request.message, &[])
        .iter()
        .map(|m| match m.content {
            Content::Text(text) => (m.role, text),
            Content::Parts(_) => (m.role, "parts"),
        })
        .collect();
    assert_eq!(
        sent,
        [
            ("system", "be brief"),
            ("assistant", "two"),
            ("user", "three"),
            ("user", "now")
        ]
    );

    cfg.system_prompt = Some(String::new());
    cfg.history_messages = 0;
    let agent = OpenAiAgent::with_api_key(&cfg, None).expect("agent");
    let sent: Vec<(&str, &str)> = agent
        .messages(&request, &request.message, &[])
        .iter()
        .map(|m| match m.content {
            Content::Text(text) => (m.role, text),
            Content::Parts(_) => (m.role, "parts"),
        })
        .collect();
    assert_eq!(sent, [("user", "now")]);
}

/// What the scripted server does with one connection.
enum Reply {
    /// Write these pieces, pausing between them, then close.
    Pieces(Vec<&'static str>, Duration),
}

/// A loopback HTTP/1.1 server that answers the n-th connection with the n-th reply, and returns the
/// requests it read (head and body).
async fn scripted(replies: Vec<Reply>) -> (String, tokio::task::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}/v1", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let mut requests = Vec::new();
        for Reply::Pieces(pieces, pause) in replies {
            let Ok((mut socket, _)) = listener.accept().await else {
                break;
            };
            requests.push(read_request(&mut socket).await);
            for piece in pieces {
                if socket.write_all(piece.as_bytes()).await.is_err() {
                    break;
                }
                let _ = socket.flush().await;
                tokio::time::sleep(pause).await;
            }
            let _ = socket.shutdown().await;
        }
        requests
    });
    (base, task)
}

async fn read_request(socket: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = socket.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                break;
            }
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn json_reply(status: &str, extra_headers: &str, body: &'static str) -> Reply {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{extra_headers}content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    Reply::Pieces(vec![head.leak(), body], Duration::ZERO)
}

const OK_BODY: &str =
    r#"{"choices":[{"message":{"role":"assistant","content":"fine"},"finish_reason":"stop"}]}"#;
const RATE_LIMITED: &str = r#"{"error":{"message":"Rate limit reached","type":"requests"}}"#;

#[tokio::test]
async fn retry_after_is_honoured() {
    let (base, server) = scripted(vec![
        json_reply("429 Too Many Requests", "retry-after: 1\r\n", RATE_LIMITED),
        json_reply("200 OK", "", OK_BODY),
    ])
    .await;
    let agent = OpenAiAgent::with_api_key(&config(&base), Some(KEY.into()))
        .expect("agent")
        .with_backoff(fast());
    let started = Instant::now();
    let answer = agent.reply(&turn("hi", &[])).await;
    let elapsed = started.elapsed();
    assert_eq!(answer, Ok("fine".into()));
    assert!(
        elapsed >= Duration::from_secs(1),
        "retried after {elapsed:?}, before Retry-After"
    );
    let requests = server.await.expect("server");
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert!(
            request.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request
                .to_ascii_lowercase()
                .contains(&format!("authorization: bearer {KEY}").to_ascii_lowercase())
        );
        assert!(
            request.contains(r#""messages":[{"role":"user","content":"hi"}],"stream":false"#),
            "{request}"
        );
    }
}

#[tokio::test]
async fn retry_after_beyond_the_budget_fails_at_once_with_the_servers_message() {
    let (base, _server) = scripted(vec![json_reply(
        "429 Too Many Requests",
        "retry-after: 30\r\n",
        RATE_LIMITED,
    )])
    .await;
    let mut cfg = config(&base);
    cfg.timeout_secs = 3;
    let agent = OpenAiAgent::with_api_key(&cfg, None).expect("agent");
    let started = Instant::now();
    let answer = agent.reply(&turn("hi", &[])).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(
        answer,
        Err(AgentError::Failed(format!(
            "HTTP 429 Too Many Requests from {base}/chat/completions: Rate limit reached"
        )))
    );
}

#[tokio::test]
async fn odd_sse_framing_is_reassembled() {
    let head =
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\nconnection: close\r\n\r\n";
    let pieces = vec![
        head,
        ": keep-alive\r\n\r\n",
        "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"Hé",
        "llo\"}}]}\r",
        "\n\r\nevent: message\r\ndata: {\"choices\":[{\"delta\":{\"content\":\", wor\"}}]}\n\n:\n\ndata: {\"choi",
        "ces\":[{\"delta\":{\"content\":\"ld ✓\"},\"finish_reason\":\"stop\"}]}\r\rdata: [DO",
        "NE]\n\n",
    ];
    let (base, _server) = scripted(vec![Reply::Pieces(pieces, Duration::from_millis(10))]).await;
    let mut cfg = config(&base);
    cfg.stream = true;
    let agent = OpenAiAgent::with_api_key(&cfg, None).expect("agent");
    assert_eq!(agent.reply(&turn("hi", &[])).await, Ok("Héllo, world ✓".into()));
}

#[tokio::test]
async fn a_stream_cut_short_is_a_failure() {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
    let pieces = vec![
        head,
        "data: {\"choices\":[{\"delta\":{\"content\":\"half an ans\"}}]}\n\n",
    ];
    let (base, _server) = scripted(vec![Reply::Pieces(pieces, Duration::ZERO)]).await;
    let mut cfg = config(&base);
    cfg.stream = true;
    let agent = OpenAiAgent::with_api_key(&cfg, None).expect("agent");
    assert_eq!(
        agent.reply(&turn("hi", &[])).await,
        Err(AgentError::Failed(
            "the stream ended before the answer was complete".into()
        ))
    );
}

#[tokio::test]
async fn an_endless_stream_of_keepalives_times_out() {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
    let mut pieces = vec![head];
    pieces.extend(std::iter::repeat_n(": keep-alive\n\n", 100));
    let (base, _server) = scripted(vec![Reply::Pieces(pieces, Duration::from_millis(50))]).await;
    let mut cfg = config(&base);
    cfg.stream = true;
    cfg.timeout_secs = 1;
    let agent = OpenAiAgent::with_api_key(&cfg, None).expect("agent");
    let started = Instant::now();
    assert_eq!(
        agent.reply(&turn("hi", &[])).await,
        Err(AgentError::Timeout(Duration::from_secs(1)))
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_server_error_message_never_carries_the_key() {
    let body = r#"{"error":{"message":"key sk-test-4f1c9a7e is revoked"}}"#;
    let (base, _server) = scripted(vec![json_reply("401 Unauthorized", "", body)]).await;
    let agent = OpenAiAgent::with_api_key(&config(&base), Some(KEY.into())).expect("agent");
    assert_eq!(
        agent.reply(&turn("hi", &[])).await,
        Err(AgentError::Misconfigured(format!(
            "HTTP 401 Unauthorized from {base}/chat/completions: key <redacted> is revoked"
        )))
    );
}

#[tokio::test]
async fn a_404_names_the_url_and_hints_at_the_base_url() {
    let body = r#"{"error":{"message":"not found"}}"#;
    let (v1, _server) = scripted(vec![json_reply("404 Not Found", "", body)]).await;
    // A base under another path than /v1: the hint asks about /v1.
    let base = v1.replace("/v1", "/api");
    let agent = OpenAiAgent::with_api_key(&config(&base), Some(KEY.into())).expect("agent");
    let Err(AgentError::Failed(message)) = agent.reply(&turn("hi", &[])).await else {
        panic!("expected a failure");
    };
    assert!(
        message.starts_with(&format!(
            "HTTP 404 Not Found from {base}/chat/completions: not found ("
        )),
        "{message}"
    );
    assert!(message.contains("end in /v1"), "{message}");
    assert!(!message.contains(KEY), "{message}");
}

#[tokio::test]
async fn a_refused_connection_names_the_url_without_credentials() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let mut cfg = config(&format!("http://user:hunter2@127.0.0.1:{port}/v1"));
    cfg.max_retries = 0;
    let agent = OpenAiAgent::with_api_key(&cfg, Some(KEY.into())).expect("agent");
    let Err(AgentError::Unavailable(why)) = agent.reply(&turn("hi", &[])).await else {
        panic!("expected unavailable");
    };
    assert!(
        why.starts_with(&format!(
            "cannot connect to http://127.0.0.1:{port}/v1/chat/completions: "
        )),
        "{why}"
    );
    assert!(!why.contains("hunter2") && !why.contains(KEY), "{why}");
}
