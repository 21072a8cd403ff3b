//! `herald-bench telegram`: replies to many Telegram chats at once, against a Bot API stand-in that
//! enforces Telegram's rate limits.
//!
//! The stand-in (std only, in this file) serves `getUpdates` with the official semantics (updates
//! re-delivered until a later offset confirms them, long poll) and `sendMessage` under the limits Telegram
//! gives a bot: at most `--rate` accepted messages in any one second overall, and at least `1/--per-chat`
//! seconds between two messages to one chat; beyond either it answers 429 with `retry_after` (the whole
//! seconds until a message would be accepted, at least 1) and counts it. `--latency-ms` delays every
//! answer, for a network between the gateway and Telegram.
//!
//! A real `herald run --no-supervise` (echo agent, `[telegram]` pointed at the stand-in, everyone
//! allowed) gets `--messages` text messages from `--chats` distinct private chats, all queued before it
//! starts (round robin: chat 1's first, chat 2's first, …). The figures: replies/s sustained (the middle
//! 80 % of replies over the time they took; and first to last), 429s provoked, replies out of order
//! within a chat, lost (never accepted) and doubled (accepted twice).

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

use crate::session::Session;

const USAGE: &str = "\
usage: herald-bench telegram [--chats N] [--messages M] [--rate R] [--per-chat C] [--latency-ms L]
                             [--herald PATH] [--json PATH]

Telegram replies through the real gateway to a Bot API stand-in enforcing R messages/s overall (default
30) and C/s per chat (default 1), answering 429 with retry_after beyond: M messages (default 1500) from N
distinct chats (default 300), replies/s sustained, 429s provoked, order within each chat, lost and
doubled. L delays every answer of the stand-in (default 0).";

pub(crate) const TOKEN: &str = "4242:BENCH-TOKEN";
/// The longest the bench waits for the last reply after the expected time at the rate cap.
const SLACK: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Options {
    chats: usize,
    messages: usize,
    rate: usize,
    per_chat: u32,
    latency: Duration,
    herald: Option<PathBuf>,
    json: PathBuf,
}

fn parse(args: &[String]) -> anyhow::Result<Option<Options>> {
    let mut options = Options {
        chats: 300,
        messages: 1500,
        rate: 30,
        per_chat: 1,
        latency: Duration::ZERO,
        herald: None,
        json: "target/bench/telegram.json".into(),
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = || iter.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--chats" => options.chats = value()?.parse().context("--chats wants a number")?,
            "--messages" => options.messages = value()?.parse().context("--messages wants a number")?,
            "--rate" => options.rate = value()?.parse().context("--rate wants a number")?,
            "--per-chat" => options.per_chat = value()?.parse().context("--per-chat wants a number")?,
            "--latency-ms" => {
                options.latency =
                    Duration::from_millis(value()?.parse().context("--latency-ms wants a number")?);
            }
            "--herald" => options.herald = Some(value()?.into()),
            "--json" => options.json = value()?.into(),
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    ensure!(options.chats > 0, "--chats must be positive");
    ensure!(
        options.messages >= options.chats,
        "--messages must be at least --chats"
    );
    ensure!(
        options.rate > 0 && options.per_chat > 0,
        "--rate and --per-chat must be positive"
    );
    Ok(Some(options))
}

pub fn main(args: &[String], herald: &Path) -> anyhow::Result<()> {
    let Some(options) = parse(args)? else {
        println!("{USAGE}");
        return Ok(());
    };
    let herald = options.herald.clone().unwrap_or_else(|| herald.to_path_buf());
    let machine = crate::machine::Machine::probe();
    let stand_in = StandIn::start(
        options.rate,
        Duration::from_secs(1) / options.per_chat,
        options.latency,
    )?;
    // Round robin, so each chat's messages are spread over the whole run.
    for k in 0..options.messages {
        let chat = (k % options.chats) as i64 + 1;
        stand_in.user_says(chat, &format!("c{chat} n{}", k / options.chats));
    }
    let mut session = Session::new(&herald, &["--no-supervise".to_owned()])?;
    session.append_config(&format!(
        "\n[telegram]\nenabled = true\ntoken = \"{TOKEN}\"\napi_base = \"{}\"\nallow_all = true\n\
         poll_timeout_secs = 1\nmin_poll_interval_ms = 50\noutage_notices = false\n",
        stand_in.url
    ))?;
    eprintln!(
        "herald-bench telegram: {} messages from {} chats, stand-in at {}/s overall and {}/s per chat, \
         {} ms latency; {}",
        options.messages,
        options.chats,
        options.rate,
        options.per_chat,
        options.latency.as_millis(),
        machine.summary()
    );
    session.start()?;
    let started = Instant::now();
    let expected = Duration::from_secs_f64(options.messages as f64 / options.rate as f64);
    let deadline = started + expected + SLACK;
    while stand_in.accepted() < options.messages && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    // A little longer: anything sent twice shows up.
    std::thread::sleep(Duration::from_secs(2));
    session.stop()?;
    let result = stand_in.result(options.chats);
    let report = json!({
        "date": crate::machine::now_rfc3339(),
        "machine": machine.to_json(),
        "herald": herald.display().to_string(),
        "chats": options.chats,
        "messages": options.messages,
        "rate": options.rate,
        "per_chat": options.per_chat,
        "latency_ms": options.latency.as_millis() as u64,
        "result": result.to_json(),
        "command": std::env::args().collect::<Vec<_>>(),
    });
    crate::report::save_json(&options.json, &report)?;
    println!("{}", result.table(options.messages));
    Ok(())
}

/// What the stand-in saw.
#[derive(Debug)]
struct Outcome {
    accepted: usize,
    refused: usize,
    /// Replies/s over the middle 80 % of accepted replies.
    sustained: f64,
    /// Replies/s from the first accepted reply to the last.
    overall: f64,
    /// Most accepted in any one second (sliding, per accepted reply).
    peak_second: usize,
    /// Smallest gap between two accepted messages to one chat.
    min_chat_gap_ms: f64,
    out_of_order: usize,
    lost: usize,
    doubled: usize,
    foreign: usize,
}

impl Outcome {
    fn to_json(&self) -> Value {
        json!({
            "accepted": self.accepted,
            "refused_429": self.refused,
            "sustained_per_sec": self.sustained,
            "first_to_last_per_sec": self.overall,
            "peak_second": self.peak_second,
            "min_chat_gap_ms": self.min_chat_gap_ms,
            "out_of_order": self.out_of_order,
            "lost": self.lost,
            "doubled": self.doubled,
            "unrecognised": self.foreign,
        })
    }

    fn table(&self, messages: usize) -> String {
        format!(
            "| figure | value |\n|---|---|\n\
             | replies/s sustained (middle 80 %) | {:.1} |\n\
             | replies/s first to last | {:.1} |\n\
             | most accepted in one second | {} |\n\
             | smallest gap within a chat | {:.0} ms |\n\
             | 429s provoked | {} |\n\
             | accepted / expected | {} / {messages} |\n\
             | out of order within a chat | {} |\n\
             | lost | {} |\n\
             | doubled | {} |",
            self.sustained,
            self.overall,
            self.peak_second,
            self.min_chat_gap_ms,
            self.refused,
            self.accepted,
            self.out_of_order,
            self.lost,
            self.doubled
        )
    }
}

#[derive(Debug, Default)]
struct State {
    next_update_id: i64,
    updates: VecDeque<(i64, Value)>,
    /// Accepted messages: when, chat, text.
    sent: Vec<(Instant, i64, String)>,
    /// Accepted in the last second, for the overall limit.
    window: VecDeque<Instant>,
    last_to_chat: BTreeMap<i64, Instant>,
    refused: usize,
    /// When each `getUpdates` arrived.
    polls: Vec<Instant>,
}

pub(crate) struct StandIn {
    pub(crate) url: String,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl StandIn {
    pub(crate) fn start(rate: usize, chat_gap: Duration, latency: Duration) -> anyhow::Result<StandIn> {
        let listener = TcpListener::bind("127.0.0.1:0").context("cannot listen for the stand-in")?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new((
            Mutex::new(State {
                next_update_id: 1,
                ..State::default()
            }),
            Condvar::new(),
        ));
        let shared = state.clone();
        let limits = Limits {
            rate,
            chat_gap,
            latency,
        };
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let shared = shared.clone();
                std::thread::spawn(move || serve(stream, &shared, limits));
            }
        });
        Ok(StandIn { url, state })
    }

    /// The first `getUpdates` that arrived after `since`, if one did.
    pub(crate) fn first_poll_after(&self, since: Instant) -> Option<Instant> {
        self.lock().polls.iter().copied().find(|at| *at > since)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn user_says(&self, chat: i64, text: &str) {
        let mut state = self.lock();
        let id = state.next_update_id;
        state.next_update_id += 1;
        state.updates.push_back((
            id,
            json!({"update_id": id, "message": {
                "message_id": id, "date": 1,
                "from": {"id": chat, "is_bot": false, "first_name": "Bench"},
                "chat": {"id": chat, "type": "private"},
                "text": text,
            }}),
        ));
        self.state.1.notify_all();
    }

    fn accepted(&self) -> usize {
        self.lock().sent.len()
    }

    fn result(&self, chats: usize) -> Outcome {
        let state = self.lock();
        let sent = &state.sent;
        let times: Vec<Instant> = sent.iter().map(|(t, _, _)| *t).collect();
        let rate = |from: usize, to: usize| -> f64 {
            let span = times[to].duration_since(times[from]).as_secs_f64();
            if span > 0.0 {
                (to - from) as f64 / span
            } else {
                0.0
            }
        };
        let n = times.len();
        let (sustained, overall) = if n >= 10 {
            (rate(n / 10, n - 1 - n / 10), rate(0, n - 1))
        } else {
            (0.0, 0.0)
        };
        let mut peak_second = 0;
        let mut from = 0;
        for (i, t) in times.iter().enumerate() {
            while t.duration_since(times[from]) >= Duration::from_secs(1) {
                from += 1;
            }
            peak_second = peak_second.max(i + 1 - from);
        }
        // Per chat: the sequence numbers in the order accepted, and the gaps.
        let mut per: BTreeMap<i64, (Vec<usize>, Option<Instant>)> = BTreeMap::new();
        let mut min_gap = f64::INFINITY;
        let mut foreign = 0;
        for (at, chat, text) in sent {
            let number = text
                .strip_prefix(&format!("echo: c{chat} n"))
                .and_then(|n| n.parse::<usize>().ok());
            let entry = per.entry(*chat).or_default();
            if let Some(last) = entry.1 {
                min_gap = min_gap.min(at.duration_since(last).as_secs_f64() * 1000.0);
            }
            entry.1 = Some(*at);
            match number {
                Some(number) => entry.0.push(number),
                None => foreign += 1,
            }
        }
        let (mut out_of_order, mut doubled) = (0, 0);
        for chat in 1..=chats as i64 {
            let got = per.get(&chat).map(|(g, _)| g.clone()).unwrap_or_default();
            out_of_order += got.windows(2).filter(|w| w[1] < w[0]).count();
            let mut unique = got.clone();
            unique.sort_unstable();
            unique.dedup();
            doubled += got.len() - unique.len();
        }
        // Each update asked for one reply.
        let expected_total = state.next_update_id as usize - 1;
        let distinct: usize = per
            .values()
            .map(|(g, _)| {
                let mut u = g.clone();
                u.sort_unstable();
                u.dedup();
                u.len()
            })
            .sum();
        let lost = expected_total.saturating_sub(distinct);
        Outcome {
            accepted: sent.len(),
            refused: state.refused,
            sustained,
            overall,
            peak_second,
            min_chat_gap_ms: if min_gap.is_finite() { min_gap } else { 0.0 },
            out_of_order,
            lost,
            doubled,
            foreign,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    rate: usize,
    chat_gap: Duration,
    latency: Duration,
}

fn serve(stream: TcpStream, shared: &Arc<(Mutex<State>, Condvar)>, limits: Limits) {
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    while let Some((path, body)) = crate::request::read(&mut reader) {
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !limits.latency.is_zero() {
            std::thread::sleep(limits.latency);
        }
        let (status, answer) = handle(shared, limits, &path, &body);
        let bytes = answer.to_string();
        // One write: a head and a body written apart meet Nagle's algorithm and the client's delayed
        // ACK, which adds 40 ms to every answer on Linux.
        let response = format!(
            "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{bytes}",
            if status == 200 { "OK" } else { "Error" },
            bytes.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn handle(shared: &Arc<(Mutex<State>, Condvar)>, limits: Limits, path: &str, body: &Value) -> (u16, Value) {
    let method = path.strip_prefix(&format!("/bot{TOKEN}/")).unwrap_or_default();
    let (lock, cvar) = &**shared;
    let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
    match method {
        "getUpdates" => {
            state.polls.push(Instant::now());
            let offset = body.get("offset").and_then(Value::as_i64);
            let timeout = body.get("timeout").and_then(Value::as_u64).unwrap_or(0).min(30);
            let confirm = |state: &mut State| {
                if let Some(offset) = offset {
                    while state.updates.front().is_some_and(|(id, _)| *id < offset) {
                        state.updates.pop_front();
                    }
                }
            };
            confirm(&mut state);
            let deadline = Instant::now() + Duration::from_secs(timeout);
            while state.updates.is_empty() {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                state = cvar
                    .wait_timeout(state, deadline - now)
                    .map(|(s, _)| s)
                    .unwrap_or_else(|e| e.into_inner().0);
                confirm(&mut state);
            }
            let result: Vec<Value> = state.updates.iter().take(100).map(|(_, u)| u.clone()).collect();
            (200, json!({"ok": true, "result": result}))
        }
        "sendMessage" => {
            let now = Instant::now();
            let chat = body.get("chat_id").and_then(Value::as_i64).unwrap_or_default();
            let text = body
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            while state
                .window
                .front()
                .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
            {
                state.window.pop_front();
            }
            let overall_free = if state.window.len() >= limits.rate {
                state
                    .window
                    .front()
                    .map(|t| (*t + Duration::from_secs(1)).saturating_duration_since(now))
            } else {
                None
            };
            let chat_free = state
                .last_to_chat
                .get(&chat)
                .map(|last| (*last + limits.chat_gap).saturating_duration_since(now))
                .filter(|d| !d.is_zero());
            if let Some(wait) = overall_free.max(chat_free) {
                state.refused += 1;
                let retry_after = wait.as_secs_f64().ceil().max(1.0) as u64;
                return (
                    429,
                    json!({"ok": false, "error_code": 429, "description":
                        format!("Too Many Requests: retry after {retry_after}"),
                        "parameters": {"retry_after": retry_after}}),
                );
            }
            state.window.push_back(now);
            state.last_to_chat.insert(chat, now);
            state.sent.push((now, chat, text.clone()));
            let id = state.sent.len();
            (
                200,
                json!({"ok": true, "result": {"message_id": id, "date": 1, "chat": {"id": chat}, "text": text}}),
            )
        }
        "sendChatAction" => (200, json!({"ok": true, "result": true})),
        "getMe" => (
            200,
            json!({"ok": true, "result": {"id": 4242, "is_bot": true, "username": "bench_bot"}}),
        ),
        _ => (
            404,
            json!({"ok": false, "error_code": 404, "description": "Not Found"}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_flags_with_defaults() {
        let options = parse(&[]).unwrap().unwrap();
        assert_eq!((options.chats, options.messages, options.rate), (300, 1500, 30));
        let options = parse(&args(&[
            "--chats",
            "10",
            "--messages",
            "50",
            "--latency-ms",
            "40",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!((options.chats, options.messages), (10, 50));
        assert_eq!(options.latency, Duration::from_millis(40));
        assert!(parse(&args(&["--chats", "10", "--messages", "5"])).is_err());
        assert!(parse(&args(&["--bogus"])).is_err());
        assert!(parse(&args(&["--help"])).unwrap().is_none());
    }
}
