//! `herald-bench failover`: how long a bot goes unpolled when the replica running it goes away.
//!
//! Two real gateways (`herald run --no-supervise`, echo agent) share one PostgreSQL journal, both with
//! `[telegram]` pointed at the Bot API stand-in of `herald-bench telegram`; one holds the adapter's
//! lease and polls, the other stands by. Each run takes the polling replica away — a planned stop
//! (`herald stop`: the lease is handed over) or `SIGKILL` (the lease must run out) — and measures, from
//! the moment the old replica is gone (its process reaped), the time until the stand-in receives the
//! next `getUpdates` (from the other replica: the bot is unpolled in between). The replica taken away is
//! started again (it stands by) once the other runs the bot (its state record says Telegram
//! connected), so runs alternate between the two. The target: a killed replica's bot moves within twice
//! the lease TTL.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use herald_home::records::HealthState;
use serde_json::json;

use crate::session::Session;
use crate::telegram::{StandIn, TOKEN};

const USAGE: &str = "\
usage: herald-bench failover --journal-url postgres://USER@HOST:PORT/DB [--lease-ttl S] [--runs N]
                             [--json PATH]

Two replicas on the database (its password in HERALD_JOURNAL_PASSWORD) with Telegram on a Bot API
stand-in; N times each (default 5): the replica polling the bot is stopped (planned) or killed, and the
time until the other one polls is measured. S is [journal] lease_ttl_secs (default 10).";

/// The longest a takeover is waited for.
const LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug)]
struct Options {
    journal_url: String,
    lease_ttl: u64,
    runs: usize,
    json: std::path::PathBuf,
}

fn parse(args: &[String]) -> anyhow::Result<Option<Options>> {
    let (mut url, mut lease_ttl, mut runs) = (None, 10, 5);
    let mut json = std::path::PathBuf::from("target/bench/failover.json");
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = || iter.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--journal-url" => url = Some(value()?.clone()),
            "--lease-ttl" => lease_ttl = value()?.parse().context("--lease-ttl wants seconds")?,
            "--runs" => runs = value()?.parse().context("--runs wants a number")?,
            "--json" => json = value()?.into(),
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    let journal_url = url.context("--journal-url is required: replicas share a PostgreSQL journal")?;
    ensure!(runs > 0, "--runs must be positive");
    Ok(Some(Options {
        journal_url,
        lease_ttl,
        runs,
        json,
    }))
}

/// Whether `session`'s running gateway has its Telegram adapter connected.
fn polls(session: &Session) -> bool {
    let Some(state) = session.state() else {
        return false;
    };
    session.gateway_pid() == Some(state.pid)
        && state
            .adapters
            .iter()
            .any(|a| a.name == "telegram" && a.state == HealthState::Connected)
}

/// Waits until one of `replicas` polls the bot; returns which.
fn poller(replicas: &[Session], since: Instant) -> anyhow::Result<usize> {
    loop {
        if let Some(i) = (0..replicas.len()).find(|i| polls(&replicas[*i])) {
            return Ok(i);
        }
        ensure!(
            since.elapsed() < LIMIT,
            "no replica took the bot over within {LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn main(args: &[String], herald: &Path) -> anyhow::Result<()> {
    let Some(options) = parse(args)? else {
        println!("{USAGE}");
        return Ok(());
    };
    let machine = crate::machine::Machine::probe();
    let stand_in = StandIn::start(1000, Duration::from_millis(1), Duration::ZERO)?;
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let mut session = Session::new(herald, &["--no-supervise".to_owned()])?;
        session.append_config(&format!(
            "\n[journal]\nurl = {:?}\npassword_env = \"HERALD_JOURNAL_PASSWORD\"\nlease_ttl_secs = {}\n\n\
             [telegram]\nenabled = true\ntoken = \"{TOKEN}\"\napi_base = \"{}\"\nallow_all = true\n\
             poll_timeout_secs = 25\nmin_poll_interval_ms = 50\noutage_notices = false\n",
            options.journal_url, options.lease_ttl, stand_in.url
        ))?;
        session.start()?;
        replicas.push(session);
    }
    eprintln!(
        "herald-bench failover: 2 replicas, lease TTL {} s, {} runs each; {}",
        options.lease_ttl,
        options.runs,
        machine.summary()
    );
    let mut planned = Vec::new();
    let mut killed = Vec::new();
    for run in 0..options.runs * 2 {
        let leader = poller(&replicas, Instant::now())?;
        let kill = run % 2 == 1;
        if kill {
            replicas[leader].kill()?;
        } else {
            replicas[leader].stop()?;
        }
        let since = Instant::now();
        let took = loop {
            if let Some(at) = stand_in.first_poll_after(since) {
                break at.duration_since(since);
            }
            ensure!(since.elapsed() < LIMIT, "nobody polled the bot within {LIMIT:?}");
            std::thread::sleep(Duration::from_millis(2));
        };
        let next = poller(&replicas, since)?;
        ensure!(next != leader, "the bot came back to the replica taken away");
        eprintln!(
            "  {}: the bot moved in {:.0} ms",
            if kill { "SIGKILL" } else { "planned stop" },
            took.as_secs_f64() * 1000.0
        );
        if kill { &mut killed } else { &mut planned }.push(took);
        replicas[leader].start()?;
    }
    for session in &mut replicas {
        session.stop()?;
    }
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    let summary = |times: &mut Vec<Duration>| {
        times.sort_unstable();
        json!({
            "median_ms": ms(&times[times.len() / 2]),
            "max_ms": ms(times.last().unwrap_or(&Duration::ZERO)),
            "runs_ms": times.iter().map(ms).collect::<Vec<_>>(),
        })
    };
    let (planned, killed) = (summary(&mut planned), summary(&mut killed));
    let ttl_ms = options.lease_ttl as f64 * 1000.0;
    let report = json!({
        "date": crate::machine::now_rfc3339(),
        "machine": machine.to_json(),
        "lease_ttl_secs": options.lease_ttl,
        "planned_stop": planned,
        "sigkill": killed,
        "target_ms": 2.0 * ttl_ms,
        "command": std::env::args().collect::<Vec<_>>(),
    });
    crate::report::save_json(&options.json, &report)?;
    println!(
        "| bot failover, lease TTL {} s | median | max | target |\n|---|---:|---:|---:|\n\
         | planned stop (lease handed over) | {:.0} ms | {:.0} ms | < {:.0} ms |\n\
         | SIGKILL (lease runs out) | {:.0} ms | {:.0} ms | < {:.0} ms |",
        options.lease_ttl,
        planned["median_ms"].as_f64().unwrap_or_default(),
        planned["max_ms"].as_f64().unwrap_or_default(),
        ttl_ms,
        killed["median_ms"].as_f64().unwrap_or_default(),
        killed["max_ms"].as_f64().unwrap_or_default(),
        2.0 * ttl_ms
    );
    Ok(())
}
