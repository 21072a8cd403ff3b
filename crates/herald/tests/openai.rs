//! The `openai` backend through the whole gateway: HTTP in, the real mock-llm server (npm
//! `@dwmkerr/mock-llm`) as the OpenAI-compatible agent, the reply stored and returned. The backend's
//! own edge cases (retries, streaming framing, timeouts) are tested in `herald-openai`.
//!
//! The peer is started here (`node $HERALD_MOCK_LLM`, default `ci/peers/node_modules/...`), or, when
//! `HERALD_MOCK_LLM_URL` names a running one (under Wine, where a Windows test cannot start node), used
//! as it is after resetting its rules.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use support::{TestHome, http, post_message, wait_for};

struct Peer {
    url: String,
    child: Option<Child>,
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
        let reset = http(&url, "DELETE", "/config", &[], b"");
        assert!(
            reset.status < 300,
            "cannot reset mock-llm at {url}: {}",
            reset.status
        );
        return Peer { url, child: None };
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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cwd = tempfile::tempdir().unwrap();
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
    let url = format!("http://127.0.0.1:{port}");
    let peer = Peer {
        url: url.clone(),
        child: Some(child),
    };
    wait_for("mock-llm to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    peer
}

fn home_with_openai(base_url: &str) -> TestHome {
    let home = TestHome::new();
    home.write(
        "herald.toml",
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\n[agent]\nbackend = \"openai\"\n\n[agent.openai]\n\
             base_url = \"{base_url}/v1\"\nmodel = \"test-model\"\napi_key_env = \"HERALD_TEST_NO_SUCH_KEY\"\n\
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
