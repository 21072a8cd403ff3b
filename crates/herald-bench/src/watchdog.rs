//! `herald-bench watchdog`: the supervised gateway's worker watchdog, from outside.
//!
//! 1. **SIGSTOP of the worker → serving again**, `--runs` times (plus one warm-up), each on a fresh
//!    supervised gateway: the clock starts right before `kill(2)`, and stops when the state record names a
//!    new worker `running` and that worker answers a control-channel ping. The stopped worker must be gone
//!    afterwards (the monitor killed and reaped it). Target: < 10 s.
//! 2. **False positives under load**: a fresh supervised gateway takes a 64-client HTTP echo load
//!    (keep-alive clients posting back to back) for `--load-secs`, then the same again on another fresh
//!    gateway while a writer thread fills and fsyncs a file beside the home (disk pressure on the file
//!    system the journal and the records fsync to). Each reports the `wedged` events (target 0), the
//!    `watchdog_late` events and the largest gap between two beats the monitor saw (`worker_exit`'s
//!    `largest_beat_gap_ms`), against the limit `interval × missed_beats`.
//!
//! The idle wake-ups with the watchdog on are the default bench's figure (it runs the supervised mode).

use std::path::Path;

use anyhow::Context;

const USAGE: &str = "\
usage: herald-bench watchdog [--runs N] [--load-secs S] [--json PATH]

The worker watchdog of a supervised gateway: SIGSTOP of the worker -> a new worker serving (median,
min, max, p90 over N runs, default 20; target < 10 s), then `wedged` events and the largest beat gap
under a 64-client HTTP load for S seconds (default 60), without and with disk pressure (target: none).";

#[derive(Debug)]
struct Options {
    runs: usize,
    load_secs: u64,
    json: std::path::PathBuf,
}

fn parse(args: &[String]) -> anyhow::Result<Option<Options>> {
    let mut options = Options {
        runs: 20,
        load_secs: 60,
        json: "target/bench/watchdog.json".into(),
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = || iter.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--runs" => options.runs = value()?.parse().context("--runs wants a number")?,
            "--load-secs" => {
                options.load_secs = value()?.parse().context("--load-secs wants a number")?;
            }
            "--json" => options.json = value()?.into(),
            other => anyhow::bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    anyhow::ensure!(options.runs > 0, "--runs must be positive");
    anyhow::ensure!(options.load_secs > 0, "--load-secs must be positive");
    Ok(Some(options))
}

pub fn main(args: &[String], herald: &Path) -> anyhow::Result<()> {
    let Some(options) = parse(args)? else {
        println!("{USAGE}");
        return Ok(());
    };
    linux::bench(&options, herald)
}

#[cfg(not(target_os = "linux"))]
mod linux {
    pub(super) fn bench(_options: &super::Options, _herald: &std::path::Path) -> anyhow::Result<()> {
        anyhow::bail!("needs Linux (SIGSTOP of the worker, /proc)")
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io::Write;
    use std::path::Path;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use anyhow::{Context, ensure};
    use herald_home::Home;
    use herald_home::lifecycle::{LifecycleEvent, read_events};
    use serde_json::{Value, json};

    use super::Options;
    use crate::report::{Figure, Target};
    use crate::session::Session;

    /// The watchdog's limit with the defaults (the bench's homes set no `[supervisor]` keys):
    /// `watchdog_interval_secs × watchdog_missed_beats`.
    fn default_limit_ms() -> u64 {
        let supervisor = herald_home::config::SupervisorConfig::default();
        supervisor.watchdog_interval_secs * 1000 * u64::from(supervisor.watchdog_missed_beats)
    }
    /// How long the way back may take before the run counts as failed (the target is 10 s).
    const RECOVERY_LIMIT: Duration = Duration::from_secs(30);
    /// Each disk-pressure write: this much, then fsync.
    const PRESSURE_CHUNK: usize = 8 << 20;
    /// The pressure file is rewritten from the start after this much.
    const PRESSURE_FILE: u64 = 256 << 20;

    pub(super) fn bench(options: &Options, herald: &Path) -> anyhow::Result<()> {
        let machine = crate::machine::Machine::probe();
        eprintln!("herald-bench watchdog: {}", machine.summary());
        let mut recovery = Figure::new(
            "sigstop_worker_serving",
            "SIGSTOP of the worker -> serving again",
            "ms",
            Some(Target::Below(10_000.0)),
        )
        .precision(0);
        let mut runs = Vec::new();
        for run in 0..=options.runs {
            let detail = sigstop_run(herald).with_context(|| format!("SIGSTOP run {run}"))?;
            eprintln!(
                "herald-bench: {} {detail}",
                if run == 0 {
                    "warm-up:".to_owned()
                } else {
                    format!("SIGSTOP {run}/{}:", options.runs)
                }
            );
            if run > 0 {
                recovery
                    .samples
                    .push(detail["serving_ms"].as_f64().unwrap_or(f64::NAN));
                runs.push(detail);
            }
        }
        let mut sorted = recovery.samples.clone();
        sorted.sort_by(f64::total_cmp);
        let p90 = sorted[((sorted.len() - 1) as f64 * 0.9).round() as usize];

        let window = Duration::from_secs(options.load_secs);
        let plain = load_run(herald, window, false).context("load run")?;
        eprintln!("herald-bench: 64-client load: {plain}");
        let pressed = load_run(herald, window, true).context("load run under disk pressure")?;
        eprintln!("herald-bench: 64-client load + disk pressure: {pressed}");

        let mut figures = vec![recovery];
        for (id, name, load) in [
            ("load_wedged", "64-client load: wedged events", &plain),
            (
                "load_pressure_wedged",
                "64-client load + disk pressure: wedged events",
                &pressed,
            ),
        ] {
            let mut figure = Figure::new(id, name, "", Some(Target::Below(1.0))).precision(0);
            figure.samples.push(load["wedged"].as_f64().unwrap_or(f64::NAN));
            figures.push(figure);
        }
        for (id, name, load) in [
            (
                "load_largest_beat_gap",
                "64-client load: largest beat gap",
                &plain,
            ),
            (
                "load_pressure_largest_beat_gap",
                "64-client load + disk pressure: largest beat gap",
                &pressed,
            ),
        ] {
            let limit = load["limit_ms"].as_f64().unwrap_or(f64::NAN);
            let mut figure = Figure::new(id, name, "ms", Some(Target::Below(limit))).precision(0);
            figure
                .samples
                .push(load["largest_beat_gap_ms"].as_f64().unwrap_or(f64::NAN));
            figures.push(figure);
        }
        let table = crate::report::table(&figures);
        let report = json!({
            "date": crate::machine::now_rfc3339(),
            "machine": machine.to_json(),
            "herald_version": crate::machine::herald_version(herald),
            "figures": figures.iter().map(Figure::to_json).collect::<Vec<_>>(),
            "sigstop_p90_ms": p90,
            "sigstop_runs": runs,
            "load": plain,
            "load_with_disk_pressure": pressed,
            "command": std::env::args().collect::<Vec<_>>(),
        });
        crate::report::save_json(&options.json, &report)?;
        println!("{table}");
        println!("SIGSTOP -> serving again, p90: {p90:.0} ms");
        Ok(())
    }

    fn events(session: &Session) -> anyhow::Result<Vec<LifecycleEvent>> {
        let log = Home::at(session.root()).lifecycle_log();
        Ok(read_events(&log)
            .with_context(|| format!("cannot read {}", log.display()))?
            .0)
    }

    fn named<'a>(events: &'a [LifecycleEvent], name: &str) -> Vec<&'a LifecycleEvent> {
        events.iter().filter(|e| e.event == name).collect()
    }

    /// One fresh supervised gateway: serving, its worker stopped, timed back to serving, then stopped.
    fn sigstop_run(herald: &Path) -> anyhow::Result<Value> {
        let mut session = Session::new(herald, &[])?;
        session.start()?;
        // The worker's loop has turned (and beaten) once it answers a ping.
        let control = session.state().context("no state record")?.endpoints.control;
        crate::control::ping(Path::new(&control), Instant::now() + Duration::from_secs(5))?;
        let restart = session.signal_worker(libc::SIGSTOP, "SIGSTOP", RECOVERY_LIMIT)?;
        let stopped_left = crate::procfs::alive(restart.killed)?;
        ensure!(
            stopped_left != Some(true),
            "the stopped worker {} is still there after its replacement serves",
            restart.killed
        );
        let events = events(&session)?;
        let wedged = named(&events, "wedged");
        ensure!(wedged.len() == 1, "expected one wedged event: {events:?}");
        let silence = wedged[0].field("last_beat_ms_ago").and_then(Value::as_u64);
        session.stop()?;
        Ok(json!({
            "stopped_worker": restart.killed,
            "replacement_worker": restart.replacement,
            "state_running_ms": crate::ms(restart.state_running),
            "serving_ms": crate::ms(restart.serving),
            "last_beat_ms_ago": silence,
        }))
    }

    /// A fresh supervised gateway under 64 clients for `window` (with a disk writer beside it when
    /// `pressure`), then stopped: what its monitor's watchdog saw.
    fn load_run(herald: &Path, window: Duration, pressure: bool) -> anyhow::Result<Value> {
        let mut session = Session::new(herald, &[])?;
        session.start()?;
        let worker = session.worker_pid();
        let url = session.http_url().context("the gateway published no HTTP url")?;
        let authority = url.strip_prefix("http://").context("an http:// url")?.to_owned();
        let done = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let writer = pressure.then(|| {
            let path = session.root().with_file_name("pressure.bin");
            let (done, written) = (done.clone(), written.clone());
            std::thread::spawn(move || disk_pressure(&path, &done, &written))
        });
        let level = crate::turns::load(std::slice::from_ref(&authority), 64, window);
        done.store(true, Ordering::Relaxed);
        if let Some(writer) = writer {
            writer
                .join()
                .map_err(|_| anyhow::anyhow!("the disk writer panicked"))??;
        }
        let level = level?;
        let after = session.state().and_then(|s| s.worker_pid);
        session.stop()?;
        let events = events(&session)?;
        let exit = named(&events, "worker_exit");
        let number = |event: Option<&&LifecycleEvent>, field: &str| {
            event.and_then(|e| e.field(field)).and_then(Value::as_u64)
        };
        let spawned = named(&events, "worker_spawned");
        Ok(json!({
            "disk_pressure": pressure,
            "disk_written_mib": written.load(Ordering::Relaxed) >> 20,
            "seconds": window.as_secs(),
            "turns": level.turns,
            "turns_per_sec": level.per_sec,
            "errors": level.errors,
            "wedged": named(&events, "wedged").len(),
            "watchdog_late": named(&events, "watchdog_late").iter()
                .map(|e| e.field("gap_ms").cloned().unwrap_or(Value::Null)).collect::<Vec<_>>(),
            "largest_beat_gap_ms": number(exit.first(), "largest_beat_gap_ms"),
            "limit_ms": default_limit_ms(),
            "workers_spawned": spawned.len(),
            "same_worker": worker.is_some() && worker == after,
        }))
    }

    /// Writes `PRESSURE_CHUNK`s with an fsync after each until `done`, rewriting the file from the start
    /// every `PRESSURE_FILE`; removes it at the end.
    fn disk_pressure(path: &Path, done: &AtomicBool, written: &AtomicU64) -> anyhow::Result<()> {
        let chunk = vec![0x5a_u8; PRESSURE_CHUNK];
        let mut file =
            std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut in_file = 0u64;
        while !done.load(Ordering::Relaxed) {
            if in_file >= PRESSURE_FILE {
                file = std::fs::File::create(path)?;
                in_file = 0;
            }
            file.write_all(&chunk)?;
            file.sync_all()?;
            in_file += PRESSURE_CHUNK as u64;
            written.fetch_add(PRESSURE_CHUNK as u64, Ordering::Relaxed);
        }
        drop(file);
        std::fs::remove_file(path).ok();
        Ok(())
    }
}
