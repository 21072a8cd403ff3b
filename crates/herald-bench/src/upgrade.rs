//! `herald-bench upgrade`: `herald upgrade` of a detached, supervised gateway from one build to another
//! and back, `--runs` times each way, while one client posts keyed messages back to back.
//!
//! The figures: the upgrade's wall time (the `herald upgrade` command, start to end), and the longest
//! time the HTTP API refused a turn — for each message, from its first refused try (a 503 `draining`, a
//! refused connection, no URL in the state record yet) to the try that got its reply, the client
//! following the gateway to its new port. Every acknowledged message must be answered exactly once; the
//! bench fails otherwise.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use herald_home::Home;
use herald_home::atomic::read_record;
use herald_home::records::{PidRecord, StateRecord};
use serde_json::json;

use crate::turns::{Client, percentile};

const USAGE: &str = "\
usage: herald-bench upgrade --candidate PATH [--runs N] [--herald PATH] [--json PATH]

`herald upgrade` of a running (detached, supervised) gateway from herald to the candidate and back, N
times each way (default 5), one client posting keyed messages throughout. Upgrade wall time, and the
longest time the HTTP API refused a turn (p50 and max over the upgrades); every acknowledged message
answered exactly once.";

#[derive(Debug)]
struct Options {
    runs: usize,
    herald: Option<PathBuf>,
    candidate: PathBuf,
    json: PathBuf,
}

fn parse(args: &[String]) -> anyhow::Result<Option<Options>> {
    let mut runs = 5;
    let mut herald = None;
    let mut candidate = None;
    let mut json = PathBuf::from("target/bench/upgrade.json");
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = || iter.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--runs" => runs = value()?.parse().context("--runs wants a number")?,
            "--herald" => herald = Some(value()?.into()),
            "--candidate" => candidate = Some(PathBuf::from(value()?)),
            "--json" => json = value()?.into(),
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    ensure!(runs > 0, "--runs must be positive");
    let candidate = candidate.with_context(|| format!("--candidate is required\n\n{USAGE}"))?;
    Ok(Some(Options {
        runs,
        herald,
        candidate,
        json,
    }))
}

/// One installation in a temporary folder: `bin/herald` (the one upgraded), the two builds kept aside,
/// and a home.
struct Installation {
    _dir: tempfile::TempDir,
    installed: PathBuf,
    builds: [PathBuf; 2],
    home: PathBuf,
}

impl Installation {
    fn new(first: &Path, second: &Path) -> anyhow::Result<Installation> {
        let dir = tempfile::Builder::new()
            .prefix("herald-bench-upgrade")
            .tempdir()?;
        let exe = format!("herald{}", std::env::consts::EXE_SUFFIX);
        for sub in ["bin", "a", "b"] {
            std::fs::create_dir(dir.path().join(sub))?;
        }
        let builds = [dir.path().join("a").join(&exe), dir.path().join("b").join(&exe)];
        std::fs::copy(first, &builds[0]).context("cannot copy herald")?;
        std::fs::copy(second, &builds[1]).context("cannot copy the candidate")?;
        let installed = dir.path().join("bin").join(&exe);
        std::fs::copy(first, &installed)?;
        let home = dir.path().join("home");
        std::fs::create_dir(&home)?;
        std::fs::write(
            home.join("herald.toml"),
            "[gateway]\ndrain_timeout_secs = 5\n[http]\nlisten = \"127.0.0.1:0\"\n",
        )?;
        Ok(Installation {
            _dir: dir,
            installed,
            builds,
            home,
        })
    }

    fn herald(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        Command::new(&self.installed)
            .arg("--home")
            .arg(&self.home)
            .args(args)
            .env_remove("HERALD_HOME")
            .env_remove("HERALD_LOG")
            .stdin(Stdio::null())
            .output()
            .context("cannot run herald")
    }

    fn version(&self) -> Option<String> {
        read_record::<PidRecord>(&Home::at(&self.home).pid_record())
            .present()
            .map(|r| r.herald_version)
    }
}

/// Posts keyed messages to one session back to back until told to stop; returns the ids acknowledged
/// and, for each, how long the API refused it before answering.
fn client(home: PathBuf, stop: Arc<AtomicBool>) -> anyhow::Result<Vec<(String, Duration)>> {
    let state_path = Home::at(&home).state_record();
    let mut out = Vec::new();
    let mut client: Option<Client> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let id = format!("k{n}");
        let began = Instant::now();
        let mut refused_since: Option<Instant> = None;
        loop {
            if client.is_none() {
                let url = read_record::<StateRecord>(&state_path)
                    .present()
                    .and_then(|s| s.endpoints.http_url);
                client = url.and_then(|u| Client::connect(u.trim_start_matches("http://")).ok());
            }
            let status = match client.as_mut() {
                Some(c) => c.post("load", &id, "keyed message").ok(),
                None => None,
            };
            if status == Some(200) {
                out.push((id, refused_since.map_or(Duration::ZERO, |s| s.elapsed())));
                break;
            }
            // Refused (or the connection ended): a fresh connection, the same id.
            client = None;
            refused_since.get_or_insert_with(Instant::now);
            ensure!(
                began.elapsed() < Duration::from_secs(60),
                "message {id} was refused for a minute"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(out)
}

pub fn main(args: &[String], herald: &Path) -> anyhow::Result<()> {
    let Some(options) = parse(args)? else {
        println!("{USAGE}");
        return Ok(());
    };
    let herald = options.herald.clone().unwrap_or_else(|| herald.to_path_buf());
    let machine = crate::machine::Machine::probe();
    let install = Installation::new(&herald, &options.candidate)?;
    eprintln!(
        "herald-bench upgrade: {} -> {} and back, {} times each; {}",
        herald.display(),
        options.candidate.display(),
        options.runs,
        machine.summary()
    );
    let started = install.herald(&["start"])?;
    ensure!(
        started.status.success(),
        "herald start failed: {}",
        String::from_utf8_lossy(&started.stderr)
    );
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (home, stop) = (install.home.clone(), stop.clone());
        std::thread::spawn(move || client(home, stop))
    };
    std::thread::sleep(Duration::from_millis(500));
    let mut walls = Vec::new();
    let mut upgrades = Vec::new();
    for run in 0..options.runs * 2 {
        let target = &install.builds[(run + 1) % 2];
        let began = Instant::now();
        let out = install.herald(&["upgrade", "--from", &target.display().to_string()])?;
        let wall = began.elapsed();
        if !out.status.success() {
            stop.store(true, Ordering::Relaxed);
            bail!(
                "upgrade {run} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        walls.push(wall.as_micros() as u32);
        upgrades.push((Instant::now(), install.version()));
        // The client runs through the new gateway for a while before the next upgrade.
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::Relaxed);
    let acknowledged = load
        .join()
        .map_err(|_| anyhow::anyhow!("the client panicked"))??;

    // Every acknowledged message answered exactly once, in the journal of the gateway serving now.
    let url = read_record::<StateRecord>(&Home::at(&install.home).state_record())
        .present()
        .and_then(|s| s.endpoints.http_url)
        .context("no HTTP url after the upgrades")?;
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    let mut before: Option<String> = None;
    loop {
        let query = match &before {
            Some(cursor) => format!("?limit=500&before={cursor}"),
            None => "?limit=500".to_owned(),
        };
        let page = http_get(&url, &format!("/v1/sessions/load/messages{query}"))?;
        for message in page["messages"].as_array().into_iter().flatten() {
            if message["role"] == "assistant"
                && let Some(id) = message["id"].as_str()
            {
                *answers.entry(id.to_owned()).or_default() += 1;
            }
        }
        match &page["next_before"] {
            serde_json::Value::Null => break,
            cursor => before = Some(cursor.to_string().trim_matches('"').to_owned()),
        }
    }
    let wrong: Vec<String> = acknowledged
        .iter()
        .filter(|(id, _)| answers.get(id) != Some(&1))
        .map(|(id, _)| format!("{id}: {:?}", answers.get(id)))
        .collect();
    let _ = install.herald(&["stop"]);
    ensure!(
        wrong.is_empty(),
        "{} of {} messages not answered exactly once, the first: {:?}",
        wrong.len(),
        acknowledged.len(),
        &wrong[..wrong.len().min(10)]
    );

    let mut refusals: Vec<u32> = acknowledged
        .iter()
        .map(|(_, refused)| refused.as_micros() as u32)
        .filter(|&us| us > 0)
        .collect();
    refusals.sort_unstable();
    walls.sort_unstable();
    let longest_refusal = refusals.last().copied().unwrap_or(0) as f64 / 1000.0;
    // No message refused at all: every figure of refusal is zero, not undefined.
    let refusal_p50 = if refusals.is_empty() {
        0.0
    } else {
        percentile(&refusals, 50.0)
    };
    let result = json!({
        "upgrades": walls.len(),
        "upgrade_wall_p50_ms": percentile(&walls, 50.0),
        "upgrade_wall_max_ms": walls.last().copied().unwrap_or(0) as f64 / 1000.0,
        "refused_messages": refusals.len(),
        "refusal_p50_ms": refusal_p50,
        "refusal_max_ms": longest_refusal,
        "acknowledged": acknowledged.len(),
        "answered_once": acknowledged.len() - wrong.len(),
        "versions": upgrades.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
    });
    let report = json!({
        "date": crate::machine::now_rfc3339(),
        "machine": machine.to_json(),
        "herald": herald.display().to_string(),
        "candidate": options.candidate.display().to_string(),
        "runs": options.runs,
        "result": result,
        "command": std::env::args().collect::<Vec<_>>(),
    });
    crate::report::save_json(&options.json, &report)?;
    println!(
        "| figure | value |\n|---|---|\n\
         | upgrades (each way x {}) | {} |\n\
         | upgrade wall time p50 / max | {:.0} / {:.0} ms |\n\
         | a turn refused by the HTTP API, p50 / longest | {:.0} / {:.0} ms |\n\
         | keyed messages acknowledged / answered exactly once | {} / {} |",
        options.runs,
        walls.len(),
        percentile(&walls, 50.0),
        walls.last().copied().unwrap_or(0) as f64 / 1000.0,
        refusal_p50,
        longest_refusal,
        acknowledged.len(),
        acknowledged.len() - wrong.len(),
    );
    Ok(())
}

/// One GET over a fresh connection: the JSON body.
fn http_get(url: &str, path: &str) -> anyhow::Result<serde_json::Value> {
    use std::io::{Read, Write};
    let authority = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .context("no body in the answer")?;
    serde_json::from_str(body).context("the history is not JSON")
}
