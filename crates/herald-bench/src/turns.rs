//! `herald-bench turns`: HTTP echo turns through the real release gateway, each one durably committed
//! (message and reply) before it is answered.
//!
//! Two measurements, both against `herald run --no-supervise` in a fresh home with the `echo` agent:
//! 1. **Throughput and latency at 1, 8 and 64 concurrent clients.** Each client is a thread with its own
//!    keep-alive connection and session, sending `POST /v1/sessions/{s}/messages` (which waits for the
//!    reply) back to back. After a warm-up, every request's latency is recorded for the measuring window;
//!    turns/s is completed turns over the window.
//! 2. **Latency as the store grows.** The journal is filled to 1 000, 10 000 and 100 000 sessions (one
//!    turn each, by 64 clients), and at each size one client times 500 turns in new sessions and 500 in
//!    an existing one.
//!
//! The client is a minimal HTTP/1.1 writer/reader over `TcpStream` so the load generator costs as little
//! CPU as possible: on a 2-core machine it shares the cores with the gateway, so its own overhead counts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

use crate::session::Session;

const USAGE: &str = "\
usage: herald-bench turns [--seconds S] [--clients 1,8,64] [--sessions 1000,10000,100000|none]
                          [--journal-url postgres://USER@HOST:PORT/DB [--replicas N]] [--json PATH]

HTTP echo turns with durable commits: throughput and p50/p99 latency at each client count, then
per-turn latency as the journal grows to each session count. With --journal-url the journal is that
PostgreSQL database (its password in HERALD_JOURNAL_PASSWORD), else state.db in the home; with
--replicas, N gateways share it and the clients are spread across them (client i on replica i mod N).";

const WARM_UP: Duration = Duration::from_secs(1);
const CURVE_SAMPLES: usize = 500;
const FILL_CLIENTS: usize = 64;

#[derive(Debug)]
struct Options {
    seconds: u64,
    clients: Vec<usize>,
    sessions: Vec<usize>,
    journal_url: Option<String>,
    replicas: usize,
    json: std::path::PathBuf,
}

pub fn main(args: &[String], herald: &Path) -> anyhow::Result<()> {
    let Some(options) = parse(args)? else {
        println!("{USAGE}");
        return Ok(());
    };
    let mut replicas = Vec::new();
    let mut authorities = Vec::new();
    for _ in 0..options.replicas {
        let mut session = Session::new(herald, &["--no-supervise".to_owned()])?;
        if let Some(url) = &options.journal_url {
            session.append_config(&format!(
                "\n[journal]\nurl = {url:?}\npassword_env = \"HERALD_JOURNAL_PASSWORD\"\n"
            ))?;
        }
        session.start()?;
        let url = session.http_url().context("the gateway published no HTTP url")?;
        authorities.push(url.strip_prefix("http://").context("an http:// url")?.to_owned());
        replicas.push(session);
    }
    let authority = authorities[0].clone();
    let machine = crate::machine::Machine::probe();
    let journal = options.journal_url.as_deref().unwrap_or("state.db (SQLite)");
    eprintln!(
        "herald-bench turns: {} replica(s) at {}, journal {journal}; {}",
        authorities.len(),
        authorities.join(", "),
        machine.summary()
    );

    let mut levels = Vec::new();
    for &clients in &options.clients {
        let level = load(&authorities, clients, Duration::from_secs(options.seconds))?;
        eprintln!(
            "  {clients:>3} clients: {:>7.0} turns/s  p50 {:>6.2} ms  p99 {:>6.2} ms  ({} turns, {} errors)",
            level.per_sec, level.p50_ms, level.p99_ms, level.turns, level.errors
        );
        levels.push(level);
    }

    let mut curve = Vec::new();
    let mut filled = 0usize;
    for &target in &options.sessions {
        if target > filled {
            fill(&authority, filled, target)?;
            filled = target;
        }
        let point = curve_point(&authority, target)?;
        eprintln!(
            "  {target:>6} sessions: new session p50 {:.2} ms p99 {:.2} ms; existing p50 {:.2} ms p99 {:.2} ms",
            point.new_p50, point.new_p99, point.existing_p50, point.existing_p99
        );
        curve.push(point);
    }
    let db_bytes = std::fs::metadata(replicas[0].root().join("state.db"))
        .map(|m| m.len())
        .ok();
    for session in &mut replicas {
        session.stop()?;
    }

    let report = json!({
        "date": crate::machine::now_rfc3339(),
        "machine": machine.to_json(),
        "seconds": options.seconds,
        "levels": levels.iter().map(Level::to_json).collect::<Vec<_>>(),
        "curve": curve.iter().map(CurvePoint::to_json).collect::<Vec<_>>(),
        "journal_bytes": db_bytes,
        "journal": journal,
        "replicas": options.replicas,
        "command": std::env::args().collect::<Vec<_>>(),
    });
    crate::report::save_json(&options.json, &report)?;
    println!("{}", table(&levels, &curve, db_bytes));
    Ok(())
}

fn parse(args: &[String]) -> anyhow::Result<Option<Options>> {
    let mut options = Options {
        seconds: 5,
        clients: vec![1, 8, 64],
        sessions: vec![1_000, 10_000, 100_000],
        journal_url: None,
        replicas: 1,
        json: "target/bench/turns.json".into(),
    };
    let list = |text: &str| -> anyhow::Result<Vec<usize>> {
        text.split(',')
            .map(|n| {
                n.trim()
                    .parse::<usize>()
                    .with_context(|| format!("not a number: {n:?}"))
            })
            .collect()
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = || iter.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--seconds" => options.seconds = value()?.parse().context("--seconds wants a number")?,
            "--clients" => options.clients = list(value()?)?,
            "--sessions" => {
                let text = value()?;
                options.sessions = if text == "none" { Vec::new() } else { list(text)? };
            }
            "--journal-url" => options.journal_url = Some(value()?.clone()),
            "--replicas" => options.replicas = value()?.parse().context("--replicas wants a number")?,
            "--json" => options.json = value()?.into(),
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    ensure!(options.seconds > 0, "--seconds must be positive");
    ensure!(options.replicas > 0, "--replicas must be positive");
    ensure!(
        options.replicas == 1 || options.journal_url.is_some(),
        "--replicas needs --journal-url: replicas share a PostgreSQL journal"
    );
    ensure!(
        options.clients.iter().all(|c| *c > 0),
        "client counts must be positive"
    );
    Ok(Some(options))
}

/// A keep-alive HTTP/1.1 connection that posts messages.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    authority: String,
    line: String,
}

impl Client {
    pub fn connect(authority: &str) -> anyhow::Result<Client> {
        let stream =
            TcpStream::connect(authority).with_context(|| format!("cannot connect to {authority}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Client {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            authority: authority.to_owned(),
            line: String::new(),
        })
    }

    /// Posts one message, waiting for its reply, and reads the whole response; returns the status code.
    pub fn post(&mut self, session: &str, id: &str, text: &str) -> anyhow::Result<u16> {
        self.post_to(session, id, text, "")
    }

    /// [`Client::post`] with a query string (`?wait=false`).
    pub fn post_to(&mut self, session: &str, id: &str, text: &str, query: &str) -> anyhow::Result<u16> {
        let body = format!(r#"{{"text":"{text}","id":"{id}"}}"#);
        self.post_raw(&format!("/v1/sessions/{session}/messages{query}"), "", &body)
    }

    /// POSTs `body` (JSON) to `path` with `headers` (each line ending in CRLF) and reads the whole
    /// response; returns the status code.
    pub fn post_raw(&mut self, path: &str, headers: &str, body: &str) -> anyhow::Result<u16> {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\n{headers}\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.authority,
            body.len()
        );
        self.writer.write_all(request.as_bytes())?;
        self.line.clear();
        self.reader.read_line(&mut self.line)?;
        let status: u16 = self
            .line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {:?}", self.line))?;
        let mut length = 0usize;
        loop {
            self.line.clear();
            self.reader.read_line(&mut self.line)?;
            let header = self.line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().context("bad content-length")?;
            }
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body)?;
        Ok(status)
    }
}

#[derive(Debug)]
pub struct Level {
    clients: usize,
    pub turns: u64,
    pub errors: u64,
    pub per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Level {
    pub fn to_json(&self) -> Value {
        json!({"clients": self.clients, "turns": self.turns, "errors": self.errors,
               "turns_per_sec": self.per_sec, "p50_ms": self.p50_ms, "p99_ms": self.p99_ms})
    }
}

/// Throughput and latency at each client count, on a fresh `run --no-supervise` gateway.
pub fn levels(herald: &Path, clients: &[usize], seconds: u64) -> anyhow::Result<Vec<Level>> {
    let mut session = Session::new(herald, &["--no-supervise".to_owned()])?;
    session.start()?;
    let url = session.http_url().context("the gateway published no HTTP url")?;
    let authority = url.strip_prefix("http://").context("an http:// url")?.to_owned();
    let mut levels = Vec::new();
    for &c in clients {
        let level = load(std::slice::from_ref(&authority), c, Duration::from_secs(seconds))?;
        eprintln!(
            "herald-bench: {c} HTTP clients: {:.0} turns/s, p50 {:.2} ms, p99 {:.2} ms",
            level.per_sec, level.p50_ms, level.p99_ms
        );
        levels.push(level);
    }
    session.stop()?;
    Ok(levels)
}

/// The levels as report figures (one sample each: a level is one long measurement, not a repetition).
pub fn figures(levels: &[Level]) -> Vec<crate::report::Figure> {
    use crate::report::{Figure, Target};
    let mut out = Vec::new();
    for level in levels {
        let (rate_target, p99_target) = if level.clients == 64 {
            (Some(Target::AtLeast(5000.0)), Some(Target::Below(20.0)))
        } else {
            (None, None)
        };
        let id = |what: &str| format!("http_{}c_{what}", level.clients);
        let name = |what: &str| format!("HTTP echo, {} clients: {what}", level.clients);
        let mut rate = Figure::new(id("turns_per_sec"), name("turns/s"), "/s", rate_target).precision(0);
        rate.samples.push(level.per_sec);
        let mut p50 = Figure::new(id("p50"), name("p50"), "ms", None);
        p50.samples.push(level.p50_ms);
        let mut p99 = Figure::new(id("p99"), name("p99"), "ms", p99_target);
        p99.samples.push(level.p99_ms);
        out.extend([rate, p50, p99]);
    }
    out
}

pub fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    f64::from(sorted[rank.min(sorted.len() - 1)]) / 1000.0
}

/// `clients` threads, each posting back to back to one of `authorities` (client i to i mod their
/// number); latencies recorded after the warm-up.
pub fn load(authorities: &[String], clients: usize, window: Duration) -> anyhow::Result<Level> {
    let start = Arc::new(Barrier::new(clients + 1));
    let measuring = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for t in 0..clients {
        let mut client = Client::connect(&authorities[t % authorities.len()])?;
        let (start, measuring, done, errors) =
            (start.clone(), measuring.clone(), done.clone(), errors.clone());
        threads.push(std::thread::spawn(move || {
            let session = format!("load{clients}-{t}");
            let mut latencies: Vec<u32> = Vec::with_capacity(100_000);
            start.wait();
            let mut n = 0u64;
            while !done.load(Ordering::Relaxed) {
                n += 1;
                let began = Instant::now();
                match client.post(&session, &format!("m{n}"), "hello") {
                    Ok(200) => {
                        if measuring.load(Ordering::Relaxed) {
                            latencies.push(u32::try_from(began.elapsed().as_micros()).unwrap_or(u32::MAX));
                        }
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    start.wait();
    std::thread::sleep(WARM_UP);
    measuring.store(true, Ordering::Relaxed);
    let began = Instant::now();
    std::thread::sleep(window);
    measuring.store(false, Ordering::Relaxed);
    let elapsed = began.elapsed();
    done.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for thread in threads {
        all.extend(
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("a client thread panicked"))?,
        );
    }
    all.sort_unstable();
    Ok(Level {
        clients,
        turns: all.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        per_sec: all.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile(&all, 50.0),
        p99_ms: percentile(&all, 99.0),
    })
}

/// Adds sessions `from..to`, one turn each, with [`FILL_CLIENTS`] clients.
fn fill(authority: &str, from: usize, to: usize) -> anyhow::Result<()> {
    let began = Instant::now();
    let mut threads = Vec::new();
    for t in 0..FILL_CLIENTS {
        let mut client = Client::connect(authority)?;
        threads.push(std::thread::spawn(move || -> anyhow::Result<()> {
            for n in (from + t..to).step_by(FILL_CLIENTS) {
                let status = client.post(&format!("fill-{n}"), "f", "hello")?;
                ensure!(status == 200, "fill: status {status}");
            }
            Ok(())
        }));
    }
    for thread in threads {
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("a fill thread panicked"))??;
    }
    eprintln!(
        "  filled to {to} sessions in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    Ok(())
}

#[derive(Debug)]
struct CurvePoint {
    sessions: usize,
    new_p50: f64,
    new_p99: f64,
    existing_p50: f64,
    existing_p99: f64,
}

impl CurvePoint {
    fn to_json(&self) -> Value {
        json!({"sessions": self.sessions, "new_session_p50_ms": self.new_p50, "new_session_p99_ms": self.new_p99,
               "existing_session_p50_ms": self.existing_p50, "existing_session_p99_ms": self.existing_p99})
    }
}

fn curve_point(authority: &str, sessions: usize) -> anyhow::Result<CurvePoint> {
    let mut client = Client::connect(authority)?;
    let mut time = |session: String, id: String| -> anyhow::Result<u32> {
        let began = Instant::now();
        let status = client.post(&session, &id, "hello")?;
        ensure!(status == 200, "curve: status {status}");
        Ok(u32::try_from(began.elapsed().as_micros()).unwrap_or(u32::MAX))
    };
    let mut new = Vec::new();
    let mut existing = Vec::new();
    for i in 0..CURVE_SAMPLES {
        new.push(time(format!("curve{sessions}-{i}"), "c".into())?);
        existing.push(time("curve-existing".into(), format!("c{sessions}-{i}"))?);
    }
    new.sort_unstable();
    existing.sort_unstable();
    Ok(CurvePoint {
        sessions,
        new_p50: percentile(&new, 50.0),
        new_p99: percentile(&new, 99.0),
        existing_p50: percentile(&existing, 50.0),
        existing_p99: percentile(&existing, 99.0),
    })
}

fn table(levels: &[Level], curve: &[CurvePoint], db_bytes: Option<u64>) -> String {
    let mut out = String::from("| clients | turns/s | p50 | p99 | errors |\n|---:|---:|---:|---:|---:|\n");
    for l in levels {
        out.push_str(&format!(
            "| {} | {:.0} | {:.2} ms | {:.2} ms | {} |\n",
            l.clients, l.per_sec, l.p50_ms, l.p99_ms, l.errors
        ));
    }
    out.push_str(
        "\n| sessions in journal | new session p50 / p99 | existing session p50 / p99 |\n|---:|---:|---:|\n",
    );
    for p in curve {
        out.push_str(&format!(
            "| {} | {:.2} / {:.2} ms | {:.2} / {:.2} ms |\n",
            p.sessions, p.new_p50, p.new_p99, p.existing_p50, p.existing_p99
        ));
    }
    if let Some(bytes) = db_bytes {
        out.push_str(&format!(
            "\njournal size at the end: {:.1} MB\n",
            bytes as f64 / 1e6
        ));
    }
    out
}
