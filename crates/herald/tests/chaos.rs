//! A bounded chaos soak: HTTP clients send messages with idempotency keys and Telegram users write into
//! several chats through the Bot API stand-in (`support/bot_api.rs`), all in the same run, while the
//! gateway is hit, at random moments, by SIGKILL of the worker, SIGKILL of the monitor, planned stops,
//! restarts, `run --replace`, and SIGSTOP/SIGCONT. At the end every acknowledged HTTP message has exactly
//! one reply and no message made two turns; every Telegram message the stand-in accepted has exactly one
//! turn with one reply in the journal, no text twice, its reply reached its chat, the Telegram outbox is
//! empty and no update is left unconfirmed; no herald process of this home is left, the records are
//! consistent, and `status --deep` was healthy before the final stop.
//!
//! Telegram delivery is at least once: the Bot API has no idempotency key for `sendMessage`, so a SIGKILL
//! of the worker between Telegram accepting a reply and the commit of its delivery mark sends that reply
//! again after the restart (at most one per chat per kill: chats are served concurrently, but each chat
//! has one reply out at a time, marked before its next). Every re-send must therefore be matched to a
//! SIGKILL of the worker that happened between the first copy and the re-send, and that no other re-send
//! of the same chat used; a re-send no such kill explains — one after a planned stop, a restart,
//! `--replace`, SIGSTOP/SIGCONT or a kill of the monitor (after which the worker drains) — fails the soak.
//!
//! Bounded by count and time. The default is the short CI run; the knobs, for a long one by hand:
//!
//! - `HERALD_CHAOS_SECS`: how long faults are thrown (default 20);
//! - `HERALD_CHAOS_CLIENTS`: HTTP clients, each sending a message and waiting for its reply (default 4);
//! - `HERALD_CHAOS_TELEGRAM_USERS`: Telegram users, each writing into three chats of its own every 0-400 ms
//!   without waiting for replies (default 2; 0 for HTTP only; see `TG_PAUSE_MS` before raising it much);
//! - `HERALD_CHAOS_MESSAGES`: most messages sent, HTTP and Telegram together (default 5000);
//! - `HERALD_CHAOS_SEED`: the seed of the fault schedule and of the Telegram users (printed by every run).
//!
//! For example: `HERALD_CHAOS_SECS=600 HERALD_CHAOS_CLIENTS=16 HERALD_CHAOS_TELEGRAM_USERS=3
//! HERALD_CHAOS_MESSAGES=1000000 cargo test -p herald --test chaos -- --nocapture`.

#![cfg(unix)]

#[path = "support/bot_api.rs"]
mod bot_api;
mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bot_api::BotApi;
use herald_gateway::agent::Role;
use herald_gateway::journal::{AdapterStore, HistoryStore, SessionKey};
use support::{TestHome, try_http, wait_for};

/// Messages per session: a session's whole history fits in one page of the history API.
const SESSION_MESSAGES: u64 = 200;

const TG_TOKEN: &str = "4242:CHAOS-SECRET-TOKEN";
const TG_TOKEN_ENV: &str = "HERALD_CHAOS_TG_TOKEN";
/// Telegram user `u` has id `TG_USER + u` and writes into chats `TG_CHAT + 10 u + k`, `k < TG_CHATS`.
const TG_USER: i64 = 700;
const TG_CHAT: i64 = 9000;
const TG_CHATS: u64 = 3;
/// A Telegram user waits 0 to this many ms between messages (about 5 messages/s per user, spread over its
/// three chats). Replies are paced to Telegram's limits (`[telegram] send_per_*`: 30/s overall, 1/s per
/// chat by default), which bounds delivery: each chat gets about 1.7 messages/s and one reply/s, so a long
/// soak builds a backlog per chat that must drain within the final wait (90 s).
const TG_PAUSE_MS: u64 = 400;
/// How much earlier than its first copy the stand-in may record a reply whose sender was already being
/// killed: the request was written before the kill landed, but the stand-in's thread may read it later.
const KILL_SLACK: Duration = Duration::from_secs(1);

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small xorshift generator: the soak's randomness, reproducible from the seed it prints.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) on a pid read from this test home's own records; a stale pid only fails.
    unsafe { libc::kill(pid as i32, signal) };
}

/// Every process whose command line names this home (the gateway's monitor, worker, agents).
fn processes_of(home: &Path) -> Vec<u32> {
    let needle = home.display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .map(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false);
        if cmdline.contains(&needle) && !zombie {
            found.push(pid);
        }
    }
    found
}

/// A GET retried until the gateway answers 200: the last fault may still be settling (a worker being
/// restarted refuses connections, a draining one closes them unanswered).
fn get_json(url: &str, path: &str, deadline: Instant) -> serde_json::Value {
    loop {
        match try_http(url, "GET", path, &[], b"") {
            Ok(response) if response.status == 200 => return response.json(),
            other => {
                assert!(
                    Instant::now() < deadline,
                    "GET {path}: {:?}",
                    other.map(|r| (r.status, r.body))
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// A message a Telegram user wrote: the stand-in accepted it as this update.
#[derive(Debug, Clone)]
struct Said {
    update: i64,
    chat: i64,
    text: String,
}

/// Per (chat, reply text): when each copy reached the stand-in, and the message it answered.
type Copies = HashMap<(i64, String), Vec<(Instant, Option<i64>)>>;
/// Per (chat, user text): the journal's turns for it, as (message id, reply texts).
type TurnsOf = HashMap<(i64, String), Vec<(String, Vec<String>)>>;

/// Sends one message until it is answered (same id every time), or the deadline passes.
fn send_until_answered(url: &str, session: &str, id: &str, text: &str, deadline: Instant) -> Option<String> {
    let body = serde_json::json!({"text": text, "id": id}).to_string();
    while Instant::now() < deadline {
        let attempt = try_http(
            url,
            "POST",
            &format!("/v1/sessions/{session}/messages"),
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        if let Ok(response) = attempt
            && response.status == 200
        {
            return response.json()["reply"]["text"].as_str().map(str::to_owned);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn chaos_soak_loses_nothing_and_doubles_nothing() {
    let seconds = env_number("HERALD_CHAOS_SECS", 20);
    let clients = env_number("HERALD_CHAOS_CLIENTS", 4);
    let tg_users = env_number("HERALD_CHAOS_TELEGRAM_USERS", 2);
    let max_messages = env_number("HERALD_CHAOS_MESSAGES", 5000);
    let seed = env_number(
        "HERALD_CHAOS_SEED",
        u64::from(std::process::id()) * 2_654_435_761 + 1,
    );
    eprintln!(
        "chaos: {seconds} s, {clients} HTTP clients, {tg_users} Telegram users, at most {max_messages} \
         messages, seed {seed}"
    );

    let home = TestHome::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    // A real agent process per turn, taking 0-50 ms, so kills land in the middle of turns.
    let agent = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/test_agent");
    assert!(
        agent.exists(),
        "{} is missing: run the tests with `cargo test`",
        agent.display()
    );
    let log = home.root.join("agent.log");
    let api = Arc::new(BotApi::start(TG_TOKEN));
    let users: Vec<i64> = (0..tg_users as i64).map(|u| TG_USER + u).collect();
    let telegram = if tg_users == 0 {
        String::new()
    } else {
        format!(
            "\n[telegram]\nenabled = true\ntoken_env = \"{TG_TOKEN_ENV}\"\napi_base = \"{}\"\n\
             allowed_users = {users:?}\npoll_timeout_secs = 2\nmin_poll_interval_ms = 100\n",
            api.url
        )
    };
    home.write(
        "herald.toml",
        format!(
            "[gateway]\ndrain_timeout_secs = 2\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [supervisor]\ncrash_loop_max_exits = 1000\ncrash_loop_window_secs = 1\n\n\
             [agent]\nbackend = \"command\"\n\n[agent.command]\ncommand = [{:?}, {:?}]\n{telegram}",
            agent.display().to_string(),
            log.display().to_string()
        )
        .as_bytes(),
    );
    // Every command that may start a gateway passes the Telegram token the way a user would: in the
    // environment `token_env` names (a restarted worker inherits it from its monitor).
    let herald = |args: &[&str]| {
        let mut cmd = home.cmd(args);
        cmd.env(TG_TOKEN_ENV, TG_TOKEN);
        cmd
    };
    let start = || {
        let out = herald(&["start", "--timeout", "30"]).output().unwrap();
        assert!(out.status.success(), "{}", support::text(&out));
    };
    start();

    let stop_clients = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let soak_end = Instant::now() + Duration::from_secs(seconds);
    let give_up = soak_end + Duration::from_secs(90);
    let mut workers = Vec::new();
    for c in 0..clients {
        let (url, stop, sent) = (url.clone(), stop_clients.clone(), sent.clone());
        workers.push(std::thread::spawn(move || {
            let mut answered: BTreeMap<String, String> = BTreeMap::new();
            let mut unanswered = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && sent.fetch_add(1, Ordering::Relaxed) < max_messages {
                n += 1;
                let id = format!("c{c}-{n}");
                let text = format!("sleep:{}:msg {id}", n % 50);
                let session = format!("chaos{c}-{}", n / SESSION_MESSAGES);
                match send_until_answered(&url, &session, &id, &text, give_up) {
                    Some(reply) => {
                        assert_eq!(reply, format!("agent: {text}"), "{id}");
                        answered.insert(id, reply);
                    }
                    None => unanswered.push(id),
                }
            }
            (answered, unanswered, n)
        }));
    }
    // Telegram users write at random moments into chats of their own, never waiting for a reply: their
    // messages pile up in the stand-in while the gateway is down and are fetched when it is back.
    let mut talkers = Vec::new();
    for (u, user) in users.iter().copied().enumerate() {
        let (api, stop, sent) = (api.clone(), stop_clients.clone(), sent.clone());
        let mut rng = Rng(seed.rotate_left(7 * (u as u32 + 1)) ^ 0x9e37_79b9_7f4a_7c15);
        talkers.push(std::thread::spawn(move || {
            let mut said = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && sent.fetch_add(1, Ordering::Relaxed) < max_messages {
                n += 1;
                let chat = TG_CHAT + 10 * u as i64 + rng.below(TG_CHATS) as i64;
                let text = format!("sleep:{}:tg u{u}-{n}", rng.below(50));
                let update = api.user_says(user, chat, &text);
                said.push(Said { update, chat, text });
                std::thread::sleep(Duration::from_millis(rng.below(TG_PAUSE_MS)));
            }
            said
        }));
    }

    let mut rng = Rng(seed);
    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
    let mut hits: Vec<(Instant, &str)> = Vec::new();
    let mut replacers: Vec<Child> = Vec::new();
    while Instant::now() < soak_end {
        std::thread::sleep(Duration::from_millis(200 + rng.below(800)));
        let Some(state) = home.state() else { continue };
        let action = match rng.below(6) {
            0 => "kill -9 worker",
            1 => "kill -9 monitor",
            2 => "planned stop + start",
            3 => "restart",
            4 => "run --replace",
            _ => "SIGSTOP/SIGCONT worker",
        };
        *counts.entry(action).or_default() += 1;
        hits.push((Instant::now(), action));
        match action {
            "kill -9 worker" => {
                if let Some(worker) = state.worker_pid {
                    signal(worker, libc::SIGKILL);
                }
            }
            "kill -9 monitor" => {
                signal(state.pid, libc::SIGKILL);
                // The orphaned worker stops itself (its monitor is gone); start a new gateway.
                wait_for("the home to be free", || {
                    !herald_home::lock::InstanceLock::is_held(&home.home().lock_file()).unwrap_or(true)
                });
                start();
            }
            "planned stop + start" => {
                assert!(home.output(&["stop"]).status.success());
                start();
            }
            "restart" => {
                let out = herald(&["restart"]).output().unwrap();
                assert!(out.status.success(), "{}", support::text(&out));
            }
            "run --replace" => {
                let child = herald(&["run", "--replace"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                let pid = child.id();
                replacers.push(child);
                wait_for("the replacement to run", || {
                    home.state().is_some_and(|s| {
                        s.pid == pid && s.state == herald_home::records::GatewayState::Running
                    })
                });
            }
            _ => {
                if let Some(worker) = state.worker_pid {
                    signal(worker, libc::SIGSTOP);
                    std::thread::sleep(Duration::from_millis(300 + rng.below(700)));
                    signal(worker, libc::SIGCONT);
                }
            }
        }
        // Reap replacers that have been replaced in turn.
        replacers.retain_mut(|c| c.try_wait().ok().flatten().is_none());
    }
    stop_clients.store(true, Ordering::Relaxed);

    let mut answered = BTreeMap::new();
    let mut unanswered = Vec::new();
    let mut sessions = Vec::new();
    for (c, worker) in workers.into_iter().enumerate() {
        let (a, u, n) = worker.join().unwrap();
        answered.extend(a);
        unanswered.extend(u);
        sessions.extend((0..=n / SESSION_MESSAGES).map(|s| format!("chaos{c}-{s}")));
    }
    let said: Vec<Said> = talkers.into_iter().flat_map(|t| t.join().unwrap()).collect();
    // Make sure a gateway runs for the final checks (the last action may have left none starting).
    if !herald_home::lock::InstanceLock::is_held(&home.home().lock_file()).unwrap_or(false) {
        start();
    }
    wait_for("the gateway to be running", || {
        home.state()
            .is_some_and(|s| s.state == herald_home::records::GatewayState::Running)
    });

    // Exactly one reply per message, the right one, and one user message per id.
    let mut doubled = 0;
    let mut lost = 0;
    let mut per_id: BTreeMap<String, (u32, Vec<String>)> = BTreeMap::new();
    for session in &sessions {
        let history = get_json(
            &url,
            &format!("/v1/sessions/{session}/messages?limit=1000"),
            give_up,
        );
        for m in history["messages"].as_array().unwrap() {
            let entry = per_id.entry(m["id"].as_str().unwrap().to_owned()).or_default();
            match m["role"].as_str().unwrap() {
                "user" => entry.0 += 1,
                _ => entry.1.push(m["text"].as_str().unwrap().to_owned()),
            }
        }
    }
    for (id, (questions, replies)) in &per_id {
        if *questions != 1 || replies.len() > 1 {
            doubled += 1;
            eprintln!("chaos: {id}: {questions} user messages, replies {replies:?}");
        }
        if let Some(reply) = answered.get(id)
            && replies.first() != Some(reply)
        {
            lost += 1;
            eprintln!("chaos: {id}: acknowledged reply {reply:?} but stored {replies:?}");
        }
    }
    for id in answered.keys() {
        if !per_id.contains_key(id) {
            lost += 1;
            eprintln!("chaos: {id} was answered but is not in the history");
        }
    }

    // Telegram: wait until every message's reply reached its chat and every update is confirmed.
    let replied = |api: &BotApi| {
        let copies: BTreeSet<(i64, String)> = api.sent().into_iter().map(|m| (m.chat_id, m.text)).collect();
        said.iter()
            .filter(|s| copies.contains(&(s.chat, format!("agent: {}", s.text))))
            .count()
    };
    while (replied(&api) < said.len() || api.unconfirmed() > 0) && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(50));
    }

    let deep = home.output(&["status", "--deep"]);
    let deep_healthy = deep.status.success();
    assert!(home.output(&["stop"]).status.success());
    for mut child in replacers {
        let _ = child.wait();
    }
    wait_for("every process of this home to be gone", || {
        processes_of(&home.root).is_empty()
    });
    let pid_record = home.pid_record();

    // Telegram, in the stand-in: every message answered in its chat, threaded to it; extra copies are
    // re-sends, each of which needs a SIGKILL of the worker of its own between the copy before and it.
    let mut tg_lost = 0;
    let mut tg_doubled = 0;
    let mut tg_stray = Vec::new();
    let mut copies: Copies = HashMap::new();
    for (at, m) in api.sent_timed() {
        copies
            .entry((m.chat_id, m.text))
            .or_default()
            .push((at, m.reply_to));
    }
    let expected: HashMap<(i64, String), &Said> = said
        .iter()
        .map(|s| ((s.chat, format!("agent: {}", s.text)), s))
        .collect();
    for (key, list) in &copies {
        if !expected.contains_key(key) {
            tg_stray.push((key.clone(), list.len()));
        }
    }
    // Telegram, in the journal: one turn per update, one user message and one reply per turn, no text
    // twice, and nothing left to deliver.
    let (journal, _) = herald_journal::SqliteJournal::open(&home.home().journal_file()).unwrap();
    let chats: BTreeSet<i64> = said.iter().map(|s| s.chat).collect();
    let mut turns_of: TurnsOf = HashMap::new();
    for chat in &chats {
        let history = journal
            .history(&SessionKey::new("telegram", chat.to_string()), 1_000_000)
            .wait()
            .unwrap();
        let mut turns: BTreeMap<i64, (Vec<&str>, Vec<&str>, String)> = BTreeMap::new();
        for m in &history {
            let turn = turns.entry(m.turn_id).or_default();
            turn.2 = m.message_id.clone();
            match m.role {
                Role::User => turn.0.push(&m.text),
                _ => turn.1.push(&m.text),
            }
        }
        for (turn_id, (questions, replies, message_id)) in turns {
            if questions.len() != 1 || replies.len() != 1 {
                tg_doubled += 1;
                eprintln!(
                    "chaos: telegram chat {chat} turn {turn_id}: user messages {questions:?}, replies {replies:?}"
                );
            }
            for question in questions {
                turns_of.entry((*chat, question.to_owned())).or_default().push((
                    message_id.clone(),
                    replies.iter().map(|r| r.to_string()).collect(),
                ));
            }
        }
    }
    let said_texts: BTreeSet<(i64, &str)> = said.iter().map(|s| (s.chat, s.text.as_str())).collect();
    for ((chat, text), turns) in &turns_of {
        if turns.len() > 1 {
            tg_doubled += 1;
            eprintln!("chaos: telegram chat {chat}: {text:?} made {} turns", turns.len());
        }
        if !said_texts.contains(&(*chat, text.as_str())) {
            tg_doubled += 1;
            eprintln!("chaos: telegram chat {chat}: a turn for {text:?}, which nobody wrote");
        }
    }
    let kills: Vec<Instant> = hits
        .iter()
        .filter(|(_, a)| *a == "kill -9 worker")
        .map(|(at, _)| *at)
        .collect();
    let mut resends: Vec<(Instant, Instant, i64, String)> = Vec::new();
    let mut unthreaded = Vec::new();
    for s in &said {
        let reply = format!("agent: {}", s.text);
        let turn = turns_of.get(&(s.chat, s.text.clone())).and_then(|t| t.first());
        let stored = turn.is_some_and(|(message_id, replies)| {
            message_id.starts_with(&format!("u{}-m", s.update)) && replies == std::slice::from_ref(&reply)
        });
        // The first few tell the story; a stall would print thousands.
        let tell = tg_lost < 20;
        if !stored && tell {
            eprintln!(
                "chaos: telegram update {} ({:?} in chat {}): stored as {turn:?}",
                s.update, s.text, s.chat
            );
        }
        let list = copies
            .get(&(s.chat, reply))
            .map(Vec::as_slice)
            .unwrap_or_default();
        if !stored || list.is_empty() {
            tg_lost += 1;
        }
        if list.is_empty() && tell {
            eprintln!(
                "chaos: telegram update {} ({:?} in chat {}): no reply reached the chat",
                s.update, s.text, s.chat
            );
        }
        let message = turn
            .and_then(|(id, _)| id.rsplit_once("-m"))
            .and_then(|(_, m)| m.parse::<i64>().ok());
        for (i, (at, reply_to)) in list.iter().enumerate() {
            if *reply_to != message {
                unthreaded.push((s.update, *reply_to, message));
            }
            if i > 0 {
                resends.push((
                    list[i - 1].0,
                    *at,
                    s.chat,
                    format!("update {} in chat {}", s.update, s.chat),
                ));
            }
        }
    }
    // Each re-send is matched to a kill of the worker no other re-send of its chat used (earliest
    // deadline first).
    resends.sort_by_key(|(_, end, _, _)| *end);
    let mut used: Vec<BTreeSet<i64>> = vec![BTreeSet::new(); kills.len()];
    let mut unexplained = Vec::new();
    // Milliseconds from b to a (negative when a is earlier).
    let ms = |a: Instant, b: Instant| {
        a.checked_duration_since(b).map_or_else(
            || -(b.duration_since(a).as_millis() as i64),
            |d| d.as_millis() as i64,
        )
    };
    for (first, again, chat, what) in &resends {
        let kill = (0..kills.len())
            .find(|&k| !used[k].contains(chat) && kills[k] + KILL_SLACK >= *first && kills[k] <= *again);
        match kill {
            Some(k) => {
                used[k].insert(*chat);
                eprintln!(
                    "chaos: telegram re-sent {what}: first copy {} ms before the kill of the worker, again {} ms after",
                    ms(kills[k], *first),
                    ms(*again, kills[k])
                );
            }
            None => {
                // A planned stop or a restart can take seconds: show what began up to 5 s before.
                let around: Vec<_> = hits
                    .iter()
                    .filter(|(at, _)| *at + Duration::from_secs(5) >= *first && *at <= *again)
                    .map(|(at, a)| format!("{a} at {} ms", ms(*at, *first)))
                    .collect();
                eprintln!(
                    "chaos: telegram re-sent {what} {} ms after its first copy, with no kill of the worker to \
                     explain it; hits from 5 s before the first copy on (ms from it): {around:?}",
                    ms(*again, *first)
                );
                unexplained.push(what.clone());
            }
        }
    }
    let undelivered = journal.undelivered("telegram", 10).wait().unwrap();
    let unconfirmed = api.unconfirmed();
    let total_kills = counts.get("kill -9 worker").copied().unwrap_or(0)
        + counts.get("kill -9 monitor").copied().unwrap_or(0);
    let restarts = counts.get("planned stop + start").copied().unwrap_or(0)
        + counts.get("restart").copied().unwrap_or(0)
        + counts.get("run --replace").copied().unwrap_or(0);

    eprintln!(
        "chaos: http messages answered {}, unanswered {}; telegram messages {} in {} chats, replies sent {}, \
         telegram re-sent after a kill in the send/mark window: {}; kills {total_kills}, restarts {restarts}, \
         actions {counts:?}; lost {lost} (telegram {tg_lost}), doubled {doubled} (telegram {tg_doubled}), \
         deep healthy {deep_healthy}",
        answered.len(),
        unanswered.len(),
        said.len(),
        chats.len(),
        copies.values().map(Vec::len).sum::<usize>(),
        resends.len(),
    );
    assert_eq!((lost, doubled), (0, 0));
    assert_eq!((tg_lost, tg_doubled), (0, 0), "telegram");
    assert!(unanswered.is_empty(), "never answered: {unanswered:?}");
    assert!(
        tg_stray.is_empty(),
        "telegram messages nobody asked for: {tg_stray:?}"
    );
    assert!(
        unthreaded.is_empty(),
        "replies not threaded to their message: {unthreaded:?}"
    );
    assert!(
        unexplained.is_empty(),
        "{} re-send(s) with no kill of the worker to explain them: {unexplained:?}",
        unexplained.len()
    );
    assert!(resends.len() <= total_kills as usize * chats.len());
    assert!(
        undelivered.is_empty(),
        "the telegram outbox is not empty: {undelivered:?}"
    );
    assert_eq!(unconfirmed, 0, "updates the gateway never confirmed");
    assert!(deep_healthy, "{}", support::text(&deep));
    assert!(
        pid_record.present().is_none(),
        "the PID record outlived the gateway"
    );
    assert!(
        answered.len() >= clients as usize && said.len() >= tg_users as usize,
        "the soak sent too little to mean anything"
    );
}
