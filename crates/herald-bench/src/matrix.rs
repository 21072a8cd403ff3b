//! `herald-bench matrix`: Matrix turns end to end through a real Synapse — a person's message in a
//! direct chat with the bot, answered by the echo agent, the answer read back from the person's own
//! `/sync` — at `--senders` concurrent conversations (default 64).
//!
//! Synapse is started here (`ci/peers/synapse_server.py`, with the python of
//! `ci/peers/install-synapse.sh`), with the bot and one person registered; the person opens one
//! unencrypted direct chat per sender. Each sender is a thread sending one message and waiting for its
//! answer before the next (closed loop); one thread syncs as the person and notes each answer. What it
//! measures is mostly the homeserver: every turn is four Synapse requests (the person's send, the bot's
//! sync, the bot's send, the person's sync), each a Python transaction on SQLite.
//!
//! The client side speaks the client-server API with `std` only (one connection per request).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

use crate::session::Session;
use crate::turns::percentile;

const USAGE: &str = "\
usage: herald-bench matrix [--senders N] [--seconds S] [--synapse-python PATH] [--herald PATH] [--json PATH]

Matrix turns through the real gateway and a real Synapse (started here): N direct chats (default 64),
each sending its next message when the last is answered, for S seconds (default 20). Turns/s, p50/p99
from the send to the answer in the person's sync, answers lost or doubled. The python is the one
ci/peers/install-synapse.sh prints (default ci/peers/synapse-venv/bin/python).";

const BOT_PASSWORD: &str = "bench-bot-password";
const PASSWORD: &str = "bench-person-password";

#[derive(Debug)]
struct Options {
    senders: usize,
    seconds: u64,
    python: PathBuf,
    herald: Option<PathBuf>,
    json: PathBuf,
}

fn parse(args: &[String]) -> anyhow::Result<Option<Options>> {
    let mut options = Options {
        senders: 64,
        seconds: 20,
        python: "ci/peers/synapse-venv/bin/python".into(),
        herald: None,
        json: "target/bench/matrix.json".into(),
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = || iter.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--senders" => options.senders = value()?.parse().context("--senders wants a number")?,
            "--seconds" => options.seconds = value()?.parse().context("--seconds wants a number")?,
            "--synapse-python" => options.python = value()?.into(),
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

/// A Synapse of the benchmark's own; killed on drop.
struct Synapse {
    _dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl Drop for Synapse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_synapse(python: &Path) -> anyhow::Result<Synapse> {
    let script = Path::new("ci/peers/synapse_server.py");
    ensure!(
        python.exists() && script.exists(),
        "run from the repository root after `bash ci/peers/install-synapse.sh` ({} and {} are needed)",
        python.display(),
        script.display()
    );
    // Absolute (not canonical: the venv's python is a link it must be started by): Synapse runs in a
    // folder of its own.
    let python = &std::path::absolute(python)?;
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new(python)
        .arg(script.canonicalize()?)
        .arg(dir.path().join("hs"))
        .arg(port.to_string())
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start Synapse")?;
    let mut synapse = Synapse {
        _dir: dir,
        port,
        child,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = synapse.child.try_wait()? {
            bail!("Synapse exited: {status}");
        }
        if request(port, "GET", "/_matrix/client/versions", None, None).is_ok_and(|(s, _)| s == 200) {
            break;
        }
        ensure!(Instant::now() < deadline, "Synapse did not answer within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    for (user, password) in [("herald", BOT_PASSWORD), ("bench", PASSWORD)] {
        let out = Command::new(python.with_file_name("register_new_matrix_user"))
            .args([
                "-u",
                user,
                "-p",
                password,
                "--no-admin",
                "-k",
                "herald-test-shared-secret",
            ])
            .arg(format!("http://127.0.0.1:{port}"))
            .output()?;
        ensure!(out.status.success(), "cannot register {user}");
    }
    Ok(synapse)
}

/// One request on a connection of its own; the status and the JSON body (`Null` when there is none).
fn request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Connection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {line:?}"))?;
    let mut chunked = false;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("transfer-encoding")
            && value.trim().eq_ignore_ascii_case("chunked")
        {
            chunked = true;
        }
    }
    let mut bytes = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim(), 16).context("bad chunk size")?;
            if size == 0 {
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            bytes.extend_from_slice(&chunk[..size]);
        }
    } else {
        reader.read_to_end(&mut bytes)?;
    }
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).context("a body that is not JSON")?
    };
    Ok((status, value))
}

/// When each message was sent, and when its answer was seen (by text).
#[derive(Debug, Default)]
struct Times {
    sent: HashMap<String, Instant>,
    answered: HashMap<String, Instant>,
    doubled: usize,
}

pub fn main(args: &[String], herald: &Path) -> anyhow::Result<()> {
    let Some(options) = parse(args)? else {
        println!("{USAGE}");
        return Ok(());
    };
    let herald = options.herald.clone().unwrap_or_else(|| herald.to_path_buf());
    let machine = crate::machine::Machine::probe();
    let synapse = start_synapse(&options.python)?;
    let port = synapse.port;
    let mut session = Session::new(&herald, &["--no-supervise".to_owned()])?;
    let home = herald_home::Home::at(session.root().to_path_buf());
    herald_home::secrets::SecretStore::of(&home)
        .set(
            &herald_home::secrets::SecretName::new("BENCH_MATRIX_PASSWORD")?,
            herald_home::secrets::SecretValue::new(BOT_PASSWORD)?,
        )
        .context("cannot store the bot's password")?;
    session.append_config(&format!(
        "\n[matrix]\nenabled = true\nhomeserver = \"http://127.0.0.1:{port}\"\nuser_id = \"@herald:localhost\"\n\
         password_env = \"BENCH_MATRIX_PASSWORD\"\nallowed_users = [\"@bench:localhost\"]\nsync_timeout_secs = 10\n"
    ))?;
    eprintln!(
        "herald-bench matrix: {} conversations for {} s through Synapse on port {port}; {}",
        options.senders,
        options.seconds,
        machine.summary()
    );
    session.start()?;
    let (status, login) = request(
        port,
        "POST",
        "/_matrix/client/v3/login",
        None,
        Some(
            &json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bench"}, "password": PASSWORD}),
        ),
    )?;
    ensure!(status == 200, "cannot log in: {login}");
    let token = login["access_token"]
        .as_str()
        .context("no access token")?
        .to_owned();
    let mut rooms = Vec::new();
    for _ in 0..options.senders {
        let (status, room) = request(
            port,
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(&token),
            Some(&json!({"invite": ["@herald:localhost"], "is_direct": true, "preset": "private_chat"})),
        )?;
        ensure!(status == 200, "cannot create a room: {room}");
        rooms.push(room["room_id"].as_str().context("no room id")?.to_owned());
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for room in &rooms {
        loop {
            let (_, members) = request(
                port,
                "GET",
                &format!("/_matrix/client/v3/rooms/{room}/joined_members"),
                Some(&token),
                None,
            )?;
            if members["joined"].get("@herald:localhost").is_some() {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "the bot did not join {room} within 120 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let times = Arc::new((Mutex::new(Times::default()), Condvar::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (times, stop, token) = (times.clone(), stop.clone(), token.clone());
        std::thread::spawn(move || read_answers(port, &token, &times, &stop))
    };
    let window = Duration::from_secs(options.seconds);
    let started = Instant::now();
    let mut senders = Vec::new();
    for (k, room) in rooms.iter().enumerate() {
        let (times, token, room) = (times.clone(), token.clone(), room.clone());
        senders.push(std::thread::spawn(move || -> anyhow::Result<usize> {
            let mut sent = 0;
            while started.elapsed() < window {
                let text = format!("m{k}-{sent}");
                let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/b{k}-{sent}");
                times.0.lock().unwrap().sent.insert(text.clone(), Instant::now());
                let (status, answer) = request(
                    port,
                    "PUT",
                    &path,
                    Some(&token),
                    Some(&json!({"msgtype": "m.text", "body": text})),
                )?;
                ensure!(status == 200, "cannot send: {answer}");
                sent += 1;
                let (lock, answered) = &*times;
                let guard = lock.lock().unwrap();
                let (guard, timeout) = answered
                    .wait_timeout_while(guard, Duration::from_secs(60), |t| {
                        !t.answered.contains_key(&text)
                    })
                    .unwrap();
                drop(guard);
                ensure!(!timeout.timed_out(), "no answer to {text} within 60 s");
            }
            Ok(sent)
        }));
    }
    let mut total = 0;
    for sender in senders {
        total += sender
            .join()
            .map_err(|_| anyhow::anyhow!("a sender panicked"))??;
    }
    let elapsed = started.elapsed();
    // Time for a repeat to show.
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reader panicked"))??;
    session.stop()?;
    drop(synapse);
    let t = times.0.lock().unwrap();
    let mut latency: Vec<u32> = t
        .sent
        .iter()
        .filter_map(|(text, sent)| {
            t.answered
                .get(text)
                .map(|at| at.duration_since(*sent).as_micros() as u32)
        })
        .collect();
    latency.sort_unstable();
    let lost = t.sent.len() - latency.len();
    let per_sec = total as f64 / elapsed.as_secs_f64();
    let result = json!({
        "turns": total,
        "turns_per_sec": per_sec,
        "p50_ms": percentile(&latency, 50.0),
        "p99_ms": percentile(&latency, 99.0),
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
         | Matrix turns/s ({} conversations, through Synapse) | {:.1} |\n\
         | send -> answer in the person's sync p50 / p99 | {:.0} / {:.0} ms |\n\
         | answers lost / doubled | {} / {} |",
        options.senders,
        per_sec,
        percentile(&latency, 50.0),
        percentile(&latency, 99.0),
        lost,
        t.doubled,
    );
    Ok(())
}

/// Syncs as the person until `stop`, noting each answer of the bot (`echo: <text>`) when first seen.
fn read_answers(
    port: u16,
    token: &str,
    times: &(Mutex<Times>, Condvar),
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    // A timeline long enough that no answer falls in a gap between two syncs.
    let filter = "%7B%22room%22%3A%7B%22timeline%22%3A%7B%22limit%22%3A500%7D%7D%7D";
    let (status, first) = request(
        port,
        "GET",
        &format!("/_matrix/client/v3/sync?timeout=0&filter={filter}"),
        Some(token),
        None,
    )?;
    ensure!(status == 200, "cannot sync: {first}");
    let mut since = first["next_batch"].as_str().context("no next_batch")?.to_owned();
    while !stop.load(Ordering::Relaxed) {
        let path = format!("/_matrix/client/v3/sync?timeout=1000&since={since}&filter={filter}");
        let (status, sync) = request(port, "GET", &path, Some(token), None)?;
        ensure!(status == 200, "cannot sync: {sync}");
        let now = Instant::now();
        let (lock, answered) = times;
        let mut t = lock.lock().unwrap();
        for room in sync["rooms"]["join"]
            .as_object()
            .into_iter()
            .flat_map(|r| r.values())
        {
            ensure!(
                room["timeline"]["limited"] != true,
                "a gap in the person's timeline: answers would be missed"
            );
            for event in room["timeline"]["events"].as_array().into_iter().flatten() {
                if event["sender"] != "@herald:localhost" {
                    continue;
                }
                if let Some(text) = event["content"]["body"]
                    .as_str()
                    .and_then(|b| b.strip_prefix("echo: "))
                    && t.answered.insert(text.to_owned(), now).is_some()
                {
                    t.doubled += 1;
                }
            }
        }
        drop(t);
        answered.notify_all();
        since = sync["next_batch"].as_str().context("no next_batch")?.to_owned();
    }
    Ok(())
}
