//! `herald-bench flood`: a normal client's turns while more idle and slow-loris connections than the
//! listener's cap hold it full.
//!
//! One `run --no-supervise` gateway with `[http] max_connections` set to the cap. The normal client — one
//! kept-alive connection, opened before the flood, posting back to back — is measured for a window
//! unloaded, then the flood opens: a third of the connections send nothing, a third send half a request
//! header, a third a header announcing a body they never finish; then the same window again. Reported:
//! the normal client's turns/s, p99 and errors in both windows, the gateway's peak RSS, and how long a
//! *new* connection waited to be served during the flood (the price of the cap: it waits for a slot,
//! which the idle timeout frees).

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::session::Session;
use crate::turns::Client;

const USAGE: &str = "\
usage: herald-bench flood [--connections N] [--cap N] [--seconds S] [--json PATH]

A normal client's turns/s, p99 and errors unloaded and while N idle and slow-loris connections (default
512) hold the HTTP listener at its cap (default 64), each window S seconds (default 8); the gateway's
peak RSS, and how long a new client waits during the flood.";

struct Options {
    connections: usize,
    cap: usize,
    seconds: u64,
    json: String,
}

pub fn main(args: &[String], herald: &Path) -> anyhow::Result<()> {
    let Some(options) = parse(args)? else {
        println!("{USAGE}");
        return Ok(());
    };
    let mut session = Session::new(herald, &["--no-supervise".to_owned()])?;
    session.append_config(&format!("max_connections = {}\n", options.cap))?;
    session.start()?;
    let pid = session.gateway_pid().context("no gateway pid")?;
    let url = session.http_url().context("the gateway published no HTTP url")?;
    let authority = url.strip_prefix("http://").context("an http:// url")?.to_owned();
    let addr: SocketAddr = authority.parse().context("a socket address")?;
    let window = Duration::from_secs(options.seconds);

    let mut client = Client::connect(&authority)?;
    let unloaded = measure(&mut client, "unloaded", window);
    eprintln!("herald-bench flood: unloaded: {}", unloaded.describe());

    let began = Instant::now();
    let mut flood = Vec::with_capacity(options.connections);
    for i in 0..options.connections {
        // Keep the normal client's connection busy while the flood grows, as a real client would be.
        if i % 32 == 0 {
            let _ = client.post("steady", &format!("grow{i}"), "hello");
        }
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(20)) else {
            continue;
        };
        let _ = match i % 3 {
            0 => Ok(()),
            1 => stream.write_all(b"POST /v1/sessions/x/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "),
            _ => stream.write_all(
                b"POST /v1/sessions/x/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                  Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"text\":",
            ),
        };
        flood.push(stream);
    }
    eprintln!(
        "herald-bench flood: {} of {} flood connections open in {:.1} s",
        flood.len(),
        options.connections,
        began.elapsed().as_secs_f64()
    );
    let flooded = measure(&mut client, "flooded", window);
    eprintln!("herald-bench flood: flooded: {}", flooded.describe());
    // A client arriving now waits for a slot.
    let arrived = Instant::now();
    let newcomer = Client::connect(&authority).and_then(|mut c| c.post("newcomer", "n1", "hello"));
    let newcomer_wait = arrived.elapsed();
    let peak_rss_kib = crate::procfs::memory(pid)?.map(|m| m.hwm_kib);
    drop(flood);
    session.stop()?;

    let ratio = flooded.per_sec / unloaded.per_sec;
    let summary = json!({
        "connections": options.connections,
        "cap": options.cap,
        "window_secs": options.seconds,
        "unloaded": unloaded.to_json(),
        "flooded": flooded.to_json(),
        "throughput_kept": ratio,
        "newcomer_wait_ms": newcomer_wait.as_secs_f64() * 1000.0,
        "newcomer_status": newcomer.as_ref().ok(),
        "peak_rss_mb": peak_rss_kib.map(|k| k as f64 * 1024.0 / 1e6),
    });
    println!("| window | turns/s | p50 | p99 | errors |\n|---|---:|---:|---:|---:|");
    for (name, m) in [("unloaded", &unloaded), ("flooded", &flooded)] {
        println!(
            "| {name} | {:.0} | {:.2} ms | {:.2} ms | {} |",
            m.per_sec, m.p50_ms, m.p99_ms, m.errors
        );
    }
    println!(
        "\nthroughput kept: {:.1} % (target >= 95 %); errors while flooded: {} (target 0); peak RSS: {} \
         (target < 64 MB); a new connection during the flood waited {:.0} ms ({})",
        ratio * 100.0,
        flooded.errors,
        peak_rss_kib.map_or("unavailable".to_owned(), |k| format!(
            "{:.1} MB",
            k as f64 * 1024.0 / 1e6
        )),
        newcomer_wait.as_secs_f64() * 1000.0,
        match &newcomer {
            Ok(status) => format!("status {status}"),
            Err(e) => format!("failed: {e}"),
        }
    );
    crate::report::save_json(Path::new(&options.json), &summary)?;
    Ok(())
}

struct Measured {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

impl Measured {
    fn describe(&self) -> String {
        format!(
            "{:.0} turns/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
            self.per_sec, self.p50_ms, self.p99_ms, self.errors
        )
    }

    fn to_json(&self) -> serde_json::Value {
        json!({"turns_per_sec": self.per_sec, "p50_ms": self.p50_ms, "p99_ms": self.p99_ms,
               "errors": self.errors})
    }
}

/// Posts back to back on `client` for `window`; every latency recorded.
fn measure(client: &mut Client, tag: &str, window: Duration) -> Measured {
    let mut latencies = Vec::new();
    let mut errors = 0;
    let began = Instant::now();
    let mut n = 0u64;
    while began.elapsed() < window {
        n += 1;
        let sent = Instant::now();
        match client.post("steady", &format!("{tag}{n}"), "hello") {
            Ok(200) => latencies.push(sent.elapsed()),
            _ => errors += 1,
        }
    }
    let elapsed = began.elapsed();
    latencies.sort_unstable();
    let at = |p: f64| {
        latencies
            .get(((latencies.len().saturating_sub(1)) as f64 * p).round() as usize)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    Measured {
        per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        errors,
    }
}

fn parse(args: &[String]) -> anyhow::Result<Option<Options>> {
    let mut options = Options {
        connections: 512,
        cap: 64,
        seconds: 8,
        json: "target/bench/flood.json".into(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--help" | "-h" => return Ok(None),
            "--connections" => options.connections = value()?.parse().context("--connections")?,
            "--cap" => options.cap = value()?.parse().context("--cap")?,
            "--seconds" => options.seconds = value()?.parse().context("--seconds")?,
            "--json" => options.json = value()?.clone(),
            other => anyhow::bail!("unknown argument {other:?}"),
        }
    }
    Ok(Some(options))
}
