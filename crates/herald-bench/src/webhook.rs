//! `herald-bench webhook`: signed webhook turns end to end — a message POSTed to `/v1/webhooks/{name}`
//! (Standard Webhooks signature), answered by the echo agent, the reply POSTed back to a callback
//! receiver in this file — at `--senders` concurrent senders (default 64).
//!
//! Each sender is a thread with a keep-alive connection posting signed messages back to back (each
//! answered `202` once durable); the receiver (std only) answers every callback `204` at once and notes
//! when it arrived. The figures: turns/s completed end to end over the window (callbacks received),
//! the end-to-end latency from the POST to its callback (p50, p99), the accept latency (POST to `202`),
//! and callbacks lost or received twice.

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use herald_gateway::webhook::Secret;
use serde_json::json;

use crate::session::Session;
use crate::turns::{Client, percentile};

const USAGE: &str = "\
usage: herald-bench webhook [--senders N] [--seconds S] [--herald PATH] [--json PATH]

Signed webhook turns through the real gateway: N senders (default 64) post for S seconds (default 10);
every reply comes back by signed callback. Turns/s end to end, p50/p99 from POST to callback and to 202,
callbacks lost or doubled.";

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WARM_UP: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Options {
    senders: usize,
    seconds: u64,
    herald: Option<PathBuf>,
    json: PathBuf,
}

fn parse(args: &[String]) -> anyhow::Result<Option<Options>> {
    let mut options = Options {
        senders: 64,
        seconds: 10,
        herald: None,
        json: "target/bench/webhook.json".into(),
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = || iter.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--senders" => options.senders = value()?.parse().context("--senders wants a number")?,
            "--seconds" => options.seconds = value()?.parse().context("--seconds wants a number")?,
            "--herald" => options.herald = Some(value()?.into()),
            "--json" => options.json = value()?.into(),
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    ensure!(
        options.senders > 0 && options.seconds > 0,
        "--senders and --seconds must be positive"
    );
    Ok(Some(options))
}

/// When each message was posted and accepted, and when its callback came (by message id).
#[derive(Debug, Default)]
struct Times {
    posted: HashMap<String, (Instant, Instant)>,
    called_back: HashMap<String, Instant>,
    doubled: usize,
}

pub fn main(args: &[String], herald: &Path) -> anyhow::Result<()> {
    let Some(options) = parse(args)? else {
        println!("{USAGE}");
        return Ok(());
    };
    let herald = options.herald.clone().unwrap_or_else(|| herald.to_path_buf());
    let machine = crate::machine::Machine::probe();
    let times = Arc::new(Mutex::new(Times::default()));
    let receiver = TcpListener::bind("127.0.0.1:0").context("cannot listen for callbacks")?;
    let callback = format!("http://{}/hook", receiver.local_addr()?);
    {
        let times = times.clone();
        std::thread::spawn(move || {
            for stream in receiver.incoming().flatten() {
                let times = times.clone();
                std::thread::spawn(move || receive(stream, &times));
            }
        });
    }
    let mut session = Session::new(&herald, &["--no-supervise".to_owned()])?;
    let home = herald_home::Home::at(session.root().to_path_buf());
    herald_home::secrets::SecretStore::of(&home)
        .set(
            &herald_home::secrets::SecretName::new("BENCH_WEBHOOK_SECRET")?,
            herald_home::secrets::SecretValue::new(SECRET)?,
        )
        .context("cannot store the webhook secret")?;
    session.append_config(&format!(
        "\n[[webhook]]\nname = \"bench\"\nsecret_env = \"BENCH_WEBHOOK_SECRET\"\ncallback_url = \"{callback}\"\n"
    ))?;
    eprintln!(
        "herald-bench webhook: {} senders for {} s, callbacks to {callback}; {}",
        options.senders,
        options.seconds,
        machine.summary()
    );
    session.start()?;
    let authority = session
        .http_url()
        .context("the gateway serves no HTTP")?
        .trim_start_matches("http://")
        .to_owned();
    let secret = Secret::parse(SECRET)?;
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(options.senders + 1));
    let mut senders = Vec::new();
    for k in 0..options.senders {
        let (authority, secret, stop, measuring, barrier, times) = (
            authority.clone(),
            secret.clone(),
            stop.clone(),
            measuring.clone(),
            barrier.clone(),
            times.clone(),
        );
        senders.push(std::thread::spawn(move || -> anyhow::Result<usize> {
            let mut client = Client::connect(&authority)?;
            barrier.wait();
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("b{k}-{sent}");
                let body = format!(r#"{{"session":"s{k}","text":"m{sent}"}}"#);
                let timestamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
                let headers = format!(
                    "webhook-id: {id}\r\nwebhook-timestamp: {timestamp}\r\nwebhook-signature: {}\r\n",
                    secret.sign(&id, timestamp, body.as_bytes())
                );
                let posted = Instant::now();
                let status = client.post_raw("/v1/webhooks/bench", &headers, &body)?;
                ensure!(status == 202, "the gateway answered {status}");
                if measuring.load(Ordering::Relaxed) {
                    times.lock().unwrap().posted.insert(id, (posted, Instant::now()));
                }
                sent += 1;
            }
            Ok(sent)
        }));
    }
    barrier.wait();
    std::thread::sleep(WARM_UP);
    measuring.store(true, Ordering::Relaxed);
    let window_start = Instant::now();
    std::thread::sleep(Duration::from_secs(options.seconds));
    measuring.store(false, Ordering::Relaxed);
    let window_end = Instant::now();
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender
            .join()
            .map_err(|_| anyhow::anyhow!("a sender panicked"))??;
    }
    // Every callback of the window arrives, late ones included.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (posted, called) = {
            let t = times.lock().unwrap();
            let called = t
                .posted
                .keys()
                .filter(|id| t.called_back.contains_key(*id))
                .count();
            (t.posted.len(), called)
        };
        if called == posted || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    session.stop()?;
    let t = times.lock().unwrap();
    let mut end_to_end: Vec<u32> = Vec::new();
    let mut accept: Vec<u32> = Vec::new();
    let mut completed_in_window = 0usize;
    let mut lost = 0usize;
    for (id, (posted, accepted)) in &t.posted {
        accept.push(accepted.duration_since(*posted).as_micros() as u32);
        match t.called_back.get(id) {
            Some(at) => {
                end_to_end.push(at.duration_since(*posted).as_micros() as u32);
                if *at <= window_end && *at >= window_start {
                    completed_in_window += 1;
                }
            }
            None => lost += 1,
        }
    }
    end_to_end.sort_unstable();
    accept.sort_unstable();
    let seconds = window_end.duration_since(window_start).as_secs_f64();
    let result = json!({
        "posted": t.posted.len(),
        "turns_per_sec": t.posted.len() as f64 / seconds,
        "callbacks_in_window_per_sec": completed_in_window as f64 / seconds,
        "end_to_end_p50_ms": percentile(&end_to_end, 50.0),
        "end_to_end_p99_ms": percentile(&end_to_end, 99.0),
        "accept_p50_ms": percentile(&accept, 50.0),
        "accept_p99_ms": percentile(&accept, 99.0),
        "lost": lost,
        "doubled": t.doubled,
    });
    let report = json!({
        "date": crate::machine::now_rfc3339(),
        "machine": machine.to_json(),
        "herald": herald.display().to_string(),
        "senders": options.senders,
        "seconds": options.seconds,
        "result": result,
        "command": std::env::args().collect::<Vec<_>>(),
    });
    crate::report::save_json(&options.json, &report)?;
    println!(
        "| figure | value |\n|---|---|\n\
         | turns/s accepted ({} senders) | {:.0} |\n\
         | callbacks/s received in the window | {:.0} |\n\
         | POST -> callback p50 / p99 | {:.2} / {:.2} ms |\n\
         | POST -> 202 p50 / p99 | {:.2} / {:.2} ms |\n\
         | callbacks lost / doubled | {} / {} |",
        options.senders,
        t.posted.len() as f64 / seconds,
        completed_in_window as f64 / seconds,
        percentile(&end_to_end, 50.0),
        percentile(&end_to_end, 99.0),
        percentile(&accept, 50.0),
        percentile(&accept, 99.0),
        lost,
        t.doubled,
    );
    Ok(())
}

/// Serves one keep-alive connection of callbacks: notes each, answers `204`.
fn receive(stream: TcpStream, times: &Mutex<Times>) {
    let Ok(read_half) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    while let Some((_, body)) = crate::request::read(&mut reader) {
        let arrived = Instant::now();
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body)
            && let Some(id) = value["in_reply_to"].as_str()
        {
            let mut t = times.lock().unwrap();
            if t.called_back.insert(id.to_owned(), arrived).is_some() {
                t.doubled += 1;
            }
        }
        if writer
            .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}
