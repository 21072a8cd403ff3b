//! The Telegram adapter end to end against a Bot API emulator the project does not write: the npm
//! package `telegram-test-api` 4.2.1, installed by `ci/peers/install-telegram-test-api.sh`.
//!
//! The emulator is started here (`node ci/peers/telegram-test-api-server.js 0`, which says its port), or, when
//! `HERALD_TELEGRAM_TEST_API_URL` names a running one (under Wine, where a Windows test cannot start
//! node), used as it is. Known limits of the emulator: its `getUpdates` ignores `offset` and `timeout`
//! (it answers at once and marks updates read when it returns them) and it has no `sendChatAction`, so
//! crash durability and the error paths are tested against the stand-in in `telegram.rs`.
//!
//! "Alive but deaf" is tested here too: the emulator behind `support/stall_proxy.rs`, a network that goes
//! dead under the adapter's connections.

#[path = "support/stall_proxy.rs"]
mod stall_proxy;
mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::{TestHome, http, wait_for};

struct Emulator {
    url: String,
    child: Option<Child>,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn emulator() -> Emulator {
    if let Ok(url) = std::env::var("HERALD_TELEGRAM_TEST_API_URL") {
        return Emulator { url, child: None };
    }
    let peers = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../ci/peers");
    let package = std::env::var_os("HERALD_TELEGRAM_TEST_API")
        .map(PathBuf::from)
        .unwrap_or_else(|| peers.join("node_modules/telegram-test-api"));
    assert!(
        package.join("package.json").exists(),
        "the telegram-test-api test peer is missing at {}: run `bash ci/peers/install-telegram-test-api.sh`",
        package.display()
    );
    // Port 0: the wrapper finds a free port, starts the emulator on it and says which. A port reserved
    // here and released for it could be taken by another test's listener in between (seen in CI: the
    // emulator failed to bind, and the test's first request met a listener that was gone).
    let mut child = Command::new("node")
        .arg(peers.join("telegram-test-api-server.js"))
        .arg("0")
        .env("HERALD_TELEGRAM_TEST_API", &package)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node (needed for the telegram-test-api test peer)");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut emulator = Emulator {
        url: String::new(),
        child: Some(child),
    };
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
        .expect("the emulator's first line");
    let port: u16 = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("telegram-test-api said {line:?}, not its port"));
    emulator.url = format!("http://127.0.0.1:{port}");
    emulator
}

/// A user writes to the bot through the emulator's client API.
fn user_says(url: &str, token: &str, user: i64, chat: i64, text: &str) {
    let message = json!({
        "botToken": token,
        "from": {"id": user, "first_name": "Test", "username": "test", "is_bot": false},
        "chat": {"id": chat, "first_name": "Test", "username": "test", "type": "private"},
        "date": 1,
        "text": text,
    });
    let body = message.to_string();
    let response = http(
        url,
        "POST",
        "/sendMessage",
        &[("content-type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(response.status, 200, "cannot post to the emulator");
}

/// What the bot sent to `chat` since the last call (the emulator marks them read).
fn bot_said(url: &str, token: &str, chat: i64) -> Vec<String> {
    let body = json!({"token": token, "chatId": chat}).to_string();
    let response = http(
        url,
        "POST",
        "/getUpdates",
        &[("content-type", "application/json")],
        body.as_bytes(),
    );
    response.json()["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|u: &Value| u["message"]["text"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn the_emulator_delivers_messages_and_replies_and_strangers_are_denied() {
    let emulator = emulator();
    // A token of this test's own: tests may share one emulator (under Wine).
    let token = format!("{}:EMULATOR-TOKEN", std::process::id());
    let home = TestHome::new();
    home.write(
        "herald.toml",
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\n[telegram]\nenabled = true\ntoken = \"{token}\"\n\
             api_base = \"{}\"\nallowed_users = [11]\nmin_poll_interval_ms = 200\n",
            emulator.url
        )
        .as_bytes(),
    );
    let gateway = home.start(&["--no-supervise"]);

    user_says(&emulator.url, &token, 11, 11, "hello emulator");
    let mut replies = Vec::new();
    wait_for("the reply through the emulator", || {
        replies.extend(bot_said(&emulator.url, &token, 11));
        !replies.is_empty()
    });
    assert_eq!(replies, vec!["echo: hello emulator".to_owned()]);

    user_says(&emulator.url, &token, 12, 12, "who am I");
    let mut denial = Vec::new();
    wait_for("the denial through the emulator", || {
        denial.extend(bot_said(&emulator.url, &token, 12));
        !denial.is_empty()
    });
    assert!(
        denial[0].contains("12") && denial[0].contains("allowed_users"),
        "{denial:?}"
    );

    // The emulator answers every empty poll at once: the adapter stays connected and does not spin
    // (the floor itself is measured against the stand-in in telegram.rs).
    std::thread::sleep(Duration::from_millis(500));
    let (_, status) = home.status_json();
    assert_eq!(status["adapters"][0]["state"], "connected", "{status}");
    assert!(
        bot_said(&emulator.url, &token, 11).is_empty(),
        "a reply was sent twice"
    );

    let out = home.output(&["stop", "--timeout", "30"]);
    assert!(out.status.success(), "{}", support::text(&out));
    let (_, log) = gateway.wait();
    assert!(
        !log.contains("EMULATOR-TOKEN"),
        "the token leaked into the log:\n{log}"
    );
}

/// `herald reload` applies a changed allowlist while a turn runs: the turn in flight is answered (not
/// dropped), the newly allowed user is let in, and a key that needs a restart is named as such.
#[test]
fn a_reload_lets_a_new_user_in_without_dropping_the_turn_in_flight() {
    let emulator = emulator();
    let token = format!("{}:RELOAD-TOKEN", std::process::id());
    let home = TestHome::new();
    let log = home.root.parent().unwrap().join("agent.log");
    let config = |allowed: &str, max_connections: u32| {
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\nmax_connections = {max_connections}\n\n[agent]\nbackend = \"command\"\n\n\
             [agent.command]\ncommand = [{agent:?}, {log:?}]\n\n[telegram]\nenabled = true\ntoken = \"{token}\"\n\
             api_base = \"{}\"\nallowed_users = [{allowed}]\nmin_poll_interval_ms = 200\n",
            emulator.url,
            agent = support::test_agent().to_string_lossy(),
            log = log.to_string_lossy(),
        )
    };
    home.write("herald.toml", config("21", 256).as_bytes());
    let gateway = home.start(&["--no-supervise"]);

    user_says(&emulator.url, &token, 21, 21, "sleep:2500:long turn");
    wait_for("the long turn to start", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("long turn"))
    });
    user_says(&emulator.url, &token, 22, 22, "let me in");
    let mut denial = Vec::new();
    wait_for("the denial", || {
        denial.extend(bot_said(&emulator.url, &token, 22));
        !denial.is_empty()
    });
    assert!(denial[0].contains("allowed_users"), "{denial:?}");

    home.write("herald.toml", config("21, 22", 100).as_bytes());
    let out = home.output(&["reload"]);
    let shown = support::ok(&out);
    assert!(shown.contains("applied now: telegram.allowed_users"), "{shown}");
    assert!(
        shown.contains("applied only by a restart (`herald restart`): http.max_connections"),
        "{shown}"
    );

    let mut long = Vec::new();
    wait_for("the turn that was in flight to be answered", || {
        long.extend(bot_said(&emulator.url, &token, 21));
        !long.is_empty()
    });
    assert_eq!(long, ["agent: sleep:2500:long turn"]);
    user_says(&emulator.url, &token, 22, 22, "hello now");
    let mut welcome = Vec::new();
    wait_for("the new user's answer", || {
        welcome.extend(bot_said(&emulator.url, &token, 22));
        !welcome.is_empty()
    });
    assert_eq!(welcome, ["agent: hello now"]);
    let reload = home
        .events()
        .into_iter()
        .find(|e| e.event == "reload")
        .expect("a reload event");
    assert_eq!(reload.fields["source"], "control_channel", "{reload:?}");

    let out = home.output(&["stop", "--timeout", "30"]);
    assert!(out.status.success(), "{}", support::text(&out));
    gateway.wait();
}

/// Alive but deaf, from the outside in: the network under the adapter's connections goes dead (a
/// connection that takes requests and never answers). The adapter notices its poll did not complete in
/// time, says `degraded`, rebuilds its client, and once the network is back it is `connected` on a new
/// connection; the messages sent meanwhile are answered once each; the HTTP API answered throughout and
/// the worker was never restarted.
#[test]
fn a_poll_stuck_on_a_dead_connection_is_noticed_and_the_client_rebuilt() {
    let emulator = emulator();
    let token = format!("{}:STALL-TOKEN", std::process::id());
    let proxy = stall_proxy::StallProxy::start(emulator.url.strip_prefix("http://").unwrap());
    let home = TestHome::new();
    home.write(
        "herald.toml",
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\n[telegram]\nenabled = true\ntoken = \"{token}\"\n\
             api_base = \"{}\"\nallowed_users = [31]\npoll_timeout_secs = 0\nmin_poll_interval_ms = 200\n",
            proxy.url
        )
        .as_bytes(),
    );
    let gateway = home.start(&[]);
    let worker = home.worker_pid();
    let adapter = |state: &str| {
        let (_, status) = home.status_json();
        status["adapters"][0]["state"] == state
    };
    user_says(&emulator.url, &token, 31, 31, "before");
    let mut replies = Vec::new();
    wait_for("the reply before the stall", || {
        replies.extend(bot_said(&emulator.url, &token, 31));
        !replies.is_empty()
    });
    let client = support::HttpProbe::start(&home.http_url());

    proxy.stall();
    user_says(&emulator.url, &token, 31, 31, "during one");
    user_says(&emulator.url, &token, 31, 31, "during two");
    // poll_timeout_secs = 0: a poll that has not completed in 5 s is stuck.
    wait_for("the adapter to notice the stuck poll", || adapter("degraded"));
    let (_, status) = home.status_json();
    let message = status["adapters"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("did not complete within 5 s"), "{status}");
    let connections = proxy.accepted();
    // Still stalled: the rebuilt client's new connection is dead too, and found out again.
    wait_for("a second connection to be tried", || {
        proxy.accepted() > connections
    });
    assert!(adapter("degraded"), "{}", home.status_json().1);

    proxy.heal();
    wait_for("the adapter to be connected again", || adapter("connected"));
    let mut replies = Vec::new();
    wait_for("the replies to what was sent meanwhile", || {
        replies.extend(bot_said(&emulator.url, &token, 31));
        replies.len() >= 2
    });
    std::thread::sleep(Duration::from_secs(1));
    replies.extend(bot_said(&emulator.url, &token, 31));
    replies.sort();
    assert_eq!(
        replies,
        ["echo: during one", "echo: during two"],
        "answered once each"
    );

    let answered = client.finish();
    assert!(answered.failures.is_empty(), "{:?}", answered.failures);
    assert!(
        answered.ok >= 20,
        "the HTTP API answered throughout: {answered:?}"
    );
    assert_eq!(
        home.worker_pid(),
        worker,
        "one adapter was deaf; the worker was never restarted"
    );
    let out = home.output(&["stop", "--timeout", "30"]);
    assert!(out.status.success(), "{}", support::text(&out));
    gateway.wait();
}
