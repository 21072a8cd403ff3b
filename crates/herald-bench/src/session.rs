//! One benchmark home: a fresh temporary directory, the gateway started on it, and the CLI commands run
//! against it.
//!
//! **Invariant:** a [`Session`] never outlives its gateway. Dropping it (on success, error or panic) asks
//! the gateway to stop with `herald stop`, force-kills it only if that fails, and then removes the
//! temporary directory.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use herald_home::Home;
use herald_home::atomic::read_record;
use herald_home::records::{GatewayState, StateRecord};

use crate::proc::{Finished, Proc, run_bounded};

/// Upper bound on every wait the benchmark does.
pub const WAIT_LIMIT: Duration = Duration::from_secs(10);
/// How often the bench polls `run/state.json` while waiting for `running`.
const STATE_POLL: Duration = Duration::from_micros(200);

/// A CLI command's result: its timing plus what it printed.
#[derive(Debug)]
pub struct CommandRun {
    pub finished: Finished,
    pub stdout: String,
    pub stderr: String,
}

/// The timings of one planned stop.
#[derive(Debug, Clone)]
pub struct StopTimes {
    /// `herald stop`: spawn to exit.
    pub command: Duration,
    /// From spawning `herald stop` until the gateway process exited (and was reaped).
    pub gateway_gone: Duration,
    /// Whether a supervised worker was still alive when the `herald run` process had been reaped
    /// (`None`: no worker, or not checkable on this OS).
    pub worker_outlived: Option<bool>,
    /// What `herald stop` printed (which stop path it used, and its own timing).
    pub report: String,
}

/// One SIGKILL (or SIGSTOP) of the supervised worker and the monitor's replacement of it.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone)]
pub struct WorkerRestart {
    /// The worker that was killed.
    pub killed: u32,
    /// The worker that replaced it.
    pub replacement: u32,
    /// From the kill until `run/state.json` said `running` with the replacement's `worker_pid`.
    pub state_running: Duration,
    /// From the kill until the replacement answered a control-channel ping with `"ok": true`.
    pub serving: Duration,
    /// Pings sent until one was answered (connect failures included).
    pub ping_attempts: u32,
}

#[derive(Debug)]
pub struct Session {
    herald: PathBuf,
    run_args: Vec<String>,
    root: PathBuf,
    gateway: Option<Proc>,
    /// The worker process under a supervising `herald run`, as the state record names it.
    worker: Option<u32>,
    dir: tempfile::TempDir,
}

impl Session {
    /// A fresh, empty home in a new temporary directory; the gateway will be `herald run RUN_ARGS`.
    pub fn new(herald: &Path, run_args: &[String]) -> anyhow::Result<Session> {
        let dir = tempfile::Builder::new()
            .prefix("herald-bench")
            .tempdir()
            .context("cannot create a temporary directory")?;
        let root = dir.path().join("home");
        // A free port: a benchmark must never collide with a gateway the user runs on the default one.
        std::fs::create_dir_all(&root).context("cannot create the benchmark home")?;
        std::fs::write(root.join("herald.toml"), "[http]\nlisten = \"127.0.0.1:0\"\n")
            .context("cannot write the benchmark config")?;
        Ok(Session {
            herald: herald.to_path_buf(),
            run_args: run_args.to_vec(),
            root,
            gateway: None,
            worker: None,
            dir,
        })
    }

    /// A `herald --home H ARGS` command with stdin closed and the variables herald reads removed, its
    /// output going to files named after `tag` in the temporary directory (no pipes to drain).
    fn command(&self, args: &[&str], tag: &str) -> anyhow::Result<Command> {
        let mut cmd = Command::new(&self.herald);
        cmd.arg("--home").arg(&self.root).args(args);
        cmd.env_remove("HERALD_HOME").env_remove("HERALD_LOG");
        cmd.stdin(Stdio::null());
        cmd.stdout(File::create(self.output_path(tag, "out"))?);
        cmd.stderr(File::create(self.output_path(tag, "err"))?);
        Ok(cmd)
    }

    fn output_path(&self, tag: &str, stream: &str) -> PathBuf {
        self.dir.path().join(format!("{tag}.{stream}"))
    }

    fn read_output(&self, tag: &str, stream: &str) -> String {
        std::fs::read(self.output_path(tag, stream))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The gateway's state record, if present and valid.
    pub fn state(&self) -> Option<StateRecord> {
        read_record::<StateRecord>(&Home::at(&self.root).state_record()).present()
    }

    /// Adds TOML to the home's config (before [`Session::start`]).
    pub fn append_config(&self, toml: &str) -> anyhow::Result<()> {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.root.join("herald.toml"))
            .context("cannot open the benchmark config")?;
        file.write_all(toml.as_bytes())
            .context("cannot write the benchmark config")
    }

    /// The last `drain_end` event, as `finished N, cut M` (or why there is none).
    pub fn last_drain_end(&self) -> String {
        let log = Home::at(&self.root).lifecycle_log();
        match herald_home::lifecycle::read_events(&log) {
            Ok((events, _)) => events.iter().rev().find(|e| e.event == "drain_end").map_or(
                "no drain_end event".into(),
                |e| {
                    let field = |k| e.field(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
                    format!("drain finished {}, cut {}", field("finished"), field("cut"))
                },
            ),
            Err(e) => format!("cannot read the lifecycle log: {e}"),
        }
    }

    /// The gateway's home directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The HTTP API's URL, from the state record.
    pub fn http_url(&self) -> Option<String> {
        self.state().and_then(|s| s.endpoints.http_url)
    }

    pub fn gateway_pid(&self) -> Option<u32> {
        self.gateway.as_ref().map(Proc::pid)
    }

    pub fn worker_pid(&self) -> Option<u32> {
        self.worker
    }

    /// Spawns `herald run` and returns the time from `Command::spawn` until `run/state.json` says
    /// `running` with the child's pid.
    pub fn start(&mut self) -> anyhow::Result<Duration> {
        anyhow::ensure!(
            self.gateway.is_none(),
            "a gateway is already running in this session"
        );
        let mut args = vec!["run"];
        args.extend(self.run_args.iter().map(String::as_str));
        let mut cmd = self.command(&args, "gateway")?;
        let state_path = Home::at(&self.root).state_record();
        let gateway = self
            .gateway
            .insert(Proc::spawn(&mut cmd).context("cannot start `herald run`")?);
        let pid = gateway.pid();
        let deadline = gateway.started() + WAIT_LIMIT;
        loop {
            if let Some(record) = read_record::<StateRecord>(&state_path).present()
                && record.state == GatewayState::Running
                && record.pid == pid
            {
                let elapsed = gateway.started().elapsed();
                self.worker = record.worker_pid;
                return Ok(elapsed);
            }
            if let Some((_, status)) = gateway.exited()? {
                let log = self.read_output("gateway", "err");
                bail!("`herald run` exited ({status}) before it was running:\n{log}");
            }
            if Instant::now() >= deadline {
                let log = self.read_output("gateway", "err");
                bail!(
                    "the gateway (pid {pid}) did not report `running` in {} within {WAIT_LIMIT:?}:\n{log}",
                    state_path.display()
                );
            }
            std::thread::sleep(STATE_POLL);
        }
    }

    /// Runs `herald --home H ARGS` to completion (bounded by [`WAIT_LIMIT`]).
    pub fn run(&self, args: &[&str]) -> anyhow::Result<CommandRun> {
        let tag = "cli";
        let what = format!("`herald {}`", args.join(" "));
        let finished = run_bounded(&mut self.command(args, tag)?, WAIT_LIMIT, &what)?;
        Ok(CommandRun {
            finished,
            stdout: self.read_output(tag, "out"),
            stderr: self.read_output(tag, "err"),
        })
    }

    /// Sends SIGKILL to the supervised worker named by `run/state.json` and times the way back to serving:
    /// the state record naming a different worker as `running`, then a control-channel ping answered by
    /// that worker. The clock starts immediately before `kill(2)`.
    #[cfg(target_os = "linux")]
    pub fn kill_worker(&mut self) -> anyhow::Result<WorkerRestart> {
        self.signal_worker(libc::SIGKILL, "SIGKILL", WAIT_LIMIT)
    }

    /// [`Session::kill_worker`] with another signal (SIGSTOP: the monitor's watchdog must find the worker
    /// wedged) and its own limit on the way back.
    #[cfg(target_os = "linux")]
    pub fn signal_worker(
        &mut self,
        signal: libc::c_int,
        signal_name: &str,
        limit: Duration,
    ) -> anyhow::Result<WorkerRestart> {
        let state_path = Home::at(&self.root).state_record();
        let Some(gateway) = self.gateway.as_mut() else {
            bail!("no gateway whose worker to kill");
        };
        let monitor = gateway.pid();
        let record = read_record::<StateRecord>(&state_path)
            .present()
            .with_context(|| format!("no valid state record at {}", state_path.display()))?;
        anyhow::ensure!(
            record.state == GatewayState::Running && record.pid == monitor,
            "the state record does not show gateway {monitor} running: {record:?}"
        );
        let killed = record
            .worker_pid
            .context("the state record names no worker_pid (not supervised?)")?;
        anyhow::ensure!(
            crate::procfs::alive(killed)? == Some(true),
            "worker {killed} named by the state record is not alive"
        );
        let pid = libc::pid_t::try_from(killed).context("worker pid out of range")?;

        let killed_at = Instant::now();
        // SAFETY: kill(2) has no memory-safety preconditions. The target is the live worker the state record
        // names; it is the monitor's child, so its pid cannot be recycled before the monitor reaps it.
        let rc = unsafe { libc::kill(pid, signal) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot {signal_name} worker {killed}"));
        }
        let deadline = killed_at + limit;

        let (replacement, control, state_running) = loop {
            if let Some(record) = read_record::<StateRecord>(&state_path).present()
                && record.state == GatewayState::Running
                && record.pid == monitor
                && let Some(worker) = record.worker_pid
                && worker != killed
            {
                break (worker, record.endpoints.control, killed_at.elapsed());
            }
            if let Some((_, status)) = gateway.exited()? {
                bail!("`herald run` exited ({status}) after its worker {killed} was killed");
            }
            if Instant::now() >= deadline {
                bail!(
                    "no replacement for worker {killed} ({signal_name}) reported `running` in {} within {limit:?}",
                    state_path.display()
                );
            }
            std::thread::sleep(STATE_POLL);
        };

        let mut ping_attempts = 0;
        let serving = loop {
            ping_attempts += 1;
            let failure = match crate::control::ping(Path::new(&control), deadline) {
                Ok(reply) if reply["ok"] == true && reply["pid"] == replacement => {
                    break killed_at.elapsed();
                }
                Ok(reply) if reply["ok"] == true => {
                    bail!(
                        "a ping after the restart was answered by pid {}, not worker {replacement}",
                        reply["pid"]
                    )
                }
                Ok(reply) => format!("ping refused: {reply}"),
                Err(e) => format!("ping failed: {e}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "replacement worker {replacement} did not answer on {control} within {limit:?} of the \
                     {signal_name} ({ping_attempts} attempts; last: {failure})"
                );
            }
            std::thread::sleep(STATE_POLL);
        };
        self.worker = Some(replacement);
        Ok(WorkerRestart {
            killed,
            replacement,
            state_running,
            serving,
            ping_attempts,
        })
    }

    /// Kills the gateway (SIGKILL / TerminateProcess: no drain, no handover) and reaps it.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut gateway) = self.gateway.take() {
            gateway.kill().context("cannot kill the gateway")?;
        }
        Ok(())
    }

    /// `herald stop` on the running gateway, timing both the command and the gateway's exit.
    pub fn stop(&mut self) -> anyhow::Result<StopTimes> {
        let mut cmd = self.command(&["stop"], "stop")?;
        let Some(gateway) = self.gateway.as_mut() else {
            bail!("no gateway to stop");
        };

        let mut stop = Proc::spawn(&mut cmd).context("cannot start `herald stop`")?;
        let deadline = stop.started() + WAIT_LIMIT;
        let stop_exit = stop.wait_until(deadline)?;
        let gateway_exit = gateway.wait_until(deadline)?;
        let Some((stop_at, stop_status)) = stop_exit else {
            stop.kill()?;
            bail!("`herald stop` did not finish within {WAIT_LIMIT:?}");
        };
        let Some((gone_at, _)) = gateway_exit else {
            bail!(
                "`herald stop` returned ({stop_status}) but the gateway (pid {}) was still running {WAIT_LIMIT:?} later",
                gateway.pid()
            );
        };
        if !stop_status.success() {
            let out = self.read_output("stop", "out") + &self.read_output("stop", "err");
            bail!("`herald stop` failed ({stop_status}): {out}");
        }
        self.gateway = None;
        let worker_outlived = match self.worker {
            Some(worker) => crate::procfs::alive(worker)?,
            None => None,
        };
        Ok(StopTimes {
            command: stop_at.duration_since(stop.started()),
            gateway_gone: gone_at.duration_since(stop.started()),
            worker_outlived,
            report: self.read_output("stop", "out").trim().to_owned(),
        })
    }
}

impl Drop for Session {
    /// Stops a gateway still running (planned stop first, kill as the last resort); the temporary
    /// directory is removed afterwards when `dir` drops.
    fn drop(&mut self) {
        let Some(mut gateway) = self.gateway.take() else {
            return;
        };
        if matches!(gateway.exited(), Ok(Some(_))) {
            return;
        }
        if let Ok(mut cmd) = self.command(&["stop", "--timeout", "5"], "cleanup") {
            let _ = run_bounded(&mut cmd, WAIT_LIMIT, "`herald stop` (cleanup)");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        if !matches!(gateway.wait_until(deadline), Ok(Some(_))) {
            eprintln!(
                "herald-bench: the gateway (pid {}) did not stop; killing it",
                gateway.pid()
            );
            let _ = gateway.kill();
        }
    }
}
