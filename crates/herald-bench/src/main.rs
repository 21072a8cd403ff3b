//! `herald-bench`: measures the lifecycle of the real release `herald` binary.
//!
//! This is a measurement, not a test: it starts gateways in fresh temporary homes and times what a user
//! or a service manager waits for — spawn to `running`, `status`, a planned `stop` — and, on Linux, reads
//! the idle gateway's memory and wake-ups from `/proc`. Each timed figure is repeated `--runs` times (one
//! extra warm-up repetition first, discarded) and reported as median, min and max against its target.
//!
//! Usage: `cargo build --release -p herald -p herald-bench && target/release/herald-bench [--runs N]
//! [--json PATH] [--herald PATH] [--wake-secs S] [--no-supervise]`.
//!
//! Since `herald run` supervises a worker child by default, the memory and wake-up figures cover both
//! processes (the worker named by `worker_pid` in the state record); `--no-supervise` measures the
//! single-process mode a service manager uses.
//!
//! In supervised mode on Linux it also times crash recovery: on separate fresh gateways, SIGKILL of the
//! worker until the state record names a replacement as `running` and that replacement answers a
//! control-channel ping.

#[cfg(target_os = "linux")]
mod control;
mod failover;
mod flood;
mod machine;
mod matrix;
mod proc;
mod procfs;
mod report;
mod request;
mod session;
mod telegram;
mod turns;
mod upgrade;
mod watchdog;
mod webhook;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

use crate::machine::Machine;
use crate::report::{Figure, Target};
use crate::session::Session;

const DEFAULT_RUNS: usize = 20;
const DEFAULT_JSON: &str = "target/bench/lifecycle.json";
/// How long a gateway idles before its memory is read.
const IDLE_BEFORE_RSS: Duration = Duration::from_secs(1);
/// How long a fresh gateway idles before its worker is killed.
#[cfg(target_os = "linux")]
const IDLE_BEFORE_KILL: Duration = Duration::from_millis(200);
/// Settling time before the wake-up window opens, and the default window itself.
const WAKEUP_SETTLE: Duration = Duration::from_secs(1);
const DEFAULT_WAKE_SECS: u64 = 5;

const USAGE: &str = "\
usage: herald-bench [--runs N] [--json PATH] [--herald PATH] [--wake-secs S] [--no-supervise] [--no-turns]
       herald-bench turns [--help]   (HTTP turns in detail, with latency as the journal grows)
       herald-bench flood [--help]   (a normal client while idle and slow-loris connections fill the listener)
       herald-bench watchdog [--help] (SIGSTOP of the worker -> serving again; no false wedge under load)
       herald-bench telegram [--help] (replies to many chats against a rate-limited Bot API stand-in)
       herald-bench failover [--help] (replicas on PostgreSQL: how long a bot goes unpolled when its replica goes)
       herald-bench webhook [--help]  (signed webhook turns, inbound to callback, at 64 senders)
       herald-bench matrix [--help]   (Matrix turns through a real Synapse, at 64 conversations)
       herald-bench upgrade [--help]  (herald upgrade under a keyed client: wall time, longest refusal)

Benchmarks the release herald binary: spawn -> running, status, stop, kill -9 of the worker -> serving
again, idle RSS and idle wake-ups.

  --runs N       repetitions per figure, each in a fresh temporary home (default 20)
  --json PATH    where to write the results as JSON (default target/bench/lifecycle.json)
  --herald PATH  the herald binary (default: `herald` next to this executable)
  --wake-secs S  length of the idle wake-up window in seconds (default 5; the gateway's state
                 heartbeat is every 30 s, so use 35 or more to include one)
  --no-supervise run the gateway as `herald run --no-supervise` (one process, as under a service
                 manager) instead of the default monitor + worker
  --no-turns     skip HTTP echo turn throughput and p50/p99 at 1, 8 and 64 clients (5 s each)";

#[derive(Debug)]
struct Options {
    runs: usize,
    json: PathBuf,
    herald: PathBuf,
    wake_window: Duration,
    /// Extra arguments for `herald run`.
    run_args: Vec<String>,
    /// Measure HTTP turn throughput too (`--no-turns` skips it).
    turns: bool,
}

/// Seconds each HTTP concurrency level is measured for (after a 1 s warm-up).
const TURN_SECONDS: u64 = 5;

/// A subcommand's entry: its arguments and the herald binary next to this one.
type Subcommand = fn(&[String], &std::path::Path) -> anyhow::Result<()>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let subcommand: Option<(&str, Subcommand)> = match args.first().map(String::as_str) {
        Some("turns") => Some(("turns", turns::main)),
        Some("flood") => Some(("flood", flood::main)),
        Some("watchdog") => Some(("watchdog", watchdog::main)),
        Some("telegram") => Some(("telegram", telegram::main)),
        Some("failover") => Some(("failover", failover::main)),
        Some("webhook") => Some(("webhook", webhook::main)),
        Some("matrix") => Some(("matrix", matrix::main)),
        Some("upgrade") => Some(("upgrade", upgrade::main)),
        _ => None,
    };
    if let Some((name, run)) = subcommand {
        let herald = std::env::current_exe()
            .map(|exe| exe.with_file_name(format!("herald{}", std::env::consts::EXE_SUFFIX)));
        let result = herald
            .context("cannot locate this executable to find herald next to it")
            .and_then(|herald| run(&args[1..], &herald));
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("herald-bench {name}: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let options = match parse_args(&args) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("herald-bench: {e:#}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match bench(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `Ok(None)` means `--help`.
fn parse_args(args: &[String]) -> anyhow::Result<Option<Options>> {
    let mut runs = DEFAULT_RUNS;
    let mut json = PathBuf::from(DEFAULT_JSON);
    let mut herald = None;
    let mut wake_secs = DEFAULT_WAKE_SECS;
    let mut run_args = Vec::new();
    let mut turns = true;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = || -> anyhow::Result<String> {
            inline
                .clone()
                .or_else(|| iter.next().cloned())
                .with_context(|| format!("{flag} needs a value"))
        };
        match flag {
            "-h" | "--help" => return Ok(None),
            "--no-supervise" => run_args.push("--no-supervise".to_owned()),
            "--no-turns" => turns = false,
            "--runs" => {
                let text = value()?;
                runs = text
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .with_context(|| format!("--runs wants a positive integer, not {text:?}"))?;
            }
            "--json" => json = PathBuf::from(value()?),
            "--herald" => herald = Some(PathBuf::from(value()?)),
            "--wake-secs" => {
                let text = value()?;
                wake_secs = text
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .with_context(|| format!("--wake-secs wants a positive integer, not {text:?}"))?;
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    let herald = match herald {
        Some(path) => path,
        None => std::env::current_exe()
            .context("cannot locate this executable to find herald next to it")?
            .with_file_name(format!("herald{}", std::env::consts::EXE_SUFFIX)),
    };
    Ok(Some(Options {
        runs,
        json,
        herald,
        wake_window: Duration::from_secs(wake_secs),
        run_args,
        turns,
    }))
}

/// The figures, in table order.
struct Figures {
    running: Figure,
    status: Figure,
    status_json: Figure,
    status_deep: Figure,
    stop: Figure,
    stop_reaped: Figure,
    worker_restart: Figure,
    stop_in_flight: Figure,
    pss: Figure,
    rss: Figure,
    rss_run: Figure,
    rss_worker: Figure,
    hwm: Figure,
    wakeups: Figure,
}

impl Figures {
    fn new() -> Figures {
        Figures {
            running: Figure::new(
                "spawn_to_running",
                "spawn -> running",
                "ms",
                Some(Target::Below(50.0)),
            ),
            status: Figure::new("status", "status", "ms", Some(Target::Below(5.0))),
            status_json: Figure::new("status_json", "status --json", "ms", Some(Target::Below(5.0))),
            status_deep: Figure::new(
                "status_deep",
                "status --deep (healthy)",
                "ms",
                Some(Target::Below(20.0)),
            ),
            stop: Figure::new("stop", "stop (command)", "ms", Some(Target::Below(50.0))),
            stop_reaped: Figure::new(
                "stop_gateway_reaped",
                "stop -> gateway reaped",
                "ms",
                Some(Target::Below(50.0)),
            ),
            worker_restart: Figure::new(
                "worker_kill_to_serving",
                "kill -9 worker -> serving",
                "ms",
                Some(Target::Below(250.0)),
            ),
            stop_in_flight: Figure::new(
                "stop_with_turn_in_flight",
                "stop, a 200 ms turn in flight",
                "ms",
                Some(Target::Below(300.0)),
            ),
            pss: Figure::new(
                "idle_pss",
                "idle memory (PSS), all processes",
                "MB",
                Some(Target::Below(15.0)),
            )
            .precision(1),
            rss: Figure::new("idle_rss", "idle RSS sum (shared pages twice)", "MB", None).precision(1),
            rss_run: Figure::new("idle_rss_run", "  `herald run` process", "MB", None).precision(1),
            rss_worker: Figure::new("idle_rss_worker", "  worker process", "MB", None).precision(1),
            hwm: Figure::new("idle_hwm", "peak RSS (VmHWM), all", "MB", None).precision(1),
            wakeups: Figure::new(
                "idle_wakeups",
                "idle wake-ups, all threads",
                "/s",
                Some(Target::AtMost(1.0)),
            ),
        }
    }

    /// The per-repetition figures, paired with the same figure of another set.
    fn repeated<'a>(&'a mut self, other: &'a Figures) -> [(&'a mut Figure, &'a Figure); 11] {
        [
            (&mut self.running, &other.running),
            (&mut self.status, &other.status),
            (&mut self.status_json, &other.status_json),
            (&mut self.status_deep, &other.status_deep),
            (&mut self.stop, &other.stop),
            (&mut self.stop_reaped, &other.stop_reaped),
            (&mut self.pss, &other.pss),
            (&mut self.rss, &other.rss),
            (&mut self.rss_run, &other.rss_run),
            (&mut self.rss_worker, &other.rss_worker),
            (&mut self.hwm, &other.hwm),
        ]
    }

    fn all(&self) -> Vec<Figure> {
        [
            &self.running,
            &self.status,
            &self.status_json,
            &self.status_deep,
            &self.stop,
            &self.stop_reaped,
            &self.worker_restart,
            &self.stop_in_flight,
            &self.pss,
            &self.rss,
            &self.rss_run,
            &self.rss_worker,
            &self.hwm,
            &self.wakeups,
        ]
        .into_iter()
        .cloned()
        .collect()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// KiB as the kernel counts them, to decimal megabytes.
fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1_000_000.0
}

/// What one repetition saw beyond the figures.
#[derive(Debug, Default)]
struct Seen {
    /// A supervised worker process was named in the state record.
    worker: bool,
    /// The worker was still alive after the `herald run` process had been reaped.
    worker_outlived: bool,
    /// What `herald stop` printed.
    stop_report: String,
}

fn bench(options: &Options) -> anyhow::Result<()> {
    let herald = &options.herald;
    ensure!(
        herald.is_file(),
        "no herald binary at {} (build it with `cargo build --release -p herald`, or pass --herald PATH)",
        herald.display()
    );
    let version = machine::herald_version(herald)
        .with_context(|| format!("`{} --version` did not answer", herald.display()))?;
    let machine = Machine::probe();
    let date = machine::now_rfc3339();
    eprintln!(
        "herald-bench: herald {version} at {}{}; {}; {} runs + 1 warm-up",
        herald.display(),
        if options.run_args.is_empty() {
            String::new()
        } else {
            format!(" (run {})", options.run_args.join(" "))
        },
        machine.summary(),
        options.runs
    );

    let mut figures = Figures::new();
    if !cfg!(target_os = "linux") {
        let why = Some("needs Linux /proc".to_owned());
        for f in [
            &mut figures.pss,
            &mut figures.rss,
            &mut figures.rss_run,
            &mut figures.rss_worker,
            &mut figures.hwm,
            &mut figures.wakeups,
        ] {
            f.unavailable.clone_from(&why);
        }
    }

    let mut supervised_runs = 0;
    let mut worker_outlived_runs = 0;
    let mut stop_reports = Vec::new();
    for run in 0..=options.runs {
        let warm_up = run == 0;
        let mut sample = Figures::new();
        let seen = repetition(options, &mut sample).with_context(|| format!("repetition {run}"))?;
        eprintln!(
            "herald-bench: {} running {:.2} ms, status {:.2} ms, status --json {:.2} ms, stop {:.2} ms \
             (gateway reaped {:.2} ms){}{} [{}]",
            if warm_up {
                "warm-up:".to_owned()
            } else {
                format!("run {run}/{}:", options.runs)
            },
            sample.running.samples[0],
            sample.status.samples[0],
            sample.status_json.samples[0],
            sample.stop.samples[0],
            sample.stop_reaped.samples[0],
            sample
                .rss
                .samples
                .first()
                .map_or(String::new(), |rss| format!(", RSS {rss:.1} MB")),
            if seen.worker_outlived {
                ", WORKER OUTLIVED `herald run`"
            } else {
                ""
            },
            seen.stop_report,
        );
        if warm_up {
            continue;
        }
        supervised_runs += usize::from(seen.worker);
        worker_outlived_runs += usize::from(seen.worker_outlived);
        stop_reports.push(seen.stop_report);
        for (all, one) in figures.repeated(&sample) {
            all.samples.extend_from_slice(&one.samples);
        }
    }
    if cfg!(target_os = "linux") && supervised_runs == 0 {
        figures.rss_worker.unavailable =
            Some("no supervised worker (run --no-supervise, or an older herald)".into());
    }

    let restarts = if !cfg!(target_os = "linux") {
        figures.worker_restart.unavailable = Some("needs Linux (SIGKILL of the worker)".into());
        Vec::new()
    } else if supervised_runs == 0 {
        figures.worker_restart.unavailable =
            Some("no supervised worker (run --no-supervise, or an older herald)".into());
        Vec::new()
    } else {
        restart_runs(options, &mut figures.worker_restart)?
    };

    if cfg!(unix) {
        stop_in_flight_runs(options, &mut figures.stop_in_flight).context("stop with a turn in flight")?;
    } else {
        figures.stop_in_flight.unavailable = Some("the stand-in agent is a shell command".into());
    }

    let wakeups = wakeup_window(options).context("idle wake-up window")?;
    if let Some(w) = &wakeups {
        figures.wakeups.samples.push(w.per_sec());
    }

    let turn_levels = if options.turns {
        turns::levels(&options.herald, &[1, 8, 64], TURN_SECONDS).context("HTTP turns")?
    } else {
        Vec::new()
    };
    let mut all = figures.all();
    all.extend(turns::figures(&turn_levels));
    print!("{}", report::table(&all));
    if worker_outlived_runs > 0 {
        println!(
            "\nwarning: in {worker_outlived_runs} of {} runs the worker was still alive after `herald run` had \
             been reaped",
            options.runs
        );
    }
    if let Some(w) = &wakeups {
        print!("\n{}", w.describe());
    }

    let document = json!({
        "benchmark": "herald lifecycle",
        "date": date,
        "command": std::env::args().collect::<Vec<_>>(),
        "runs": options.runs,
        "warm_up_runs": 1,
        "herald": {
            "path": herald.display().to_string(),
            "version": version,
            "run_args": options.run_args,
        },
        "supervised_runs": supervised_runs,
        "worker_outlived_runs": worker_outlived_runs,
        "stop_reports": stop_reports,
        "worker_restarts": restarts,
        "machine": machine.to_json(),
        "figures": all.iter().map(Figure::to_json).collect::<Vec<_>>(),
        "wakeups": wakeups.as_ref().map(WakeWindow::to_json),
        "turns": turn_levels.iter().map(turns::Level::to_json).collect::<Vec<_>>(),
    });
    if let Some(parent) = options.json.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let text = serde_json::to_string_pretty(&document)? + "\n";
    std::fs::write(&options.json, text)
        .with_context(|| format!("cannot write {}", options.json.display()))?;
    eprintln!("herald-bench: wrote {}", options.json.display());
    Ok(())
}

/// One repetition in a fresh home: start, idle, read memory, status twice, stop.
fn repetition(options: &Options, sample: &mut Figures) -> anyhow::Result<Seen> {
    let mut session = Session::new(&options.herald, &options.run_args)?;
    sample.running.samples.push(ms(session.start()?));
    let pid = session.gateway_pid().context("no gateway pid")?;
    let worker = session.worker_pid();

    std::thread::sleep(IDLE_BEFORE_RSS);
    if let Some(run) = procfs::memory(pid)? {
        let worker = match worker {
            Some(worker) => procfs::memory(worker)?,
            None => None,
        };
        let (rss_worker, hwm_worker, pss_worker) =
            worker.map_or((0, 0, 0), |w| (w.rss_kib, w.hwm_kib, w.pss_kib));
        sample.pss.samples.push(mb(run.pss_kib + pss_worker));
        sample.rss.samples.push(mb(run.rss_kib + rss_worker));
        sample.rss_run.samples.push(mb(run.rss_kib));
        if worker.is_some() {
            sample.rss_worker.samples.push(mb(rss_worker));
        }
        sample.hwm.samples.push(mb(run.hwm_kib + hwm_worker));
    }

    let status = session.run(&["status"])?;
    ensure!(
        status.finished.status.success() && status.stdout.contains("running"),
        "`herald status` did not report a running gateway ({}): {}{}",
        status.finished.status,
        status.stdout,
        status.stderr
    );
    sample.status.samples.push(ms(status.finished.elapsed));

    let status = session.run(&["status", "--json"])?;
    let parsed: Value = serde_json::from_str(&status.stdout)
        .with_context(|| format!("`herald status --json` printed no JSON: {}", status.stdout))?;
    ensure!(
        status.finished.status.success()
            && parsed["running"] == Value::Bool(true)
            && parsed["pid"] == json!(pid),
        "`herald status --json` did not report gateway {pid} running ({}): {}",
        status.finished.status,
        status.stdout
    );
    sample.status_json.samples.push(ms(status.finished.elapsed));

    let deep = session.run(&["status", "--deep"])?;
    ensure!(
        deep.finished.status.success(),
        "`herald status --deep` did not find the fresh gateway healthy ({}): {}{}",
        deep.finished.status,
        deep.stdout,
        deep.stderr
    );
    sample.status_deep.samples.push(ms(deep.finished.elapsed));

    let stop = session.stop()?;
    sample.stop.samples.push(ms(stop.command));
    sample.stop_reaped.samples.push(ms(stop.gateway_gone));
    Ok(Seen {
        worker: worker.is_some(),
        worker_outlived: stop.worker_outlived == Some(true),
        stop_report: stop.report,
    })
}

/// The worker-restart figure: `--runs` fresh supervised gateways (plus one warm-up), each started, left
/// idle briefly, its worker killed with SIGKILL, timed until a replacement serves, then stopped with
/// `herald stop`. Its own gateways, so the stop figures above are never taken after a restart, and each
/// kill is the monitor's first (immediate) restart rather than a backed-off one. Returns each run's
/// details for the JSON.
#[cfg(target_os = "linux")]
fn restart_runs(options: &Options, figure: &mut Figure) -> anyhow::Result<Vec<Value>> {
    let mut details = Vec::new();
    for run in 0..=options.runs {
        let warm_up = run == 0;
        let what = || format!("worker-restart repetition {run}");
        let mut session = Session::new(&options.herald, &options.run_args).with_context(what)?;
        session.start().with_context(what)?;
        std::thread::sleep(IDLE_BEFORE_KILL);
        let restart = session.kill_worker().with_context(what)?;
        let stop = session.stop().with_context(what)?;
        ensure!(
            stop.worker_outlived != Some(true),
            "{}: replacement worker {} outlived `herald run` after stop",
            what(),
            restart.replacement
        );
        eprintln!(
            "herald-bench: {} kill -9 worker {} -> state running with worker {} {:.2} ms, ping answered \
             {:.2} ms ({} attempt(s)); stop {:.2} ms (gateway reaped {:.2} ms) [{}]",
            if warm_up {
                "restart warm-up:".to_owned()
            } else {
                format!("restart {run}/{}:", options.runs)
            },
            restart.killed,
            restart.replacement,
            ms(restart.state_running),
            ms(restart.serving),
            restart.ping_attempts,
            ms(stop.command),
            ms(stop.gateway_gone),
            stop.report,
        );
        if warm_up {
            continue;
        }
        figure.samples.push(ms(restart.serving));
        details.push(json!({
            "killed_worker": restart.killed,
            "replacement_worker": restart.replacement,
            "state_running_ms": ms(restart.state_running),
            "serving_ms": ms(restart.serving),
            "ping_attempts": restart.ping_attempts,
            "stop_ms": ms(stop.command),
            "stop_gateway_reaped_ms": ms(stop.gateway_gone),
            "stop_report": stop.report,
        }));
    }
    Ok(details)
}

#[cfg(not(target_os = "linux"))]
fn restart_runs(_options: &Options, _figure: &mut Figure) -> anyhow::Result<Vec<Value>> {
    Ok(Vec::new())
}

/// A planned stop while a turn is in flight: the `command` agent is a shell that answers after 200 ms;
/// a message is posted (`wait=false`), and 50 ms later `herald stop` is timed. The drain lets the turn
/// finish, so the figure is about the turn's remaining 150 ms plus the stop itself.
fn stop_in_flight_runs(options: &Options, figure: &mut Figure) -> anyhow::Result<()> {
    for run in 0..=options.runs {
        let mut session = Session::new(&options.herald, &options.run_args)?;
        session.append_config(
            "\n[agent]\nbackend = \"command\"\n\n[agent.command]\n\
             command = [\"/bin/sh\", \"-c\", \"cat >/dev/null; sleep 0.2; echo ok\"]\n",
        )?;
        session.start()?;
        let url = session.http_url().context("no HTTP url")?;
        let mut client = turns::Client::connect(url.strip_prefix("http://").context("an http:// url")?)?;
        let status = client.post_to("bench", "m", "hello", "?wait=false")?;
        ensure!(status == 202, "the message was not accepted: {status}");
        std::thread::sleep(Duration::from_millis(50));
        let stop = session.stop()?;
        let drained = session.last_drain_end();
        eprintln!(
            "herald-bench: {} stop with a turn in flight {:.2} ms ({drained})",
            if run == 0 {
                "warm-up:".to_owned()
            } else {
                format!("run {run}/{}:", options.runs)
            },
            ms(stop.command),
        );
        if run > 0 {
            figure.samples.push(ms(stop.command));
        }
    }
    Ok(())
}

/// One process's threads over the idle window.
#[derive(Debug)]
struct ProcessSwitches {
    role: &'static str,
    pid: u32,
    /// Context switches of each thread during the window.
    threads: Vec<procfs::ThreadSwitches>,
}

/// Context switches of each gateway thread over the idle window.
#[derive(Debug)]
struct WakeWindow {
    /// The state-record heartbeat the gateway announced, if it could be read.
    heartbeat_secs: Option<u64>,
    window: Duration,
    processes: Vec<ProcessSwitches>,
}

impl WakeWindow {
    fn total(&self) -> u64 {
        self.processes
            .iter()
            .flat_map(|p| &p.threads)
            .map(procfs::ThreadSwitches::total)
            .sum()
    }

    fn per_sec(&self) -> f64 {
        self.total() as f64 / self.window.as_secs_f64()
    }

    /// Whether a heartbeat (first due `heartbeat_secs` after `running`) fell inside the window.
    fn includes_heartbeat(&self) -> Option<bool> {
        self.heartbeat_secs
            .map(|h| (WAKEUP_SETTLE + self.window).as_secs_f64() >= h as f64)
    }

    fn describe(&self) -> String {
        let secs = self.window.as_secs_f64();
        let mut out = format!("idle wake-ups by thread ({secs:.1} s window):\n");
        for p in &self.processes {
            for t in &p.threads {
                out += &format!(
                    "  {:<12} {:>7} {:>7}  {:<16} {:>4} switches ({} voluntary, {} involuntary)  {:.2}/s\n",
                    p.role,
                    p.pid,
                    t.tid,
                    t.comm,
                    t.total(),
                    t.voluntary,
                    t.nonvoluntary,
                    t.total() as f64 / secs
                );
            }
        }
        if let (Some(false), Some(heartbeat)) = (self.includes_heartbeat(), self.heartbeat_secs) {
            out += &format!(
                "  (the window held no state heartbeat, which is every {heartbeat} s; use --wake-secs {} to \
                 include one)\n",
                heartbeat + 5
            );
        }
        out
    }

    fn to_json(&self) -> Value {
        let secs = self.window.as_secs_f64();
        json!({
            "heartbeat_secs": self.heartbeat_secs,
            "includes_heartbeat": self.includes_heartbeat(),
            "settle_secs": WAKEUP_SETTLE.as_secs_f64(),
            "window_secs": secs,
            "switches": self.total(),
            "per_sec": self.per_sec(),
            "processes": self.processes.iter().map(|p| json!({
                "role": p.role,
                "pid": p.pid,
                "threads": p.threads.iter().map(|t| json!({
                    "tid": t.tid,
                    "comm": t.comm,
                    "voluntary": t.voluntary,
                    "nonvoluntary": t.nonvoluntary,
                    "per_sec": t.total() as f64 / secs,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }
}

/// Starts one gateway, lets it settle, and counts every thread's context switches (of `herald run` and,
/// when supervised, its worker) over the window. `Ok(None)` where `/proc` does not exist.
fn wakeup_window(options: &Options) -> anyhow::Result<Option<WakeWindow>> {
    if !cfg!(target_os = "linux") {
        return Ok(None);
    }
    let mut session = Session::new(&options.herald, &options.run_args)?;
    session.start()?;
    let pid = session.gateway_pid().context("no gateway pid")?;
    let mut roles = vec![("herald run", pid)];
    roles.extend(session.worker_pid().map(|w| ("worker", w)));
    let heartbeat_secs = session.state().map(|s| s.heartbeat_secs);
    std::thread::sleep(WAKEUP_SETTLE);
    eprintln!(
        "herald-bench: counting wake-ups of the idle gateway for {} s",
        options.wake_window.as_secs()
    );
    let sample = || -> anyhow::Result<Option<Vec<Vec<procfs::ThreadSwitches>>>> {
        let mut all = Vec::new();
        for (_, pid) in &roles {
            let Some(threads) = procfs::thread_switches(*pid)? else {
                return Ok(None);
            };
            all.push(threads);
        }
        Ok(Some(all))
    };
    let Some(before) = sample()? else {
        return Ok(None);
    };
    let opened = Instant::now();
    std::thread::sleep(options.wake_window);
    let Some(after) = sample()? else {
        return Ok(None);
    };
    let window = opened.elapsed();
    session.stop()?;

    let processes = roles
        .iter()
        .zip(before.into_iter().zip(after))
        .map(|(&(role, pid), (before, after))| ProcessSwitches {
            role,
            pid,
            threads: deltas(before, after),
        })
        .collect();
    Ok(Some(WakeWindow {
        heartbeat_secs,
        window,
        processes,
    }))
}

/// Per-thread counter differences; a thread born inside the window counts from zero (one that ended
/// inside it is lost, which idle gateways do not do).
fn deltas(
    before: Vec<procfs::ThreadSwitches>,
    after: Vec<procfs::ThreadSwitches>,
) -> Vec<procfs::ThreadSwitches> {
    let before: BTreeMap<u32, procfs::ThreadSwitches> = before.into_iter().map(|t| (t.tid, t)).collect();
    after
        .into_iter()
        .map(|t| {
            let (voluntary, nonvoluntary) = before
                .get(&t.tid)
                .map_or((0, 0), |b| (b.voluntary, b.nonvoluntary));
            procfs::ThreadSwitches {
                voluntary: t.voluntary.saturating_sub(voluntary),
                nonvoluntary: t.nonvoluntary.saturating_sub(nonvoluntary),
                ..t
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_flags_with_defaults() {
        let o = parse_args(&[]).unwrap().unwrap();
        assert_eq!(o.runs, DEFAULT_RUNS);
        assert_eq!(o.wake_window, Duration::from_secs(DEFAULT_WAKE_SECS));
        assert!(o.run_args.is_empty());
        let o = parse_args(&args(&["--no-supervise"])).unwrap().unwrap();
        assert_eq!(o.run_args, ["--no-supervise"]);
        assert_eq!(o.json, PathBuf::from(DEFAULT_JSON));
        assert!(o.herald.file_stem().is_some_and(|s| s == "herald"));

        let o = parse_args(&args(&["--runs", "3", "--json=x.json", "--herald", "/h"]))
            .unwrap()
            .unwrap();
        assert_eq!((o.runs, o.json, o.herald), (3, "x.json".into(), "/h".into()));

        assert!(parse_args(&args(&["--help"])).unwrap().is_none());
        assert_eq!(
            parse_args(&args(&["--wake-secs", "35"]))
                .unwrap()
                .unwrap()
                .wake_window,
            Duration::from_secs(35)
        );
        for bad in [
            &["--runs", "0"][..],
            &["--runs"],
            &["--wake-secs", "x"],
            &["--frobnicate"],
        ] {
            assert!(parse_args(&args(bad)).is_err(), "{bad:?}");
        }
    }
}
