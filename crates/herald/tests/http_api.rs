//! The HTTP API end to end: the real binary, a real socket, the real journal file.

mod support;

use support::{TestHome, http, post_message, text, wait_for};

#[test]
fn a_message_is_answered_stored_and_listed() {
    let home = TestHome::new();
    let gateway = home.start(&["--no-supervise"]);
    let url = home.http_url();

    let health = http(&url, "GET", "/healthz", &[], b"");
    assert_eq!(health.status, 200, "{}", health.body);
    let ready = http(&url, "GET", "/readyz", &[], b"");
    assert_eq!(
        (ready.status, ready.json()["status"].as_str()),
        (200, Some("ready"))
    );

    let reply = post_message(&url, "alice", Some("m-1"), "hello, world", "");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let json = reply.json();
    assert_eq!(json["id"], "m-1");
    assert_eq!(json["status"], "done");
    assert_eq!(json["reply"]["text"], "echo: hello, world");

    // Without an id the gateway makes one, and it is usable to retry.
    let anonymous = post_message(&url, "alice", None, "second", "").json();
    let made_up = anonymous["id"].as_str().unwrap().to_owned();
    let retried = post_message(&url, "alice", Some(&made_up), "second", "").json();
    assert_eq!(retried["reply"]["text"], "echo: second");

    let history = http(&url, "GET", "/v1/sessions/alice/messages", &[], b"").json();
    let messages = history["messages"].as_array().unwrap();
    let summary: Vec<_> = messages
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap(),
                m["text"].as_str().unwrap(),
                m["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("user", "hello, world", "done"),
            ("assistant", "echo: hello, world", "done"),
            ("user", "second", "done"),
            ("assistant", "echo: second", "done"),
        ]
    );
    let limited = http(&url, "GET", "/v1/sessions/alice/messages?limit=1", &[], b"").json();
    assert_eq!(limited["messages"].as_array().unwrap().len(), 1);

    post_message(&url, "bob", None, "hi", "");
    let sessions = http(&url, "GET", "/v1/sessions", &[], b"").json();
    let names: Vec<_> = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["session"].as_str().unwrap(), s["messages"].as_u64().unwrap()))
        .collect();
    assert_eq!(names, [("bob", 2), ("alice", 4)]);

    let (_, status) = home.status_json();
    assert_eq!(status["http_url"], url.as_str());

    // The conversation outlives the process.
    assert_eq!(home.output(&["stop"]).status.code(), Some(0));
    drop(gateway);
    let _gateway = home.start(&["--no-supervise"]);
    let url = home.http_url();
    let again = http(&url, "GET", "/v1/sessions/alice/messages", &[], b"").json();
    assert_eq!(again["messages"].as_array().unwrap().len(), 4);
}

#[test]
fn the_same_id_never_makes_a_second_turn() {
    let home = TestHome::new();
    let _gateway = home.start(&["--no-supervise"]);
    let url = home.http_url();
    for _ in 0..3 {
        let reply = post_message(&url, "s", Some("same"), "once", "");
        assert_eq!(
            (reply.status, reply.json()["reply"]["text"].as_str()),
            (200, Some("echo: once"))
        );
    }
    let conflict = post_message(&url, "s", Some("same"), "a different text", "");
    assert_eq!(conflict.status, 409, "{}", conflict.body);
    assert_eq!(conflict.json()["error"], "id_conflict");
    // The same id in another session is another message.
    assert_eq!(post_message(&url, "t", Some("same"), "other", "").status, 200);

    let history = http(&url, "GET", "/v1/sessions/s/messages", &[], b"").json();
    assert_eq!(history["messages"].as_array().unwrap().len(), 2, "{history}");
}

#[test]
fn wait_false_returns_once_stored_and_the_reply_follows() {
    let home = TestHome::new();
    let _gateway = home.start(&["--no-supervise"]);
    let url = home.http_url();
    let accepted = post_message(&url, "later", Some("q"), "in a while", "?wait=false");
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    assert_eq!(accepted.json()["id"], "q");
    wait_for("the reply to be stored", || {
        let history = http(&url, "GET", "/v1/sessions/later/messages", &[], b"").json();
        history["messages"].as_array().unwrap().len() == 2
    });
}

#[test]
fn client_mistakes_get_clear_json_errors() {
    let home = TestHome::new();
    home.write(
        "herald.toml",
        b"[http]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 1024\n",
    );
    let gateway = home.start(&["--no-supervise"]);
    let url = home.http_url();
    let json = [("Content-Type", "application/json")];
    let path = "/v1/sessions/alice/messages";
    let big = serde_json::json!({"text": "x".repeat(4096)}).to_string();
    // (name, method, path, headers, body, expected status, expected error code)
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a [(&'a str, &'a str)],
        Vec<u8>,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "a path that is not UTF-8",
            "GET",
            "/v1/sessions/%FF/messages",
            &[],
            Vec::new(),
            400,
            "invalid_session",
        ),
        (
            "bad json",
            "POST",
            path,
            &json,
            b"{not json".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "missing text",
            "POST",
            path,
            &json,
            br#"{"id": "x"}"#.to_vec(),
            400,
            "invalid_json",
        ),
        (
            "unknown field",
            "POST",
            path,
            &json,
            br#"{"text": "a", "txet": 1}"#.to_vec(),
            400,
            "invalid_json",
        ),
        (
            "wrong type",
            "POST",
            path,
            &json,
            br#"{"text": 5}"#.to_vec(),
            400,
            "invalid_json",
        ),
        (
            "empty text",
            "POST",
            path,
            &json,
            br#"{"text": "  "}"#.to_vec(),
            400,
            "invalid_message",
        ),
        (
            "empty id",
            "POST",
            path,
            &json,
            br#"{"text": "a", "id": ""}"#.to_vec(),
            400,
            "invalid_message",
        ),
        (
            "non-utf8",
            "POST",
            path,
            &json,
            b"{\"text\": \"\xff\xfe\"}".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "oversize",
            "POST",
            path,
            &json,
            big.into_bytes(),
            413,
            "body_too_large",
        ),
        (
            "bad session",
            "POST",
            "/v1/sessions/a%20b/messages",
            &json,
            br#"{"text": "a"}"#.to_vec(),
            400,
            "invalid_session",
        ),
        (
            "bad wait",
            "POST",
            "/v1/sessions/a/messages?wait=maybe",
            &json,
            br#"{"text": "a"}"#.to_vec(),
            400,
            "invalid_query",
        ),
        (
            "bad limit",
            "GET",
            "/v1/sessions/a/messages?limit=0",
            &[],
            Vec::new(),
            400,
            "invalid_query",
        ),
        (
            "huge limit",
            "GET",
            "/v1/sessions?limit=100000",
            &[],
            Vec::new(),
            400,
            "invalid_query",
        ),
        (
            "unknown route",
            "GET",
            "/v2/everything",
            &[],
            Vec::new(),
            404,
            "not_found",
        ),
        (
            "wrong method",
            "DELETE",
            path,
            &[],
            Vec::new(),
            405,
            "method_not_allowed",
        ),
    ];
    for (name, method, path, headers, body, status, code) in cases {
        let response = http(&url, method, path, headers, &body);
        assert_eq!(response.status, status, "{name}: {}", response.body);
        assert_eq!(response.json()["error"], code, "{name}: {}", response.body);
        if status == 413 {
            // The limit is named, with the key that sets it.
            assert!(
                response.body.contains("bytes ([http] max_body_bytes)"),
                "{name}: {}",
                response.body
            );
        }
        assert!(
            response.json()["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{name}"
        );
    }
    // Still serving, nothing stored by any of that, and no crash.
    assert_eq!(post_message(&url, "alice", None, "still here", "").status, 200);
    let history = http(&url, "GET", path, &[], b"").json();
    assert_eq!(history["messages"].as_array().unwrap().len(), 2);
    assert_eq!(home.output(&["stop"]).status.code(), Some(0));
    let (code, output) = gateway.wait();
    assert_eq!(code, Some(0), "{output}");
    assert!(!home.event_names().contains(&"panic".to_owned()));
}

#[test]
fn an_exposed_listener_without_a_token_is_refused_at_startup() {
    let home = TestHome::new();
    home.write(
        "herald.toml",
        b"[gateway]\ndrain_timeout_secs = 5\n\n[http]\nlisten = \"0.0.0.0:0\"\n",
    );
    let out = home.output(&["run", "--no-supervise"]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let message = text(&out);
    assert!(message.contains("herald.toml:5:1: http.listen"), "{message}");
    assert!(message.contains("token"), "{message}");
    let check = home.output(&["config", "check"]);
    assert_eq!(check.status.code(), Some(78), "{}", text(&check));
}

#[test]
fn a_token_guards_the_api_but_not_the_probes() {
    let home = TestHome::new();
    let token = "correct-horse-battery-staple";
    home.write(
        "herald.toml",
        format!("[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"{token}\"\n").as_bytes(),
    );
    let _gateway = home.start(&["--no-supervise"]);
    let url = home.http_url();
    let body = br#"{"text": "secret"}"#;
    let path = "/v1/sessions/a/messages";
    let json = ("Content-Type", "application/json");
    let none = http(&url, "POST", path, &[json], body);
    assert_eq!(
        (none.status, none.json()["error"].as_str()),
        (401, Some("unauthorized"))
    );
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    let wrong = http(
        &url,
        "POST",
        path,
        &[json, ("Authorization", "Bearer correct-horse-battery-stapler")],
        body,
    );
    assert_eq!(wrong.status, 401);
    let listing = http(&url, "GET", "/v1/sessions", &[], b"");
    assert_eq!(listing.status, 401);
    let bearer = format!("Bearer {token}");
    let right = http(&url, "POST", path, &[json, ("Authorization", &bearer)], body);
    assert_eq!(right.status, 200, "{}", right.body);
    assert_eq!(http(&url, "GET", "/healthz", &[], b"").status, 200);
    assert_eq!(http(&url, "GET", "/readyz", &[], b"").status, 200);

    // `herald chat` reads the token from the same config.
    let chat = home.output(&["chat", "--session", "a", "hi", "there"]);
    assert_eq!(chat.status.code(), Some(0), "{}", text(&chat));
    assert_eq!(String::from_utf8_lossy(&chat.stdout).trim(), "echo: hi there");
    // The token is never logged.
    let logs = std::fs::read_to_string(home.home().lifecycle_log()).unwrap();
    assert!(!logs.contains(token));
}

#[test]
fn a_port_in_use_is_a_clear_startup_failure() {
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = blocker.local_addr().unwrap().port();
    let home = TestHome::new();
    home.write(
        "herald.toml",
        format!("[http]\nlisten = \"127.0.0.1:{port}\"\n").as_bytes(),
    );
    let out = home.output(&["run", "--no-supervise"]);
    // Fatal, not a failure to retry: a restart cannot free the port.
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("[http] listen 127.0.0.1:{port} is already in use")),
        "{}",
        text(&out)
    );
    // Where the OS tells, the holder is named (here: this test process).
    if cfg!(target_os = "linux") {
        assert!(
            text(&out).contains(&format!("(pid {})", std::process::id())),
            "{}",
            text(&out)
        );
    }
    assert_eq!(
        home.state().unwrap().state,
        herald_home::records::GatewayState::StartupFailed
    );
}

#[test]
fn chat_without_a_gateway_says_how_to_start_one() {
    let home = TestHome::new();
    let out = home.output(&["chat", "hello"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("herald start"), "{}", text(&out));
}

#[test]
fn chat_reads_messages_from_standard_input() {
    let home = TestHome::new();
    let _gateway = home.start(&[]);
    let mut child = home
        .cmd(&["chat", "-s", "piped"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all("first\n\nsecond ✓\n".as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "echo: first\necho: second ✓\n"
    );
}

#[test]
fn a_corrupt_journal_is_moved_aside_and_the_gateway_serves() {
    let home = TestHome::new();
    home.write("state.db", &b"garbage, not SQLite ".repeat(500));
    let _gateway = home.start(&["--no-supervise"]);
    let url = home.http_url();
    assert_eq!(post_message(&url, "s", None, "works", "").status, 200);
    let event = home
        .events()
        .into_iter()
        .find(|e| e.event == "journal")
        .expect("a journal event");
    assert_eq!(
        event.field("action").and_then(|v| v.as_str()),
        Some("moved_aside")
    );
    let moved = event
        .field("moved_to")
        .and_then(|v| v.as_str())
        .unwrap()
        .to_owned();
    assert!(std::fs::read(&moved).unwrap().starts_with(b"garbage, not SQLite"));
}

#[test]
fn a_journal_from_a_newer_herald_is_refused_and_kept() {
    let home = TestHome::new();
    {
        let _gateway = home.start(&["--no-supervise"]);
        assert_eq!(home.output(&["stop"]).status.code(), Some(0));
    }
    // Bump the schema version the way a future herald would.
    let path = home.home().journal_file();
    let mut bytes = std::fs::read(&path).unwrap();
    // SQLite header: user_version is the big-endian u32 at offset 60.
    bytes[60..64].copy_from_slice(&99u32.to_be_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let out = home.output(&["run", "--no-supervise"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("newer than this herald"), "{}", text(&out));
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

/// Requests hyper refuses before any handler runs (a malformed request line or header, a target or a
/// head too large) still get a JSON body naming the error, like every other 4xx.
#[test]
fn requests_hyper_cannot_parse_get_json_errors_too() {
    let home = TestHome::new();
    home.write("herald.toml", b"[http]\nlisten = \"127.0.0.1:0\"\n");
    let _gateway = home.start(&["--no-supervise"]);
    let url = home.http_url();
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "a".repeat(70_000));
    let large_head = format!(
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(300_000)
    );
    for (what, request, status, code) in [
        ("garbage", "GARBAGE\r\n\r\n".to_owned(), 400, "bad_request"),
        (
            "a header without a colon",
            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n".to_owned(),
            400,
            "bad_request",
        ),
        ("a long target", long_target, 414, "uri_too_long"),
        ("a large head", large_head, 431, "header_too_large"),
    ] {
        let (got, json) = raw_exchange(&url, &request);
        assert_eq!(got, status, "{what}: {json}");
        assert_eq!(json["error"], code, "{what}: {json}");
        assert!(json["message"].is_string(), "{what}: {json}");
    }
    // The gateway is unharmed.
    assert_eq!(http(&url, "GET", "/healthz", &[], b"").status, 200);
}

/// Sends `request` as it is (a browser's headers, not the test client's) and returns the status and body.
fn raw_exchange(url: &str, request: &str) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let authority = url.strip_prefix("http://").unwrap();
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    // The server may answer and close before it has read a large request: the answer is what counts.
    let _ = stream.write_all(request.as_bytes());
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// The reviewer's two requests: a cross-site page posting `text/plain` to the tokenless loopback API (no
/// preflight needed), and a DNS-rebinding page reading the conversations. Both are refused with JSON, no
/// turn runs, and the gateway's own clients still work.
#[test]
fn no_web_page_can_drive_the_agent_or_read_the_conversations() {
    let home = TestHome::new();
    home.write("herald.toml", b"[http]\nlisten = \"127.0.0.1:0\"\n");
    let gateway = home.start(&["--no-supervise"]);
    let url = home.http_url();
    let port = url.rsplit(':').next().unwrap().to_owned();
    let body = r#"{"text":"run something"}"#;
    let cross_site = format!(
        "POST /v1/sessions/web/messages HTTP/1.1\r\nHost: evil.example:{port}\r\nOrigin: https://evil.example\r\n\
         Content-Type: text/plain;charset=UTF-8\r\nSec-Fetch-Site: cross-site\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, json) = raw_exchange(&url, &cross_site);
    assert_eq!(status, 403, "{json}");
    assert_eq!(json["error"], "forbidden_host", "{json}");
    // The same page posting to 127.0.0.1 directly: the Host is fine, the Origin is not.
    let direct = cross_site.replace(
        &format!("Host: evil.example:{port}"),
        &format!("Host: 127.0.0.1:{port}"),
    );
    let (status, json) = raw_exchange(&url, &direct);
    assert_eq!(
        (status, json["error"].as_str()),
        (403, Some("cross_origin")),
        "{json}"
    );
    // A simple form post from no page at all is still not JSON.
    let plain = format!(
        "POST /v1/sessions/web/messages HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: text/plain\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, json) = raw_exchange(&url, &plain);
    assert_eq!(
        (status, json["error"].as_str()),
        (415, Some("unsupported_media_type")),
        "{json}"
    );
    // Rebinding: the attacker's name resolving to 127.0.0.1, reading same-origin.
    let rebind =
        format!("GET /v1/sessions HTTP/1.1\r\nHost: rebind.evil.example:{port}\r\nConnection: close\r\n\r\n");
    let (status, json) = raw_exchange(&url, &rebind);
    assert_eq!(
        (status, json["error"].as_str()),
        (403, Some("forbidden_host")),
        "{json}"
    );
    // Nothing of it reached the journal; the gateway's own clients go on.
    let sessions = http(&url, "GET", "/v1/sessions", &[], b"").json();
    assert_eq!(
        sessions["sessions"].as_array().map(Vec::len),
        Some(0),
        "{sessions}"
    );
    let reply = post_message(&url, "cli", None, "hello", "").json();
    assert_eq!(reply["reply"]["text"], "echo: hello");
    let chat = home.output(&["chat", "hi"]);
    assert!(chat.status.success(), "{}", String::from_utf8_lossy(&chat.stderr));
    drop(gateway);
}

/// A name the user lists (a LAN name, a reverse proxy's) and a page origin the user allows pass.
#[test]
fn listed_hosts_and_origins_are_allowed() {
    let home = TestHome::new();
    home.write(
        "herald.toml",
        b"[http]\nlisten = \"127.0.0.1:0\"\nallowed_hosts = [\"herald.lan\"]\nallowed_origins = [\"https://app.example\"]\n",
    );
    let gateway = home.start(&["--no-supervise"]);
    let url = home.http_url();
    let port = url.rsplit(':').next().unwrap().to_owned();
    let body = r#"{"text":"from the app"}"#;
    let request = format!(
        "POST /v1/sessions/app/messages HTTP/1.1\r\nHost: herald.lan:{port}\r\nOrigin: https://app.example\r\n\
         Sec-Fetch-Site: cross-site\r\nContent-Type: application/json\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, json) = raw_exchange(&url, &request);
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["reply"]["text"], "echo: from the app");
    drop(gateway);
}

/// A session of large messages is read in pages of at most about 1 MiB of text, following `next_before`
/// back to its start; one request no longer materialises the whole session (a 65 MB session once made
/// the worker 276 MB for one reader, 1.1 GB for eight).
#[test]
fn large_histories_are_read_in_bounded_pages() {
    let home = TestHome::new();
    home.write(
        "herald.toml",
        b"[http]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 131072\n",
    );
    let gateway = home.start(&["--no-supervise"]);
    let url = home.http_url();
    let big = "y".repeat(100_000);
    for i in 0..30 {
        let response = post_message(&url, "large", Some(&format!("m{i}")), &big, "?wait=false");
        assert_eq!(response.status, 202, "{}", response.body);
    }
    wait_for("every reply", || {
        let page = http(&url, "GET", "/v1/sessions/large/messages?limit=1", &[], b"").json();
        page["messages"][0]["role"] == "assistant" && page["messages"][0]["id"] == "m29"
    });
    let mut ids = Vec::new();
    let mut before: Option<i64> = None;
    let mut pages = 0;
    loop {
        let path = match before {
            Some(cursor) => format!("/v1/sessions/large/messages?limit=1000&before={cursor}"),
            None => "/v1/sessions/large/messages?limit=1000".to_owned(),
        };
        let response = http(&url, "GET", &path, &[], b"");
        assert_eq!(response.status, 200, "{}", response.body);
        assert!(
            response.body.len() < 1_300_000,
            "a page of {} bytes",
            response.body.len()
        );
        let page = response.json();
        pages += 1;
        let mut these: Vec<String> = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| format!("{}/{}", m["id"].as_str().unwrap(), m["role"].as_str().unwrap()))
            .collect();
        these.extend(ids);
        ids = these;
        match page["next_before"].as_i64() {
            Some(cursor) => before = Some(cursor),
            None => break,
        }
        assert!(pages < 100);
    }
    assert_eq!(ids.len(), 60, "every message once: {ids:?}");
    assert_eq!(ids.first().map(String::as_str), Some("m0/user"));
    assert_eq!(ids.last().map(String::as_str), Some("m29/assistant"));
    assert!(pages >= 3, "{pages} pages for 3 MB of messages");
    drop(gateway);
}

/// A journal that opens read-only (here an immutable file) used to let the gateway start and say ready
/// while every message failed. It is now a start-up failure that names the file.
#[cfg(target_os = "linux")]
#[test]
fn a_journal_that_cannot_be_written_fails_the_start() {
    let home = TestHome::new();
    home.write("herald.toml", b"[http]\nlisten = \"127.0.0.1:0\"\n");
    let first = home.output(&["start", "--timeout", "30"]);
    assert!(first.status.success(), "{}", text(&first));
    assert!(home.output(&["stop"]).status.success());
    let db = home.home().journal_file();
    let immutable = std::process::Command::new("chattr").arg("+i").arg(&db).status();
    if !immutable.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: chattr +i is not available here (needs root on ext4; CI has both)");
        return;
    }
    let start = home.output(&["start", "--timeout", "30"]);
    let _ = std::process::Command::new("chattr").arg("-i").arg(&db).status();
    assert!(!start.status.success(), "{}", text(&start));
    assert!(text(&start).contains("cannot be written"), "{}", text(&start));
    let _ = home.output(&["stop"]);
}
