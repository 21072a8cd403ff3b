//! Three real gateways sharing one PostgreSQL journal (`[journal] url`, lease TTL 3 s), behind clients
//! that spread keyed messages across them and people writing to a Telegram bot (the Bot API stand-in),
//! while replicas are killed (`SIGKILL`), paused past their lease (`SIGSTOP`, then `SIGCONT`; a pause
//! hits the bot's poller) and the database itself is restarted (`pg_ctl restart -m fast`). At the end
//! every acknowledged message has exactly one reply, every message ever sent has at most one turn, no
//! turn is left unfinished, every message to the bot has one turn and its answer in its chat, the
//! stand-in never saw two `getUpdates` at once (the stale commits fencing refused are counted), and —
//! from the agent's own log of when each run began and ended — no turn was ever run by two agents at the
//! same time. A replica paused past its lease finds its turns taken and stops by itself; `status` shows
//! the cluster. The other tests here time the bot's moves, watch a database outage, and follow webhook
//! callbacks across replicas.
//!
//! Runs on the shared test cluster (`HERALD_TEST_POSTGRES_URL`, restarted with `HERALD_TEST_PG_CTL`:
//! cargo runs one test binary at a time, and this file's tests run one after the other under a lock).
//! Knobs for a longer run by hand: `HERALD_REPLICA_CHAOS_SECS` (default 20), `HERALD_REPLICA_CLIENTS`
//! (default 6).

#![cfg(all(unix, feature = "postgres"))]

#[path = "support/bot_api.rs"]
mod bot_api;
#[path = "support/database.rs"]
mod database;
mod support;
#[path = "support/webhook_receiver.rs"]
mod webhook_receiver;

use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bot_api::BotApi;
use database::Database;
use herald_home::records::HealthState;
use serde_json::Value;
use support::{Gateway, TestHome, test_agent, try_http, wait_for};
use webhook_receiver::{Receiver, SECRET, SECRET_VAR};

/// This file's tests restart the database and time failovers: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn unix_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()
}

/// A small xorshift generator (the fault schedule and the clients' choices).
struct Rng(u64);

impl Rng {
    fn seeded(salt: u64) -> Rng {
        Rng((unix_ms() as u64 ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low)
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One replica: its home, port and current process; when each of its processes ended.
struct Replica {
    home: TestHome,
    port: u16,
    password: String,
    gateway: Option<Gateway>,
    pid: u32,
}

impl Replica {
    /// A replica whose agent is the `test_agent`, logging to `log`, with `rest` after.
    fn new(db: &Database, log: &Path, rest: &str) -> Replica {
        let quote = |p: &Path| serde_json::to_string(&p.display().to_string()).unwrap();
        Replica::with(
            db,
            &format!(
                "[agent]\nbackend = \"command\"\nmax_concurrent_turns = 8\n\n\
                 [agent.command]\ncommand = [{}, {}]\ntimeout_secs = 60\n\n{rest}",
                quote(&test_agent()),
                quote(log)
            ),
        )
    }

    /// A replica with `rest` after its `[http]` and `[journal]` sections (lease TTL 3 s).
    fn with(db: &Database, rest: &str) -> Replica {
        let home = TestHome::new();
        let port = free_port();
        home.write(
            "herald.toml",
            format!(
                "[http]\nlisten = \"127.0.0.1:{port}\"\n\n[journal]\nurl = \"{}\"\n\
                 password_env = \"HERALD_JOURNAL_PASSWORD\"\nlease_ttl_secs = 3\n\n{rest}",
                db.url(),
            )
            .as_bytes(),
        );
        let mut replica = Replica {
            home,
            port,
            password: db.password.clone(),
            gateway: None,
            pid: 0,
        };
        replica.start();
        replica
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home.root.join("gateway.log"))
            .unwrap();
        let mut cmd = self.home.cmd(&["run", "--no-supervise"]);
        cmd.env("HERALD_JOURNAL_PASSWORD", &self.password)
            .env("HERALD_TEST_TG_TOKEN", TG_TOKEN)
            .env(SECRET_VAR, SECRET)
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let gateway = Gateway::from_child(cmd.spawn().unwrap());
        self.pid = gateway.pid();
        self.home.wait_running(&gateway);
        self.gateway = Some(gateway);
    }

    /// How its Telegram adapter is doing, from its state record.
    fn telegram(&self) -> Option<HealthState> {
        let state = self.home.state()?;
        if state.pid != self.pid {
            return None;
        }
        state
            .adapters
            .iter()
            .find(|a| a.name == "telegram")
            .map(|a| a.state)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.home.root.join("gateway.log")).unwrap_or_default()
    }
}

/// When each gateway process (by pid) was seen to end.
type Ends = Arc<Mutex<HashMap<u32, u128>>>;

/// A keyed message sent until it is answered: to a random replica, again (same id) to another when
/// one does not answer.
fn send_until_answered(
    rng: &mut Rng,
    urls: &[String],
    session: &str,
    id: &str,
    text: &str,
    stop: &AtomicBool,
) -> Option<String> {
    let body = serde_json::json!({"text": text, "id": id}).to_string();
    let mut attempt = rng.below(urls.len() as u64) as usize;
    loop {
        let url = &urls[attempt % urls.len()];
        attempt += 1;
        let answer = try_http(
            url,
            "POST",
            &format!("/v1/sessions/{session}/messages"),
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        if let Ok(answer) = answer
            && answer.status == 200
        {
            let json: Value = serde_json::from_str(&answer.body).unwrap();
            assert_eq!(json["status"], "done", "{json}");
            return Some(json["reply"]["text"].as_str().unwrap().to_owned());
        }
        if stop.load(Ordering::SeqCst) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

const TG_TOKEN: &str = "4242:replica-test-token";

/// What people said to the bot: (chat, text), in order.
type Said = Arc<Mutex<Vec<(i64, String)>>>;

/// User 7 writes to the bot through `api` every `every`, into three chats in turn, until `stop`.
fn people_write(
    api: &Arc<BotApi>,
    stop: &Arc<AtomicBool>,
    every: Duration,
) -> (std::thread::JoinHandle<()>, Said) {
    let said: Said = Arc::default();
    let (api, stop, log) = (api.clone(), stop.clone(), said.clone());
    let writer = std::thread::spawn(move || {
        let mut n = 0;
        while !stop.load(Ordering::SeqCst) {
            n += 1;
            let chat = 100 + n % 3;
            let text = format!("hello {n}");
            api.user_says(7, chat, &text);
            log.lock().unwrap().push((chat, text));
            std::thread::sleep(every);
        }
    });
    (writer, said)
}

/// `[telegram]` for the Bot API stand-in `api`, letting user 7 in.
fn telegram_config(api: &BotApi) -> String {
    format!(
        "[telegram]\nenabled = true\ntoken_env = \"HERALD_TEST_TG_TOKEN\"\napi_base = \"{}\"\n\
         allowed_users = [7]\npoll_timeout_secs = 2\nmin_poll_interval_ms = 100\n",
        api.url
    )
}

#[test]
fn replicas_share_the_journal_through_kills_pauses_and_a_database_restart() {
    let _serial = serial();
    let Some(db) = Database::create() else { return };
    let secs: u64 = std::env::var("HERALD_REPLICA_CHAOS_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let clients: usize = std::env::var("HERALD_REPLICA_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let dir = tempfile::tempdir().unwrap();
    let agent_log = dir.path().join("agent.log");
    let api = Arc::new(BotApi::start(TG_TOKEN));
    let bot = telegram_config(&api);
    let mut replicas: Vec<Replica> = (0..3).map(|_| Replica::new(&db, &agent_log, &bot)).collect();
    let urls: Vec<String> = replicas.iter().map(Replica::url).collect();

    // The cluster as `status` shows it: three live replicas, this one marked.
    wait_for("every replica to see the others", || {
        replicas.iter().all(|r| {
            r.home
                .state()
                .and_then(|s| s.cluster)
                .is_some_and(|c| c.replicas.iter().filter(|r| r.alive).count() == 3)
        })
    });
    let status = replicas[0].home.output(&["status"]);
    let shown = support::text(&status);
    assert!(shown.contains("replicas: 3 live of 3 (lease 3 s)"), "{shown}");
    assert_eq!(shown.matches("\n    * ").count(), 1, "{shown}");

    // Clients: each its own session, one message at a time, each message retried until answered.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let sent: Arc<Mutex<Vec<String>>> = Arc::default();
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (urls, stop, acked, sent) = (urls.clone(), stop.clone(), acked.clone(), sent.clone());
            std::thread::spawn(move || {
                let mut rng = Rng::seeded(c as u64 + 1);
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let id = format!("c{c}-m{n}");
                    let text = format!("sleep:{}:{id}", rng.between(10, 120));
                    sent.lock().unwrap().push(id.clone());
                    if let Some(reply) =
                        send_until_answered(&mut rng, &urls, &format!("c{c}"), &id, &text, &stop)
                    {
                        assert_eq!(reply, format!("agent: {text}"));
                        acked.lock().unwrap().insert(id, reply);
                    }
                }
            })
        })
        .collect();

    // And people write to the bot all along, which one replica at a time polls.
    let (writer, said) = people_write(&api, &stop, Duration::from_millis(200));

    // Faults, one at a time, each replica brought back after its fault. A pause hits the replica
    // polling the bot, when one does.
    let ends: Ends = Arc::default();
    let mut rng = Rng::seeded(0);
    let began = Instant::now();
    let deadline = began + Duration::from_secs(secs);
    let (mut kills, mut pauses, mut lost_exits, mut restarted_db) = (0, 0, 0, false);
    let mut poller_pauses = 0;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(rng.between(800, 1600)));
        if !restarted_db && began.elapsed() > Duration::from_secs(secs / 2) {
            // The database itself goes away and comes back under load.
            restarted_db = db.restart();
            continue;
        }
        let fault = rng.below(10);
        let poller = (0..replicas.len()).find(|i| replicas[*i].telegram() == Some(HealthState::Connected));
        let victim = match poller {
            Some(poller) if fault > 5 => poller,
            _ => rng.below(replicas.len() as u64) as usize,
        };
        let replica = &mut replicas[victim];
        match fault {
            0..=5 => {
                replica.gateway.take().unwrap().kill();
                ends.lock().unwrap().insert(replica.pid, unix_ms());
                kills += 1;
                std::thread::sleep(Duration::from_millis(300));
                replica.start();
            }
            _ => {
                // Paused past its lease: the others take its turns; back, it finds itself replaced.
                let gateway = replica.gateway.as_mut().unwrap();
                gateway.signal(libc::SIGSTOP);
                std::thread::sleep(Duration::from_millis(4_500));
                gateway.signal(libc::SIGCONT);
                pauses += 1;
                poller_pauses += usize::from(poller == Some(victim));
                let started = Instant::now();
                let code = loop {
                    if let Some(code) = gateway.try_exit_code() {
                        break Some(code);
                    }
                    if started.elapsed() > Duration::from_secs(10) {
                        break None;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                };
                ends.lock().unwrap().insert(replica.pid, unix_ms());
                // (Still running: nobody took its turns before it renewed its lease, and it serves on.)
                if let Some(code) = code {
                    assert_eq!(code, Some(1), "a replaced replica exits 1: {}", replica.log());
                    lost_exits += 1;
                    replica.gateway = None;
                    replica.start();
                }
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    for thread in threads {
        thread.join().unwrap();
    }
    writer.join().unwrap();
    // Every turn a client left behind is finished by a live replica within a lease or two.
    wait_for("every turn to be finished", || {
        db.query("SELECT count(*) FROM turns WHERE state IN ('pending', 'running', 'interrupted')") == ["0"]
    });
    // Every message to the bot is answered in its chat (at least once: a reply sent just before its
    // replica died, unmarked, is sent again by the next).
    let said = said.lock().unwrap().clone();
    wait_for("every message to the bot to be answered", || {
        said.iter().all(|(chat, text)| {
            api.sent_to(*chat)
                .iter()
                .any(|m| m.text == format!("agent: {text}"))
        })
    });
    for replica in &mut replicas {
        replica.home.output(&["stop"]);
        if let Some(gateway) = replica.gateway.take() {
            let pid = gateway.pid();
            let (code, _) = gateway.wait();
            assert_eq!(code, Some(0), "{}", replica.log());
            ends.lock().unwrap().insert(pid, unix_ms());
        }
    }

    let acked = acked.lock().unwrap().clone();
    let sent = sent.lock().unwrap().clone();
    let stale = db.query("SELECT stale_writes FROM herald_leases WHERE name = 'telegram'");
    let fence = db.query("SELECT fence FROM herald_leases WHERE name = 'telegram'");
    eprintln!(
        "replica chaos: {} sent, {} acknowledged, {kills} kills, {pauses} pauses ({poller_pauses} of the \
         bot's poller; {lost_exits} replaced), database restarted: {restarted_db}; the bot: {} messages, \
         fence {fence:?}, stale commits refused {stale:?}",
        sent.len(),
        acked.len(),
        said.len()
    );
    assert_eq!(
        api.most_concurrent_polls(),
        1,
        "two replicas polled the bot at once"
    );
    // One turn per message to the bot, whichever replica polled it.
    let bot_turns = db.query(
        "SELECT count(*) FROM turns t JOIN sessions s ON s.id = t.session_id WHERE s.adapter = 'telegram'",
    );
    assert_eq!(bot_turns, [said.len().to_string()]);
    assert!(
        acked.len() > 50,
        "too few answers to mean anything: {}",
        acked.len()
    );
    assert!(kills + pauses > 3);

    // Every acknowledged message has exactly one reply, the one its client got; no message made two
    // turns, none has two replies.
    let rows = db.query(
        "SELECT t.message_id || ' ' || count(m.id) || ' ' || coalesce(string_agg(m.text, '|'), '')
         FROM turns t LEFT JOIN messages m ON m.turn_id = t.id AND m.role = 'assistant'
         GROUP BY t.id, t.message_id",
    );
    let mut replies: HashMap<String, (u32, String)> = HashMap::new();
    for row in rows {
        let mut parts = row.splitn(3, ' ');
        let (id, count, text) = (
            parts.next().unwrap().to_owned(),
            parts.next().unwrap().parse().unwrap(),
            parts.next().unwrap_or_default().to_owned(),
        );
        assert!(
            replies.insert(id.clone(), (count, text)).is_none(),
            "{id} made two turns"
        );
    }
    for (id, reply) in &acked {
        let (count, stored) = &replies[id];
        assert_eq!(*count, 1, "{id}: {count} replies");
        assert_eq!(stored, reply, "{id}");
    }
    for (id, (count, _)) in &replies {
        assert!(*count <= 1, "{id}: {count} replies");
    }

    // No turn ever ran twice at once: each run of a turn, from the agent's log, ended before the next
    // began (a run with no end ended with its gateway).
    let runs = std::fs::read_to_string(PathBuf::from(format!("{}.runs", agent_log.display()))).unwrap();
    let ends = ends.lock().unwrap().clone();
    let mut open: HashMap<(String, String), u128> = HashMap::new();
    let mut intervals: BTreeMap<String, Vec<(u128, u128)>> = BTreeMap::new();
    for line in runs.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (kind, turn, at, parent) = (
            fields[0],
            fields[1],
            fields[2].parse::<u128>().unwrap(),
            fields[3],
        );
        let key = (turn.to_owned(), parent.to_owned());
        match kind {
            "start" => {
                if let Some(earlier) = open.insert(key, at) {
                    panic!("turn {turn} started twice by gateway {parent} ({earlier}, {at}) before an end");
                }
            }
            _ => {
                let turn_lines: Vec<&str> = runs
                    .lines()
                    .filter(|l| l.split(' ').nth(1) == Some(turn))
                    .collect();
                let began = open
                    .remove(&key)
                    .unwrap_or_else(|| panic!("an end without its start: {line:?} {turn_lines:#?}"));
                intervals.entry(turn.to_owned()).or_default().push((began, at));
            }
        }
    }
    for ((turn, parent), began) in open {
        let end = ends[&parent.parse::<u32>().unwrap()];
        intervals.entry(turn).or_default().push((began, end));
    }
    let mut reruns = 0;
    for (turn, mut spans) in intervals {
        spans.sort_unstable();
        reruns += spans.len() - 1;
        for pair in spans.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "turn {turn} ran twice at once: {spans:?}");
        }
    }
    eprintln!("replica chaos: {reruns} turns run again after their replica was lost");
}

/// The replica that runs the bot (its Telegram adapter connected) among `replicas`, once one does and
/// every other stands by.
fn leader(replicas: &[Replica]) -> usize {
    let mut found = None;
    wait_for("one replica to run the bot and the others to stand by", || {
        let states: Vec<_> = replicas.iter().map(Replica::telegram).collect();
        let running: Vec<usize> = (0..states.len())
            .filter(|i| states[*i] == Some(HealthState::Connected))
            .collect();
        found = running.first().copied();
        running.len() == 1 && states.iter().all(Option::is_some)
    });
    found.unwrap()
}

/// Waits until a replica other than `old` runs the bot; returns it and how long that took from `since`.
fn taken_over(replicas: &[Replica], old: usize, since: Instant) -> (usize, Duration) {
    let mut found = None;
    wait_for("another replica to take the bot over", || {
        found = (0..replicas.len())
            .find(|i| *i != old && replicas[*i].telegram() == Some(HealthState::Connected));
        found.is_some()
    });
    (found.unwrap(), since.elapsed())
}

/// A bot's poller runs on one replica at a time, and moves: at once when its replica stops, within two
/// lease TTLs when it is killed, and past a pause of its replica beyond the lease — after which the
/// paused replica, resumed, cannot commit (fenced) and stops by itself. The Bot API stand-in never sees
/// two `getUpdates` at once; every message gets one turn and its reply reaches its chat.
#[test]
fn a_bots_poller_runs_on_one_replica_and_moves_when_it_stops_dies_or_pauses() {
    let _serial = serial();
    let Some(db) = Database::create() else { return };
    let api = Arc::new(BotApi::start(TG_TOKEN));
    let telegram = telegram_config(&api);
    let mut replicas: Vec<Replica> = (0..3).map(|_| Replica::with(&db, &telegram)).collect();
    let ttl = Duration::from_secs(3);

    // Users write all along, into three chats.
    let stop = Arc::new(AtomicBool::new(false));
    let (writer, said) = people_write(&api, &stop, Duration::from_millis(150));

    // A planned stop hands the bot over at once (released, not left to expire).
    let first = leader(&replicas);
    let since = Instant::now();
    replicas[first].home.output(&["stop"]);
    let (second, planned) = taken_over(&replicas, first, since);
    replicas[first].gateway.take().unwrap().wait();
    replicas[first].start();

    // A killed one's lease runs out first.
    let since = Instant::now();
    replicas[second].gateway.take().unwrap().kill();
    let (third, killed) = taken_over(&replicas, second, since);
    replicas[second].start();

    // Paused past its lease: another takes over; resumed, it finds itself replaced and stops.
    let paused = third;
    let mut gateway = replicas[paused].gateway.take().unwrap();
    gateway.signal(libc::SIGSTOP);
    let since = Instant::now();
    let (fourth, past_pause) = taken_over(&replicas, paused, since);
    std::thread::sleep(Duration::from_millis(500));
    gateway.signal(libc::SIGCONT);
    let mut code = None;
    wait_for("the paused replica to stop by itself", || {
        code = gateway.try_exit_code();
        code.is_some()
    });
    assert_eq!(code.unwrap(), Some(1), "{}", replicas[paused].log());
    assert!(
        replicas[paused].log().contains("lease"),
        "{}",
        replicas[paused].log()
    );
    drop(gateway);
    replicas[paused].start();
    assert_eq!(leader(&replicas), fourth);

    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let said = said.lock().unwrap().clone();
    wait_for("every message to be answered in its chat", || {
        said.iter().all(|(chat, text)| {
            api.sent_to(*chat)
                .iter()
                .any(|m| m.text == format!("echo: {text}"))
        })
    });
    let repeated: usize = said
        .iter()
        .map(|(chat, text)| {
            let copies = api
                .sent_to(*chat)
                .iter()
                .filter(|m| m.text == format!("echo: {text}"))
                .count();
            copies - 1
        })
        .sum();
    for replica in &mut replicas {
        replica.home.output(&["stop"]);
        if let Some(gateway) = replica.gateway.take() {
            gateway.wait();
        }
    }
    // One turn per message, whichever replica polled it.
    let turns = db.query(
        "SELECT count(*) FROM turns t JOIN sessions s ON s.id = t.session_id WHERE s.adapter = 'telegram'",
    );
    assert_eq!(turns, [said.len().to_string()]);
    let stale = db.query("SELECT stale_writes FROM herald_leases WHERE name = 'telegram'");
    let fence = db.query("SELECT fence FROM herald_leases WHERE name = 'telegram'");
    eprintln!(
        "bot failover: planned stop {planned:?}, kill {killed:?}, pause {past_pause:?} (TTL {ttl:?}); \
         {} messages, {repeated} replies sent twice, fence {fence:?}, stale writes refused {stale:?}",
        said.len()
    );
    assert_eq!(
        api.most_concurrent_polls(),
        1,
        "two replicas polled the bot at once"
    );
    assert!(
        planned < ttl,
        "a planned stop hands the bot over within the TTL: {planned:?}"
    );
    assert!(
        killed < 2 * ttl,
        "a killed replica's bot moves within two TTLs: {killed:?}"
    );
    assert!(past_pause < 2 * ttl, "{past_pause:?}");
}

/// Starts the shared cluster again however the test ends (it is stopped on purpose).
struct StartAgain<'a>(&'a Database);

impl Drop for StartAgain<'_> {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.0.pg_ctl(&["start", "-w"])));
    }
}

/// A database that stops answering makes the gateway degraded where people and probes look — `status`
/// says since when and why, `/readyz` answers 503 — even with no message to store; when it is back, so
/// is the gateway, with nothing to do by hand.
#[test]
fn a_database_outage_is_shown_in_status_and_readiness_and_passes() {
    let _serial = serial();
    let Some(db) = Database::create() else { return };
    let replica = Replica::with(&db, "");
    let url = replica.url();
    let ready = try_http(&url, "GET", "/readyz", &[], b"").unwrap();
    assert_eq!(ready.status, 200, "{}", ready.body);
    {
        if !db.pg_ctl(&["stop", "-m", "fast", "-w"]) {
            eprintln!("skipping: HERALD_TEST_PG_CTL is not set");
            return;
        }
        let _start_again = StartAgain(&db);
        wait_for("the outage in the state record", || {
            replica.home.state().is_some_and(|s| s.journal_outage.is_some())
        });
        let shown = support::text(&replica.home.output(&["status"]));
        assert!(
            shown.contains("journal: degraded, the database has not answered since"),
            "{shown}"
        );
        let ready = try_http(&url, "GET", "/readyz", &[], b"").unwrap();
        assert_eq!(ready.status, 503, "{}", ready.body);
        assert!(ready.body.contains("storage_unavailable"), "{}", ready.body);
        let (_, json) = replica.home.status_json();
        assert!(json["journal_outage"]["error"].is_string(), "{json}");
    }
    wait_for("the outage to pass", || {
        replica.home.state().is_some_and(|s| s.journal_outage.is_none())
    });
    // And it stays passed: connections that died with the server are found closed one by one as they
    // are next used (a read, a write, a renewal), which is no new outage when a new connection works.
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        let ready = try_http(&url, "GET", "/readyz", &[], b"").unwrap();
        assert_eq!(ready.status, 200, "{}", ready.body);
        std::thread::sleep(Duration::from_millis(25));
    }
    let answer = support::post_message(&url, "s", Some("after"), "hello", "").json();
    assert_eq!(answer["status"], "done", "{answer}");
    assert!(!support::text(&replica.home.output(&["status"])).contains("journal: degraded"));
    replica.home.output(&["stop"]);
}

/// Webhook callbacks, which every replica sends: a reply is sent by the replica that ran its turn, so
/// one starting beside it while the receiver is down does not send it as well; the unsent reply of a
/// replica killed meanwhile is claimed by a live one once its lease ran out, and sent once.
#[test]
fn a_webhook_reply_is_sent_by_one_replica_and_a_dead_ones_by_a_live_one() {
    let _serial = serial();
    let Some(db) = Database::create() else { return };
    let receiver = Receiver::start();
    let name = receiver.name("replicas");
    receiver.down(&name, true);
    let hook = format!(
        "[[webhook]]\nname = \"cb\"\nsecret_env = \"{SECRET_VAR}\"\ncallback_url = \"{}/hook/{name}\"\n",
        receiver.url
    );
    let accepted = |log: &[Value], id: &str| {
        log.iter()
            .filter(|e| e["body"]["in_reply_to"] == id && e["status"] == 204)
            .count()
    };
    let tried = |log: &[Value], id: &str| log.iter().any(|e| e["body"]["in_reply_to"] == id);

    // A reply whose callback `a` is retrying when `b` starts.
    let mut a = Replica::with(&db, &hook);
    let body = |text: &str| serde_json::json!({"session": "s", "text": text}).to_string();
    let sent = receiver.send(&a.url(), &name, "cb", "w1", &body("one"));
    assert_eq!(sent.status, 202, "{}", sent.body);
    wait_for("a refused callback", || tried(&receiver.log(&name), "w1"));
    let b = Replica::with(&db, &hook);
    std::thread::sleep(Duration::from_secs(2));
    receiver.down(&name, false);
    wait_for("the callback to be accepted", || {
        accepted(&receiver.log(&name), "w1") > 0
    });
    // Long enough for a second sender's next retry (1 s doubling; at most 4 s by now).
    std::thread::sleep(Duration::from_secs(6));
    let log = receiver.log(&name);
    assert_eq!(accepted(&log, "w1"), 1, "sent once: {log:?}");

    // `a` dies with a reply unsent: `b` claims it after `a`'s lease (3 s) and sends it.
    receiver.down(&name, true);
    let sent = receiver.send(&a.url(), &name, "cb", "w2", &body("two"));
    assert_eq!(sent.status, 202, "{}", sent.body);
    wait_for("a refused callback", || tried(&receiver.log(&name), "w2"));
    a.gateway.take().unwrap().kill();
    let killed = Instant::now();
    receiver.down(&name, false);
    wait_for("the dead replica's reply to be sent", || {
        accepted(&receiver.log(&name), "w2") > 0
    });
    let took = killed.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    let log = receiver.log(&name);
    assert_eq!(accepted(&log, "w2"), 1, "sent once: {log:?}");
    assert!(log.iter().all(|e| e["verified"] == true), "{log:?}");
    assert!(
        b.log().contains("left unsent by replicas that are gone"),
        "{}",
        b.log()
    );
    eprintln!("the dead replica's reply was sent {took:?} after the kill (lease 3 s)");
    assert!(took < Duration::from_secs(20), "{took:?}");
}
