//! The monitor's watchdog: a worker that is alive but deaf (here: stopped with SIGSTOP, so its event loop
//! beats no more) is recorded as `wedged`, killed and replaced within 10 s, losing and repeating no
//! acknowledged turn; a worker under a 64-client load is never mistaken for one; `watchdog_interval_secs
//! = 0` turns the watchdog off; out-of-range keys are refused by name. The beats must arrive on Windows
//! too (a pipe read by tokio), which the one test that runs everywhere shows.

mod support;

use std::time::Duration;

use herald_home::lifecycle::LifecycleEvent;
use herald_process::control::{self, Request};
use support::*;

fn ping(home: &TestHome) -> bool {
    control::call(&home.home(), Request::Ping, Duration::from_secs(10)).is_ok_and(|r| r.ok)
}

fn events_named(home: &TestHome, name: &str) -> Vec<LifecycleEvent> {
    home.events().into_iter().filter(|e| e.event == name).collect()
}

fn number(event: &LifecycleEvent, field: &str) -> u64 {
    event
        .field(field)
        .and_then(|v| v.as_u64())
        .unwrap_or_else(|| panic!("no number {field} in {event:?}"))
}

#[test]
fn out_of_range_watchdog_keys_are_refused_by_name() {
    for (key, value) in [
        ("watchdog_interval_secs", "301"),
        ("watchdog_missed_beats", "1"),
        ("watchdog_missed_beats", "101"),
    ] {
        let home = TestHome::new();
        home.write(
            "herald.toml",
            format!("[supervisor]\n{key} = {value}\n").as_bytes(),
        );
        let out = home.output(&["config", "check"]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(78), "{all}");
        assert!(all.contains(&format!("supervisor.{key}")), "{all}");
    }
}

/// Runs everywhere (Windows under Wine included): a worker that beats — its loop's beats read from its
/// stdout pipe — is left alone for more than three intervals, and its exit records the gaps between beats,
/// which only a second beat can give.
#[test]
fn a_beating_worker_is_left_alone_and_its_beats_are_read() {
    let home = TestHome::new();
    home.write(
        "herald.toml",
        b"[supervisor]\nwatchdog_interval_secs = 1\nwatchdog_missed_beats = 3\n",
    );
    let gateway = home.start(&[]);
    let worker = home.worker_pid();
    // Four intervals: one beyond the limit of a worker that would not beat.
    std::thread::sleep(Duration::from_secs(4));
    assert!(ping(&home));
    assert_eq!(home.worker_pid(), worker);
    assert!(events_named(&home, "wedged").is_empty());
    assert!(home.output(&["stop"]).status.success());
    assert_eq!(gateway.wait().0, Some(0));
    let exits = events_named(&home, "worker_exit");
    assert_eq!(exits.len(), 1, "{exits:?}");
    assert!(
        number(&exits[0], "largest_beat_gap_ms") > 0,
        "no two beats were read: {exits:?}"
    );
    assert_eq!(
        home.event_names()
            .iter()
            .filter(|n| *n == "worker_spawned")
            .count(),
        1
    );
}

#[cfg(unix)]
mod unix {
    use std::path::{Path, PathBuf};
    use std::time::Instant;

    use herald_home::atomic::read_record;
    use herald_home::records::{MonitorRecord, WorkerRecord};

    use super::*;

    fn worker_record(home: &TestHome) -> WorkerRecord {
        read_record::<MonitorRecord>(&home.home().monitor_record())
            .present()
            .and_then(|m| m.worker)
            .expect("the monitor record names its worker")
    }

    fn signal(pid: u32, signal: i32) {
        // SAFETY: kill(2) of the worker the records name, in a home of this test's own.
        let rc = unsafe { libc::kill(pid as i32, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    /// Whether the process a monitor record named is still there (alive, stopped or a zombie).
    fn still_there(worker: &WorkerRecord) -> bool {
        match herald_process::probe(worker.pid) {
            herald_process::ProcessProbe::Gone => false,
            herald_process::ProcessProbe::Zombie => true,
            herald_process::ProcessProbe::Alive(info) => info.key.start_time == worker.start_time,
        }
    }

    /// The worker's main loop has turned since it began serving (so it has beaten at least once).
    fn serving(home: &TestHome) -> u32 {
        assert!(ping(home));
        home.worker_pid()
    }

    #[test]
    fn a_stopped_worker_is_recorded_killed_and_replaced_within_10_seconds() {
        let home = TestHome::new();
        let gateway = home.start(&[]);
        let old = serving(&home);
        let old_record = worker_record(&home);
        assert_eq!(old_record.pid, old);
        let stopped_at = Instant::now();
        signal(old, libc::SIGSTOP);
        let new = home.wait_new_worker(old);
        wait_for("the new worker to answer a ping", || ping(&home));
        let serving_again = stopped_at.elapsed();
        assert!(
            serving_again < Duration::from_secs(10),
            "serving again after {serving_again:?}"
        );
        assert_ne!(new, old);
        assert!(!still_there(&old_record), "the stopped worker {old} is left over");

        let wedged = events_named(&home, "wedged");
        assert_eq!(wedged.len(), 1, "{wedged:?}");
        let wedged = &wedged[0];
        assert_eq!(wedged.pid, gateway.pid(), "recorded by the monitor");
        assert_eq!(number(wedged, "worker_pid"), u64::from(old));
        // Default limit: 3 missed beats of 2 s.
        assert!(number(wedged, "last_beat_ms_ago") >= 6000, "{wedged:?}");
        assert_eq!(number(wedged, "in_flight"), 0, "{wedged:?}");
        assert_eq!(number(wedged, "queued"), 0, "{wedged:?}");
        if cfg!(target_os = "linux") {
            let threads = wedged
                .field("threads")
                .and_then(|t| t.as_array())
                .expect("threads");
            assert!(!threads.is_empty());
            assert!(
                threads.iter().all(|t| t["state"] == "T"),
                "every thread of a stopped worker is stopped: {threads:?}"
            );
        }
        let exit = events_named(&home, "worker_exit")
            .into_iter()
            .find(|e| number(e, "worker_pid") == u64::from(old))
            .expect("the old worker's exit");
        assert_eq!(exit.field("planned").and_then(|v| v.as_bool()), Some(false));
        let reason = exit.field("reason").and_then(|v| v.as_str()).unwrap_or_default();
        assert!(reason.starts_with("worker wedged: no beat for "), "{exit:?}");
        let restart = &events_named(&home, "restart_scheduled")[0];
        assert_eq!(restart.field("reason"), exit.field("reason"));
        assert_eq!(number(restart, "delay_ms"), 0, "the first restart is immediate");
        let (_, status) = home.status_json();
        assert_eq!(status["restarts"], 1);

        assert!(home.output(&["stop"]).status.success());
        assert_eq!(gateway.wait().0, Some(0));
    }

    /// A home whose agent is `test_agent`, logging to `agent.log` in the home.
    fn home_with_agent() -> (TestHome, PathBuf) {
        let home = TestHome::new();
        let log = home.root.join("agent.log");
        let quote = |p: &Path| serde_json::to_string(&p.display().to_string()).unwrap();
        home.write(
            "herald.toml",
            format!(
                "[http]\nlisten = \"127.0.0.1:0\"\n\n[agent]\nbackend = \"command\"\n\n\
                 [agent.command]\ncommand = [{}, {}]\ntimeout_secs = 60\n",
                quote(&test_agent()),
                quote(&log)
            )
            .as_bytes(),
        );
        (home, log)
    }

    #[test]
    fn acknowledged_turns_are_answered_once_across_a_wedged_worker() {
        let (home, log) = home_with_agent();
        let gateway = home.start(&[]);
        let url = home.http_url();
        let old = serving(&home);
        let ids: Vec<String> = (0..4).map(|i| format!("t{i}")).collect();
        for id in &ids {
            let accepted = post_message(
                &url,
                "wedge",
                Some(id),
                &format!("sleep:2000:{id}"),
                "?wait=false",
            );
            assert_eq!(accepted.status, 202, "{}", accepted.body);
        }
        wait_for("every turn to reach the agent", || {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            log.lines().filter(|l| l.starts_with("start")).count() == ids.len()
        });
        // The state record's counts are refreshed at most once a second: the wedge record reads them.
        wait_for("the state record to count the turns", || {
            home.state().is_some_and(|s| s.in_flight == 4)
        });
        signal(old, libc::SIGSTOP);
        home.wait_new_worker(old);
        let url = home.http_url();
        wait_for("every turn to be answered", || {
            let replies = replies(&url, "wedge");
            replies.len() == ids.len() && replies.values().all(|r| !r.is_empty())
        });
        for (id, replies) in replies(&url, "wedge") {
            assert_eq!(replies, [format!("agent: sleep:2000:{id}")], "{id}");
        }
        let wedged = &events_named(&home, "wedged")[0];
        assert_eq!(number(wedged, "in_flight"), 4, "{wedged:?}");
        assert!(home.output(&["stop"]).status.success());
        assert_eq!(gateway.wait().0, Some(0));
    }

    #[test]
    fn with_the_watchdog_off_a_stopped_worker_is_left_alone() {
        let home = TestHome::new();
        home.write("herald.toml", b"[supervisor]\nwatchdog_interval_secs = 0\n");
        let gateway = home.start(&[]);
        let worker = serving(&home);
        signal(worker, libc::SIGSTOP);
        // Half as long again as the default limit (8 s), with nothing replacing it.
        std::thread::sleep(Duration::from_secs(12));
        assert_eq!(home.worker_pid(), worker);
        assert!(events_named(&home, "wedged").is_empty());
        assert_eq!(events_named(&home, "worker_spawned").len(), 1);
        signal(worker, libc::SIGCONT);
        assert!(ping(&home));
        assert!(home.output(&["stop"]).status.success());
        assert_eq!(gateway.wait().0, Some(0));
        let exit = &events_named(&home, "worker_exit")[0];
        assert!(exit.field("largest_beat_gap_ms").is_none(), "{exit:?}");
    }

    /// A keep-alive HTTP/1.1 connection posting messages back to back.
    struct Client {
        reader: std::io::BufReader<std::net::TcpStream>,
        writer: std::net::TcpStream,
        authority: String,
    }

    impl Client {
        fn connect(authority: &str) -> Client {
            let stream = std::net::TcpStream::connect(authority).unwrap();
            stream.set_nodelay(true).unwrap();
            stream.set_read_timeout(Some(PATIENCE)).unwrap();
            Client {
                reader: std::io::BufReader::new(stream.try_clone().unwrap()),
                writer: stream,
                authority: authority.to_owned(),
            }
        }

        /// Posts one message, waits for the reply; the status code.
        fn post(&mut self, session: &str, id: &str) -> std::io::Result<u16> {
            use std::io::{BufRead, Read, Write};
            let body = format!(r#"{{"text":"hello","id":"{id}"}}"#);
            let request = format!(
                "POST /v1/sessions/{session}/messages HTTP/1.1\r\nHost: {}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                self.authority,
                body.len()
            );
            self.writer.write_all(request.as_bytes())?;
            let mut line = String::new();
            self.reader.read_line(&mut line)?;
            let status = line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
            let mut length = 0usize;
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let header = line.trim_end();
                if header.is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().map_err(std::io::Error::other)?;
                }
            }
            let mut body = vec![0u8; length];
            self.reader.read_exact(&mut body)?;
            Ok(status)
        }
    }

    /// 64 clients posting back to back for 60 s against a supervised gateway: never a `wedged` event,
    /// the same worker throughout. (The largest gap between beats is printed for the record.)
    #[test]
    fn a_worker_under_a_64_client_load_is_never_taken_for_wedged() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

        let home = TestHome::new();
        // The worker logs a line per turn and the monitor relays it: output nobody reads would fill the
        // pipes and block both (a real wedge, but of the test's making), so it goes to a file.
        let output = std::fs::File::create(home.root.with_file_name("gateway.log")).unwrap();
        let child = home
            .cmd(&["run"])
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .unwrap();
        let gateway = Gateway::from_child(child);
        home.wait_running(&gateway);
        let worker = serving(&home);
        let url = home.http_url();
        let authority = url.strip_prefix("http://").unwrap().to_owned();
        let done = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let clients: Vec<_> = (0..64)
            .map(|c| {
                let mut client = Client::connect(&authority);
                let (done, answered) = (done.clone(), answered.clone());
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !done.load(Ordering::Relaxed) {
                        n += 1;
                        if let Ok(200) = client.post(&format!("load-{c}"), &format!("m{n}")) {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(60));
        done.store(true, Ordering::Relaxed);
        for client in clients {
            client.join().unwrap();
        }
        let answered = answered.load(Ordering::Relaxed);
        assert!(answered > 0, "the load answered nothing");
        assert!(events_named(&home, "wedged").is_empty(), "{:?}", home.events());
        assert_eq!(home.worker_pid(), worker);
        assert!(ping(&home));
        assert!(home.output(&["stop"]).status.success());
        assert_eq!(gateway.wait().0, Some(0));
        let exit = &events_named(&home, "worker_exit")[0];
        eprintln!(
            "{answered} turns in 60 s; largest beat gap {} ms; late beats reported: {:?}",
            number(exit, "largest_beat_gap_ms"),
            events_named(&home, "watchdog_late")
        );
        assert_eq!(events_named(&home, "worker_spawned").len(), 1);
    }
}
