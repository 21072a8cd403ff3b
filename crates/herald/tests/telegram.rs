//! The Telegram adapter through the whole gateway, against the Bot API stand-in in
//! `support/bot_api.rs` (official `getUpdates` semantics, scripted faults): replies, splitting, markup
//! fallback, unsupported updates, default deny, 401/409/429/5xx, the poll floor, delivery after an
//! outage, and kill -9 chaos. The end-to-end test against the npm emulator is `telegram_emulator.rs`.

#[path = "support/bot_api.rs"]
mod bot_api;
mod support;

use std::time::{Duration, Instant};

use bot_api::{BotApi, Fault};
use herald_gateway::journal::{AdapterStore, HistoryStore};
use support::{Gateway, TestHome, post_message, wait_for};

const TOKEN: &str = "4242:TEST-SECRET-TOKEN";
const USER: i64 = 7;

/// A home with the Telegram adapter pointed at `api`, the token in the environment.
fn home_for(api: &BotApi, extra: &str) -> TestHome {
    let home = TestHome::new();
    home.write(
        "herald.toml",
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\n[telegram]\nenabled = true\ntoken_env = \"HERALD_TEST_TG_TOKEN\"\n\
             api_base = \"{}\"\nallowed_users = [{USER}]\npoll_timeout_secs = 2\nmin_poll_interval_ms = 100\n{extra}",
            api.url
        )
        .as_bytes(),
    );
    home
}

fn start(home: &TestHome, token: &str) -> Gateway {
    start_with(home, token, &["run", "--no-supervise"])
}

/// Supervised (a monitor and its worker): a worker restart would show as a new worker pid.
fn start_supervised(home: &TestHome, token: &str) -> Gateway {
    start_with(home, token, &["run"])
}

fn start_with(home: &TestHome, token: &str, args: &[&str]) -> Gateway {
    home.start_with_token(args, token)
}

fn adapter_state(home: &TestHome) -> Option<(String, Option<String>)> {
    let state = home.state()?;
    let adapter = state.adapters.iter().find(|a| a.name == "telegram")?;
    Some((adapter.state.as_str().to_owned(), adapter.message.clone()))
}

fn wait_adapter(home: &TestHome, want: &str) -> Option<String> {
    let mut message = None;
    wait_for(
        &format!("the telegram adapter to be {want}"),
        || match adapter_state(home) {
            Some((state, m)) if state == want => {
                message = m;
                true
            }
            _ => false,
        },
    );
    message
}

/// Stops the gateway (planned) and returns everything it wrote to stdout and stderr.
fn stop(home: &TestHome, gateway: Gateway) -> String {
    let out = home.output(&["stop", "--timeout", "30"]);
    assert!(out.status.success(), "{}", support::text(&out));
    gateway.wait().1
}

#[test]
fn messages_are_answered_split_and_markup_falls_back() {
    let api = BotApi::start(TOKEN);
    let home = home_for(&api, "");
    let gateway = start(&home, TOKEN);
    wait_adapter(&home, "connected");

    api.user_says(USER, 500, "hello");
    wait_for("the reply", || !api.sent_to(500).is_empty());
    let sent = api.sent_to(500);
    assert_eq!(sent[0].text, "echo: hello");
    assert_eq!(sent[0].parse_mode.as_deref(), Some("Markdown"));
    assert!(sent[0].reply_to.is_some(), "{sent:?}");

    // Over Telegram's 4096-character limit: split, nothing lost.
    let long = "word ".repeat(1200);
    api.user_says(USER, 501, &long);
    wait_for("the long reply", || api.sent_to(501).len() >= 2);
    let parts = api.sent_to(501);
    assert_eq!(parts.len(), 2, "{}", parts.len());
    assert!(parts.iter().all(|p| p.text.chars().count() <= 4096));
    let joined: String = parts
        .iter()
        .map(|p| p.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(joined.split_whitespace().filter(|w| *w == "word").count(), 1200);

    // Markup the API refuses is sent again as plain text.
    api.user_says(USER, 502, "2 * 3");
    wait_for("the plain reply", || !api.sent_to(502).is_empty());
    let plain = api.sent_to(502);
    assert_eq!(plain.len(), 1, "{plain:?}");
    assert_eq!(
        (plain[0].text.as_str(), plain[0].parse_mode.as_deref()),
        ("echo: 2 * 3", None)
    );

    // Unsupported updates are acknowledged (confirmed) and ignored.
    api.other_update(
        serde_json::json!({"edited_message": {"message_id": 1, "chat": {"id": 503}, "text": "x"}}),
    );
    api.other_update(
        serde_json::json!({"message": {"message_id": 2, "from": {"id": USER},
        "chat": {"id": 503}, "sticker": {"file_id": "s"}}}),
    );
    wait_for("the unsupported updates to be confirmed", || {
        api.unconfirmed() == 0
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(api.sent_to(503).is_empty());

    let (_, status) = home.status_json();
    let adapters = status["adapters"].as_array().unwrap();
    assert_eq!(adapters[0]["name"], "telegram");
    assert_eq!(adapters[0]["state"], "connected");
    let text = support::text(&home.output(&["status"]));
    assert!(text.contains("telegram: connected since"), "{text}");

    let log = stop(&home, gateway);
    assert!(!log.contains(TOKEN), "the token leaked into the log:\n{log}");
    assert_eq!(adapter_state(&home).unwrap().0, "stopped");
}

#[test]
fn unknown_users_are_denied_told_their_id_and_never_reach_the_agent() {
    let api = BotApi::start(TOKEN);
    let home = home_for(&api, "");
    let gateway = start(&home, TOKEN);
    let http = home.state().unwrap().endpoints.http_url.unwrap();

    api.user_says(99, 900, "let me in");
    wait_for("the denial", || !api.sent_to(900).is_empty());
    std::thread::sleep(Duration::from_millis(300));
    let denial = api.sent_to(900);
    assert_eq!(denial.len(), 1, "{denial:?}");
    assert!(
        denial[0].text.contains("99") && denial[0].text.contains("allowed_users"),
        "{denial:?}"
    );
    // No session was stored for them: the agent never saw the message.
    let sessions = support::http(&http, "GET", "/v1/sessions", &[], b"").json();
    assert!(!sessions.to_string().contains("900"), "{sessions}");

    let log = stop(&home, gateway);
    let lines: Vec<_> = log
        .lines()
        .filter(|l| l.contains("denied") && l.contains("99"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
}

/// A 401 is `bad_credentials`: said in `status`, `--json` and `--deep`, retried on a slow growing
/// schedule (one try per step: 5 s, then 10 s), never by restarting the worker, while HTTP keeps serving.
#[test]
fn a_refused_token_is_bad_credentials_retried_slowly_without_restarting_the_worker() {
    let api = BotApi::start(TOKEN);
    let home = home_for(&api, "");
    let wrong = "4242:WRONG-SECRET-VALUE";
    let gateway = start_supervised(&home, wrong);
    let worker = home.worker_pid();
    let message = wait_adapter(&home, "bad_credentials").unwrap_or_default();
    assert!(message.contains("401"), "{message}");
    let first = Instant::now();

    let http = home.state().unwrap().endpoints.http_url.unwrap();
    let reply = post_message(&http, "s1", None, "still here", "");
    assert_eq!(reply.status, 200);

    std::thread::sleep(Duration::from_millis(11_500).saturating_sub(first.elapsed()));
    let (code, status) = home.status_json();
    assert_eq!(code, 0);
    let adapter = &status["adapters"][0];
    assert_eq!(adapter["state"], "bad_credentials", "{status}");
    assert_eq!(home.worker_pid(), worker, "a bad token never restarts the worker");
    let log = home.events();
    assert!(
        !log.iter()
            .any(|e| e.event == "restart_scheduled" || e.event == "adapter_restart"),
        "{:?}",
        home.event_names()
    );
    let text = support::text(&home.output(&["status"]));
    assert!(text.contains("telegram: bad_credentials"), "{text}");
    let deep = support::text(&home.output(&["status", "--deep"]));
    assert!(deep.contains("telegram: bad_credentials"), "{deep}");

    // One try at start, the next after 5 s, the one after that not before 15 s (each within a tenth):
    // two tries in 11.5 s, never a storm.
    let polls = api.polls();
    assert_eq!(polls.len(), 2, "{polls:?}");
    let gap = polls[1].0 - polls[0].0;
    assert!(gap >= Duration::from_millis(4_500), "{gap:?}");
    let log = stop(&home, gateway);
    for (what, content) in [
        ("log", log),
        ("status", text),
        ("deep status", deep),
        (
            "state record",
            std::fs::read_to_string(home.home().state_record()).unwrap(),
        ),
        (
            "lifecycle log",
            std::fs::read_to_string(home.home().lifecycle_log()).unwrap(),
        ),
    ] {
        assert!(
            !content.contains("WRONG-SECRET"),
            "the token leaked into the {what}:\n{content}"
        );
    }
}

#[test]
fn an_unreachable_api_is_retried_without_leaking_the_token() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let home = TestHome::new();
    home.write(
        "herald.toml",
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\n[telegram]\nenabled = true\ntoken = \"{TOKEN}\"\n\
             api_base = \"http://127.0.0.1:{port}\"\nallow_all = true\n"
        )
        .as_bytes(),
    );
    let gateway = start(&home, TOKEN);
    let message = wait_adapter(&home, "degraded").unwrap_or_default();
    assert!(message.contains("cannot reach"), "{message}");
    assert!(!message.contains("TEST-SECRET"), "{message}");
    let log = stop(&home, gateway);
    assert!(!log.contains("TEST-SECRET"), "{log}");
}

#[test]
fn a_second_poller_is_named_as_the_conflict() {
    let api = BotApi::start(TOKEN);
    api.stick("getUpdates", Fault::conflict());
    let home = home_for(&api, "");
    let gateway = start(&home, TOKEN);
    let message = wait_adapter(&home, "conflict").unwrap_or_default();
    assert!(
        message.contains("409") && message.contains("another"),
        "{message}"
    );
    let (_, status) = home.status_json();
    assert_eq!(status["adapters"][0]["state"], "conflict");
    let deep = home.output(&["status", "--deep"]);
    assert_eq!(deep.status.code(), Some(1), "{}", support::text(&deep));
    assert!(
        support::text(&deep).contains("telegram: conflict since"),
        "{}",
        support::text(&deep)
    );
    drop(gateway);
}

#[test]
fn rate_limits_and_server_errors_back_off_and_recover() {
    let api = BotApi::start(TOKEN);
    api.fail_next("getUpdates", Fault::too_many(2), 1);
    api.fail_next("getUpdates", Fault::server_error(), 1);
    api.fail_next("sendMessage", Fault::too_many(1), 1);
    let home = home_for(&api, "");
    let gateway = start(&home, TOKEN);
    api.user_says(USER, 600, "patience");
    wait_for("the reply after the errors", || !api.sent_to(600).is_empty());
    assert_eq!(api.sent_to(600).len(), 1);
    let polls = api.polls();
    // retry_after = 2 was honoured between the first and the second poll.
    assert!(polls.len() >= 3, "{}", polls.len());
    let gap = polls[1].0 - polls[0].0;
    assert!(gap >= Duration::from_millis(1900), "{gap:?}");
    wait_adapter(&home, "connected");
    drop(gateway);
}

#[test]
fn instant_empty_polls_do_not_spin() {
    let api = BotApi::start(TOKEN);
    // poll_timeout_secs = 0: the server answers every empty poll at once, like the npm emulator.
    let home = home_for(&api, "");
    home.write(
        "herald.toml",
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\n[telegram]\nenabled = true\ntoken_env = \"HERALD_TEST_TG_TOKEN\"\n\
             api_base = \"{}\"\nallow_all = true\npoll_timeout_secs = 0\nmin_poll_interval_ms = 250\n",
            api.url
        )
        .as_bytes(),
    );
    let gateway = start(&home, TOKEN);
    wait_adapter(&home, "connected");
    let before = api.polls().len();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let polls = api.polls().len() - before;
    let most = (started.elapsed().as_millis() / 250) as usize + 2;
    assert!(
        polls <= most,
        "{polls} polls in {:?} (at most {most})",
        started.elapsed()
    );
    assert!(polls >= 2, "polling stopped: {polls}");
    drop(gateway);
}

#[test]
fn replies_held_up_by_an_outage_are_sent_after_a_crash_and_restart() {
    let api = BotApi::start(TOKEN);
    api.stick("sendMessage", Fault::server_error());
    let home = home_for(&api, "");
    let gateway = start(&home, TOKEN);
    api.user_says(USER, 700, "are you there");
    let message = wait_adapter(&home, "degraded").unwrap_or_default();
    assert!(message.contains("cannot send replies"), "{message}");
    gateway.kill();

    api.unstick();
    let gateway = start(&home, TOKEN);
    wait_for("the held-up reply", || !api.sent_to(700).is_empty());
    std::thread::sleep(Duration::from_millis(500));
    let sent = api.sent_to(700);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].text, "echo: are you there");
    drop(gateway);
}

/// 200 messages while the gateway is killed (SIGKILL on Unix, TerminateProcess on Windows) and restarted
/// at random moments: no update is lost, none makes a second turn (the journal holds exactly one turn
/// and one reply per message), and every message's reply reaches the chat. Delivery is at least once:
/// the Bot API has no idempotency key for `sendMessage`, so a kill between Telegram's answer and the
/// commit of the delivery mark sends that reply again — at most one per chat per kill, since each chat
/// has one reply out at a time, marked before its next is sent (the five chats are served concurrently).
#[test]
fn chaos_kill_9_and_restart_every_message_gets_exactly_one_reply() {
    const MESSAGES: usize = 200;
    const KILLS: usize = 6;
    let api = BotApi::start(TOKEN);
    let home = home_for(&api, "");
    let mut gateway = Some(start(&home, TOKEN));

    let mut seed = std::process::id() as u64 ^ 0x9e37_79b9_7f4a_7c15;
    let mut random = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let kill_at: Vec<usize> = {
        let mut at: Vec<usize> = (0..KILLS)
            .map(|_| 10 + random(MESSAGES as u64 - 20) as usize)
            .collect();
        at.sort_unstable();
        at
    };
    let mut kills = 0;
    for i in 0..MESSAGES {
        api.user_says(USER, 1000 + (i % 5) as i64, &format!("message {i}"));
        if i % 10 == 0 {
            std::thread::sleep(Duration::from_millis(random(40)));
        }
        if kill_at.contains(&i) {
            std::thread::sleep(Duration::from_millis(random(150)));
            gateway.take().unwrap().kill();
            kills += 1;
            gateway = Some(start(&home, TOKEN));
        }
    }
    let answered = |api: &BotApi| {
        let sent = api.sent();
        (0..MESSAGES)
            .filter(|i| sent.iter().any(|m| m.text == format!("echo: message {i}")))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while answered(&api) < MESSAGES && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let sent = api.sent();
    let mut missing = Vec::new();
    let mut doubled = Vec::new();
    // A reply whose send/mark window two kills cut arrives three times: count every extra copy.
    for i in 0..MESSAGES {
        let text = format!("echo: message {i}");
        match sent.iter().filter(|m| m.text == text).count() {
            0 => missing.push(i),
            1 => {}
            n => doubled.extend(std::iter::repeat_n(i, n - 1)),
        }
    }
    assert!(missing.is_empty(), "{kills} kills; unanswered: {missing:?}");
    assert!(
        doubled.len() <= kills * 5,
        "{kills} kills but {} replies sent twice: {doubled:?}",
        doubled.len()
    );
    assert_eq!(sent.len(), MESSAGES + doubled.len(), "unexpected extra messages");
    eprintln!(
        "chaos: {kills} kills, {} reply(s) re-sent after a kill in the send/mark window",
        doubled.len()
    );
    stop(&home, gateway.take().unwrap());

    // The store: one turn per message, each with one reply.
    let (journal, _) = herald_journal::SqliteJournal::open(&home.home().journal_file()).unwrap();
    let mut turns = 0;
    for chat in 1000..1005 {
        let history = journal
            .history(
                &herald_gateway::journal::SessionKey::new("telegram", chat.to_string()),
                10_000,
            )
            .wait()
            .unwrap();
        let questions: Vec<_> = history
            .iter()
            .filter(|m| m.role == herald_gateway::agent::Role::User)
            .collect();
        let replies = history.len() - questions.len();
        assert_eq!(questions.len(), replies, "chat {chat}: every turn has one reply");
        let mut texts: Vec<_> = questions.iter().map(|m| m.text.clone()).collect();
        texts.sort();
        texts.dedup();
        assert_eq!(
            texts.len(),
            questions.len(),
            "chat {chat}: a message made two turns"
        );
        turns += questions.len();
    }
    assert_eq!(turns, MESSAGES);
    assert!(journal.undelivered("telegram", 10).wait().unwrap().is_empty());
}

/// `herald restart --adapter telegram` restarts the adapter alone: the worker keeps its pid, the HTTP API
/// answers throughout (a client measures it), and messages before and after are each answered once.
#[test]
fn restart_adapter_restarts_telegram_alone_while_the_worker_and_http_keep_serving() {
    let api = BotApi::start(TOKEN);
    let home = home_for(&api, "");
    let gateway = start_supervised(&home, TOKEN);
    wait_adapter(&home, "connected");
    let worker = home.worker_pid();
    let http = home.http_url();
    api.user_says(USER, 800, "before");
    wait_for("the reply before", || !api.sent_to(800).is_empty());

    let client = support::HttpProbe::start(&http);
    let out = home.output(&["restart", "--adapter", "telegram"]);
    let shown = support::ok(&out);
    assert!(shown.contains("restarted the telegram adapter"), "{shown}");
    wait_adapter(&home, "connected");
    api.user_says(USER, 801, "after");
    wait_for("the reply after", || !api.sent_to(801).is_empty());
    std::thread::sleep(Duration::from_millis(500));
    let answered = client.finish();
    assert!(answered.failures.is_empty(), "{:?}", answered.failures);
    assert!(answered.ok >= 3, "{answered:?}");

    assert_eq!(api.sent_to(800).len(), 1);
    assert_eq!(api.sent_to(801).len(), 1);
    assert_eq!(home.worker_pid(), worker, "the worker was not restarted");
    let (_, status) = home.status_json();
    assert_eq!(status["adapters"][0]["restarts"], 1, "{status}");
    assert!(home.event_names().contains(&"adapter_restart".to_owned()));

    let unknown = home.output(&["restart", "--adapter", "matrix"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", support::text(&unknown));
    assert!(
        support::text(&unknown).contains("this gateway runs: telegram"),
        "{}",
        support::text(&unknown)
    );
    stop(&home, gateway);
}
