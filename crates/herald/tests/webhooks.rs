//! Webhooks through the whole gateway, checked by an independent Standard Webhooks implementation:
//! `ci/peers/webhook_receiver.py` (Python's hmac, written from the specification) signs the messages
//! these tests post and verifies the callbacks Herald sends — the scheme is checked, not mirrored.
//!
//! The receiver (`support/webhook_receiver.rs`) is started by each test, or shared when
//! `HERALD_WEBHOOK_RECEIVER_URL` names a running one (under Wine): each test has names of its own on it.

mod support;
#[path = "support/webhook_receiver.rs"]
mod webhook_receiver;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::{HttpResponse, TestHome, http, text, wait_for};
use webhook_receiver::{Receiver, SECRET, SECRET_VAR};

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A home with one `[[webhook]]` named `hook` (`extra` added to its table).
fn home_with(hook: &str, extra: &str) -> TestHome {
    let home = TestHome::new();
    home.write(
        "herald.toml",
        format!(
            "[gateway]\ndrain_timeout_secs = 2\n[http]\nlisten = \"127.0.0.1:0\"\n\n\
             [[webhook]]\nname = \"{hook}\"\nsecret_env = \"{SECRET_VAR}\"\n{extra}"
        )
        .as_bytes(),
    );
    home
}

fn start(home: &TestHome) -> support::Gateway {
    home.start_with_env(&["run", "--no-supervise"], &[(SECRET_VAR, SECRET)])
}

/// Posts `body` to `/v1/webhooks/{hook}` signed by the receiver as `name` would be.
fn post(
    home: &TestHome,
    receiver: &Receiver,
    name: &str,
    hook: &str,
    (id, timestamp): (&str, i64),
    body: &str,
    query: &str,
) -> HttpResponse {
    let signature = receiver.sign(name, id, timestamp, body.as_bytes());
    post_signed(home, hook, id, timestamp, &signature, body, query)
}

fn post_signed(
    home: &TestHome,
    hook: &str,
    id: &str,
    timestamp: i64,
    signature: &str,
    body: &str,
    query: &str,
) -> HttpResponse {
    let timestamp = timestamp.to_string();
    http(
        &home.http_url(),
        "POST",
        &format!("/v1/webhooks/{hook}{query}"),
        &[
            ("Content-Type", "application/json"),
            ("webhook-id", id),
            ("webhook-timestamp", &timestamp),
            ("webhook-signature", signature),
        ],
        body.as_bytes(),
    )
}

#[test]
fn a_signed_message_is_answered_once_and_forged_altered_or_stale_ones_are_refused() {
    let receiver = Receiver::start();
    let name = receiver.name("sync");
    let home = home_with("sync", "");
    let gateway = start(&home);
    let body = r#"{"session": "s1", "text": "hello"}"#;
    let ts = now();

    let answered = post(&home, &receiver, &name, "sync", ("msg_1", ts), body, "?wait=true");
    assert_eq!(answered.status, 200, "{}", answered.body);
    assert_eq!(answered.json()["reply"]["text"], "echo: hello");
    // The same request again (a sender's retry, or a replay within the window): the same turn.
    let again = post(&home, &receiver, &name, "sync", ("msg_1", ts), body, "?wait=true");
    assert_eq!(
        (again.status, again.json()["reply"]["text"].clone()),
        (200, "echo: hello".into())
    );
    // Without ?wait: stored, then answered (here by the response of a later retry).
    let accepted = post(&home, &receiver, &name, "sync", ("msg_2", ts), body, "");
    assert_eq!(
        (accepted.status, accepted.json()["status"].clone()),
        (202, "accepted".into())
    );

    let good = receiver.sign(&name, "msg_3", ts, body.as_bytes());
    let refusals = [
        // Signed with another secret.
        post_signed(
            &home,
            "sync",
            "msg_3",
            ts,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            body,
            "",
        ),
        // Altered after signing.
        post_signed(
            &home,
            "sync",
            "msg_3",
            ts,
            &good,
            r#"{"session": "s1", "text": "rm -rf"}"#,
            "",
        ),
        // Another id under the same signature.
        post_signed(&home, "sync", "msg_4", ts, &good, body, ""),
        // Properly signed, but ten minutes old: a replay from the past.
        post(&home, &receiver, &name, "sync", ("msg_5", ts - 600), body, ""),
        // No signature at all.
        post_signed(&home, "sync", "msg_6", ts, "", body, ""),
    ];
    for refused in &refusals {
        assert_eq!(refused.status, 401, "{}", refused.body);
        assert_eq!(refused.json()["error"], "invalid_signature");
    }
    let unknown = post(&home, &receiver, &name, "other", ("msg_7", ts), body, "");
    assert_eq!(unknown.status, 404);
    let malformed = post(
        &home,
        &receiver,
        &name,
        "sync",
        ("msg_8", ts),
        r#"{"text": "no session"}"#,
        "",
    );
    assert_eq!(
        (malformed.status, malformed.json()["error"].clone()),
        (400, "invalid_message".into())
    );

    // Two turns in the session — one per message id — and nothing from the refused requests.
    let history = http(&home.http_url(), "GET", "/v1/sessions", &[], b"");
    let sessions = history.json()["sessions"].clone();
    let hook = sessions
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["adapter"] == "webhook")
        .expect("the webhook session");
    assert_eq!(hook["session"], "sync:s1");
    assert_eq!(
        hook["messages"], 4,
        "two messages and their two replies: {sessions}"
    );
    // With no callback_url, nothing waits to be delivered.
    wait_for("no reply waiting", || {
        let list = home.output(&["deliveries", "list", "--json"]);
        serde_json::from_slice::<serde_json::Value>(&list.stdout).unwrap()["waiting"] == serde_json::json!({})
    });
    assert!(home.output(&["stop"]).status.success());
    gateway.wait();
}

#[test]
fn a_reply_reaches_the_callback_signed_once_after_the_receiver_was_down_and_a_restart() {
    let receiver = Receiver::start();
    let name = receiver.name("cb");
    receiver.down(&name, true);
    let home = home_with(
        "cb",
        &format!("callback_url = \"{}/hook/{name}\"\n", receiver.url),
    );
    let gateway = start(&home);
    let body = r#"{"session": "s9", "text": "ping"}"#;
    let accepted = post(&home, &receiver, &name, "cb", ("msg_cb", now()), body, "");
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    wait_for("two refused callbacks", || receiver.log(&name).len() >= 2);
    // A planned stop while the receiver is down: the reply stays in the journal.
    assert!(home.output(&["stop"]).status.success());
    gateway.wait();
    let refused_before_restart = receiver.log(&name).len();
    receiver.down(&name, false);
    let gateway = start(&home);
    wait_for("the callback to be accepted", || {
        receiver.log(&name).iter().any(|e| e["status"] == 204)
    });
    std::thread::sleep(Duration::from_millis(1500));
    let log = receiver.log(&name);
    assert!(refused_before_restart >= 2);
    assert_eq!(
        log.iter().filter(|e| e["status"] == 204).count(),
        1,
        "delivered once: {log:?}"
    );
    assert!(
        log.iter().all(|e| e["verified"] == true),
        "every attempt signed: {log:?}"
    );
    let ids: std::collections::BTreeSet<&str> = log.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids.len(),
        1,
        "one webhook-id across retries and the restart: {ids:?}"
    );
    assert!(ids.iter().next().unwrap().starts_with("msg_herald_"));
    let delivered = &log.last().unwrap()["body"];
    assert_eq!(delivered["type"], "message.reply");
    assert_eq!(delivered["session"], "s9");
    assert_eq!(delivered["in_reply_to"], "msg_cb");
    assert_eq!(delivered["text"], "echo: ping");
    assert_eq!(delivered["status"], "done");
    // A message posted with ?wait=true is answered in the response, not by callback as well.
    let sync = post(
        &home,
        &receiver,
        &name,
        "cb",
        ("msg_sync", now()),
        body,
        "?wait=true",
    );
    assert_eq!(sync.json()["reply"]["text"], "echo: ping");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        receiver.log(&name).len(),
        log.len(),
        "no callback for the answered message"
    );
    assert!(home.output(&["stop"]).status.success());
    gateway.wait();
}

#[test]
fn a_callback_that_never_succeeds_is_set_aside_listed_and_sent_again_by_hand() {
    let receiver = Receiver::start();
    let name = receiver.name("dead");
    receiver.down(&name, true);
    let home = home_with(
        "dead",
        &format!(
            "callback_url = \"{}/hook/{name}\"\nretry_for_secs = 10\n",
            receiver.url
        ),
    );
    let gateway = start(&home);
    let body = r#"{"session": "s1", "text": "anyone?"}"#;
    assert_eq!(
        post(&home, &receiver, &name, "dead", ("msg_d", now()), body, "").status,
        202
    );
    let mut failed = serde_json::Value::Null;
    wait_for("the reply to be set aside", || {
        let list = home.output(&["deliveries", "list", "--failed", "--json"]);
        failed = serde_json::from_slice::<serde_json::Value>(&list.stdout).unwrap()["failed"].clone();
        failed.as_array().is_some_and(|f| !f.is_empty())
    });
    let entry = &failed[0];
    assert_eq!(entry["adapter"], "webhook");
    assert_eq!(entry["chat_id"], "dead:s1");
    assert_eq!(entry["message_id"], "msg_d");
    let why = entry["error"].as_str().unwrap();
    assert!(why.contains("503") && why.contains("retried for 10 s"), "{why}");
    let tried = receiver.log(&name).len();
    assert!(tried >= 2, "it was retried first: {tried}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(receiver.log(&name).len(), tried, "nothing more once set aside");
    let human = text(&home.output(&["deliveries", "list"]));
    assert!(human.contains("dead:s1") && human.contains("503"), "{human}");

    // Taken back by hand once the receiver is up: delivered, and the list is empty again.
    receiver.down(&name, false);
    let turn = entry["turn_id"].as_i64().unwrap().to_string();
    let retried = home.output(&["deliveries", "retry", &turn]);
    assert!(retried.status.success(), "{}", text(&retried));
    wait_for("the retried callback", || {
        receiver.log(&name).iter().any(|e| e["status"] == 204)
    });
    let list = home.output(&["deliveries", "list", "--failed", "--json"]);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&list.stdout).unwrap()["failed"],
        serde_json::json!([])
    );
    let unknown = home.output(&["deliveries", "retry", "999999"]);
    assert!(!unknown.status.success());
    assert!(
        text(&unknown).contains("no reply set aside"),
        "{}",
        text(&unknown)
    );
    assert!(home.output(&["stop"]).status.success());
    gateway.wait();
}

#[test]
fn a_webhook_without_its_secret_does_not_start_and_says_which_variable() {
    let home = home_with("nosecret", "");
    let out = home.output(&["run", "--no-supervise"]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains(SECRET_VAR) && said.contains("nosecret"), "{said}");
}
