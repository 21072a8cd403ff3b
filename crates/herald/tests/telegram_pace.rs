//! Telegram delivery paced to the Bot API's limits, through the whole gateway, against the stand-in in
//! `support/bot_api.rs` enforcing those limits: several chats served at once with each chat's replies in
//! order and no chat sent to faster than its rate, a group held to its own slower rate, a 429's
//! `retry_after` honoured for its chat alone, and every message answered exactly once.
//!
//! Nothing here times the gateway's speed: the checks are orders and lower bounds on gaps between sends
//! (which a slow machine only widens), with tolerance for the stand-in's clock reading a request late.

#[path = "support/bot_api.rs"]
mod bot_api;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bot_api::{BotApi, Fault, Sent};
use support::{Gateway, TestHome, wait_for};

const TOKEN: &str = "4242:TEST-SECRET-TOKEN";
const USER: i64 = 7;

fn start(api: &BotApi, extra: &str) -> (TestHome, Gateway) {
    let home = TestHome::new();
    home.write(
        "herald.toml",
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\n[telegram]\nenabled = true\ntoken_env = \"HERALD_TEST_TG_TOKEN\"\n\
             api_base = \"{}\"\nallowed_users = [{USER}]\npoll_timeout_secs = 2\nmin_poll_interval_ms = 100\n\
             outage_notices = false\n{extra}",
            api.url
        )
        .as_bytes(),
    );
    let gateway = home.start_with_token(&["run", "--no-supervise"], TOKEN);
    (home, gateway)
}

fn stop(home: &TestHome, gateway: Gateway) {
    let out = home.output(&["stop", "--timeout", "30"]);
    assert!(out.status.success(), "{}", support::text(&out));
    gateway.wait();
}

/// Per chat: the accepted messages in the order they arrived, with when.
fn by_chat(sent: &[(Instant, Sent)]) -> BTreeMap<i64, Vec<(Instant, String)>> {
    let mut chats: BTreeMap<i64, Vec<(Instant, String)>> = BTreeMap::new();
    for (at, m) in sent {
        chats.entry(m.chat_id).or_default().push((*at, m.text.clone()));
    }
    chats
}

/// The smallest gap between two messages accepted for one chat.
fn smallest_gap(list: &[(Instant, String)]) -> Option<Duration> {
    list.windows(2).map(|w| w[1].0.duration_since(w[0].0)).min()
}

#[test]
fn many_chats_are_served_at_once_each_in_order_and_at_its_rate() {
    const CHATS: i64 = 8;
    const EACH: usize = 4;
    const GROUP: i64 = -100_555;
    let api = BotApi::start(TOKEN);
    // The stand-in refuses only what is clearly too fast: at most 30 in a second, and two to one chat
    // within half a second (a send can reach it late, never early).
    api.limit(30, Duration::from_millis(500));
    // The group's messages do not mention the bot: answer them all.
    let (home, gateway) = start(&api, "group_respond = \"all\"\n");
    let mut expected: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for n in 0..EACH {
        for chat in 1..=CHATS {
            let text = format!("c{chat} n{n}");
            api.user_says(USER, 2000 + chat, &text);
            expected
                .entry(2000 + chat)
                .or_default()
                .push(format!("echo: {text}"));
        }
    }
    for n in 0..3 {
        let text = format!("group n{n}");
        api.user_says(USER, GROUP, &text);
        expected.entry(GROUP).or_default().push(format!("echo: {text}"));
    }
    let total: usize = expected.values().map(Vec::len).sum();
    wait_for("every reply", || api.sent().len() >= total);
    std::thread::sleep(Duration::from_millis(500));
    let sent = api.sent_timed();
    let chats = by_chat(&sent);
    for (chat, want) in &expected {
        let got: Vec<&str> = chats[chat].iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(got, *want, "chat {chat}: each reply once, in order");
    }
    assert_eq!(sent.len(), total, "nothing else was sent");
    // One a second per private chat, 20 a minute (3 s apart) in the group, with tolerance for a send
    // the stand-in reads late.
    for (chat, list) in &chats {
        let gap = smallest_gap(list).unwrap_or(Duration::MAX);
        let least = if *chat < 0 {
            Duration::from_millis(2_000)
        } else {
            Duration::from_millis(600)
        };
        assert!(gap >= least, "chat {chat}: two messages {gap:?} apart");
    }
    // The chats were served together: every chat had its first reply before any chat had its last.
    let first_last = chats
        .values()
        .filter(|l| l.len() == EACH)
        .map(|l| l[0].0)
        .max()
        .unwrap();
    let earliest_last = chats
        .values()
        .filter(|l| l.len() == EACH)
        .map(|l| l[EACH - 1].0)
        .min()
        .unwrap();
    assert!(
        first_last < earliest_last,
        "a chat got its first reply only after another had all of its replies"
    );
    eprintln!("pace: {} 429(s) provoked", api.refused());
    assert!(api.refused() <= 3, "{} 429s provoked", api.refused());
    stop(&home, gateway);
}

#[test]
fn a_retry_after_holds_its_own_chat_and_no_other() {
    let api = BotApi::start(TOKEN);
    let (home, gateway) = start(&api, "");
    api.fail_next_to(41, Fault::too_many(4), 1);
    api.user_says(USER, 41, "held a");
    api.user_says(USER, 41, "held b");
    api.user_says(USER, 42, "free");
    wait_for("every reply", || api.sent().len() >= 3);
    std::thread::sleep(Duration::from_millis(300));
    let sent = api.sent_timed();
    let chats = by_chat(&sent);
    let texts = |chat: i64| chats[&chat].iter().map(|(_, t)| t.clone()).collect::<Vec<_>>();
    assert_eq!(texts(41), ["echo: held a", "echo: held b"], "in order, once each");
    assert_eq!(texts(42), ["echo: free"]);
    // Chat 42 did not wait for chat 41's 429.
    assert!(
        chats[&42][0].0 < chats[&41][0].0,
        "the other chat waited on a 429 not its own"
    );
    // Chat 41's first accepted reply came no sooner than retry_after (4 s) after the gateway started
    // sending: the 42 reply went out at about the same moment as the refused try.
    let held = chats[&41][0].0.duration_since(chats[&42][0].0);
    assert!(
        held >= Duration::from_millis(3_000),
        "retry_after not honoured: {held:?}"
    );
    stop(&home, gateway);
}

#[test]
fn a_slower_configured_rate_is_kept() {
    let api = BotApi::start(TOKEN);
    let (home, gateway) = start(&api, "send_per_second = 2\n");
    for chat in 1..=6 {
        api.user_says(USER, 3000 + chat, &format!("to {chat}"));
    }
    wait_for("every reply", || api.sent().len() >= 6);
    let sent = api.sent_timed();
    // Six chats at two a second overall: the last left 2.5 s after the first (less a margin
    // for a send read late).
    let span = sent[5].0.duration_since(sent[0].0);
    assert!(span >= Duration::from_millis(2_000), "six sends within {span:?}");
    stop(&home, gateway);
}

#[test]
fn denials_and_command_answers_keep_the_pace_too() {
    const STRANGER: i64 = 55;
    let api = BotApi::start(TOKEN);
    api.limit(30, Duration::from_millis(500));
    let (home, gateway) = start(&api, "");
    // A stranger writes four times at once, and the owner asks for help twice: each gets its answers
    // (denials, /help) spaced to its chat's rate, none refused by the server.
    for n in 0..4 {
        api.user_says(STRANGER, STRANGER, &format!("let me in {n}"));
    }
    api.user_says(USER, USER, "/help");
    api.user_says(USER, USER, "/help");
    wait_for("four denials and two answers", || {
        api.sent_to(STRANGER).len() == 4 && api.sent_to(USER).len() == 2
    });
    let chats = by_chat(&api.sent_timed());
    for chat in [STRANGER, USER] {
        let gap = smallest_gap(&chats[&chat]).unwrap();
        assert!(gap >= Duration::from_millis(900), "chat {chat}: {gap:?}");
    }
    assert_eq!(api.refused(), 0, "nothing was sent faster than the limits");
    stop(&home, gateway);
}
