//! A real systemd for the tests of the systemd backend: the machine's own `/lib/systemd/systemd`, booted
//! by `ci/systemd/boot.sh` as PID 1 of a PID + mount namespace (with journald, logind, D-Bus and a user
//! manager for root), and shut down by `ci/systemd/halt.sh`. The script's guards keep it from touching the
//! machine: its `/tmp` (systemd-tmpfiles is masked, a canary checks), its enabled services and unit
//! folders (`/etc/systemd/system` and root's user unit folder are the test's own state), linger and the
//! journal.
//!
//! **Invariant:** every command that talks to this systemd, or to a gateway it runs, runs inside the
//! namespace ([`RealSystemd::command`]): PIDs, `/run` and the D-Bus sockets differ outside. Files (the
//! home, the binaries) and the network are shared, so the test reads records and speaks HTTP directly.
//! One such systemd runs at a time (a lock here, and `flock` in the script): without a cgroup namespace
//! two would share `/system.slice`.
//!
//! Without root, or where the script cannot boot, the test is skipped with a loud reason; with `CI=true`
//! that is a failure.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Which manager a command addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    /// The system manager (`systemctl`).
    System,
    /// root's user manager (`systemctl --user`).
    User,
}

pub struct RealSystemd {
    state_dir: tempfile::TempDir,
    pid: Option<u32>,
    _turn: MutexGuard<'static, ()>,
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ci/systemd")
}

fn skip(why: &str) -> Option<RealSystemd> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("a real systemd cannot be booted here ({why}) and CI=true makes that a failure");
    }
    eprintln!("\n!!!!! SKIPPED: a real systemd cannot be booted here: {why} !!!!!\n");
    None
}

impl RealSystemd {
    /// Boots one (waiting for any other to halt first); `None` when this machine cannot (skipped loudly).
    pub fn boot() -> Option<RealSystemd> {
        let turn = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return skip("the tests need root (a PID + mount namespace with systemd as its PID 1)");
        }
        let state_dir = tempfile::Builder::new()
            .prefix("herald-systemd")
            .tempdir()
            .unwrap();
        let mut systemd = RealSystemd {
            state_dir,
            pid: None,
            _turn: turn,
        };
        if let Err(why) = systemd.start(true) {
            return skip(&why);
        }
        Some(systemd)
    }

    fn start(&mut self, login: bool) -> Result<(), String> {
        let mut cmd = Command::new("bash");
        cmd.arg(scripts().join("boot.sh")).arg(self.state());
        if !login {
            cmd.env("HERALD_SD_NO_LOGIN", "1");
        }
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run ci/systemd/boot.sh: {e}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !stderr.trim().is_empty() {
            eprintln!("{}", stderr.trim_end());
        }
        let pid = String::from_utf8_lossy(&out.stdout).trim().parse::<u32>();
        match (out.status.success(), pid) {
            (true, Ok(pid)) => {
                self.pid = Some(pid);
                Ok(())
            }
            _ => Err(format!(
                "ci/systemd/boot.sh failed ({}): {}",
                out.status,
                stderr.trim()
            )),
        }
    }

    /// The state that survives a reboot: `/etc/systemd/system`, root's user units, linger.
    pub fn state(&self) -> &Path {
        self.state_dir.path()
    }

    /// root's user unit folder (`$XDG_CONFIG_HOME/systemd/user` inside).
    pub fn user_units(&self) -> PathBuf {
        self.state().join("config/systemd/user")
    }

    /// `/etc/systemd/system` as the namespace sees it.
    pub fn system_units(&self) -> PathBuf {
        self.state().join("etc-systemd-system")
    }

    pub fn units(&self, manager: Manager) -> PathBuf {
        match manager {
            Manager::System => self.system_units(),
            Manager::User => self.user_units(),
        }
    }

    fn pid(&self) -> u32 {
        self.pid.expect("systemd is booted")
    }

    /// `program args…` inside the namespace, as root logged in: the environment a terminal of root's
    /// would have (and nothing of the test's own).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.pid().to_string())
            .args(["-a", "env", "-i"])
            .arg("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .args([
                "HOME=/root",
                "USER=root",
                "LOGNAME=root",
                "LANG=C.UTF-8",
                "XDG_RUNTIME_DIR=/run/user/0",
                "DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/0/bus",
            ])
            .arg(format!(
                "XDG_CONFIG_HOME={}",
                self.state().join("config").display()
            ))
            .arg(program)
            .stdin(Stdio::null());
        cmd
    }

    /// The real `herald` on `home`, inside (not yet started).
    pub fn herald_command(&self, home: &Path, args: &[&str]) -> Command {
        let mut cmd = self.command(env!("CARGO_BIN_EXE_herald"));
        cmd.arg("--home").arg(home).args(args);
        cmd
    }

    /// The real `herald` on `home`, inside, run to its end.
    pub fn herald(&self, home: &Path, args: &[&str]) -> Output {
        self.herald_command(home, args).output().unwrap()
    }

    /// `systemctl [--user] args…`, inside.
    pub fn systemctl(&self, manager: Manager, args: &[&str]) -> Output {
        let mut cmd = self.command("systemctl");
        if manager == Manager::User {
            cmd.arg("--user");
        }
        cmd.args(args).output().unwrap()
    }

    /// One property of a unit (`systemctl show -p NAME --value`).
    pub fn property(&self, manager: Manager, unit: &str, name: &str) -> String {
        let out = self.systemctl(manager, &["show", "-p", name, "--value", unit]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The unit's main process (its PID inside the namespace), 0 when none.
    pub fn main_pid(&self, manager: Manager, unit: &str) -> u32 {
        self.property(manager, unit, "MainPID").parse().unwrap_or(0)
    }

    /// Waits until `ActiveState` is `state` (panics after `within`, naming what it saw).
    pub fn wait_state(&self, manager: Manager, unit: &str, state: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let now = self.property(manager, unit, "ActiveState");
            if now == state {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{unit} did not become {state} within {within:?}: it is {now}; {}",
                self.describe(manager, unit)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What systemd says of the unit, for assertion messages.
    pub fn describe(&self, manager: Manager, unit: &str) -> String {
        let show = self.systemctl(
            manager,
            &[
                "show",
                "-p",
                "ActiveState,SubState,Result,MainPID,NRestarts,ExecMainStatus",
                unit,
            ],
        );
        let mut journal = self.command("journalctl");
        journal.args(["--no-pager", "-n", "30", "-o", "short-precise"]);
        match manager {
            Manager::System => journal.args(["-u", unit]),
            Manager::User => journal.args(["--user-unit", unit]),
        };
        let journal = journal.output().unwrap();
        format!(
            "{}\n--- journal ---\n{}",
            String::from_utf8_lossy(&show.stdout).trim(),
            String::from_utf8_lossy(&journal.stdout).trim()
        )
    }

    /// Whether any `herald` process runs in the namespace.
    pub fn herald_processes(&self) -> String {
        let out = self
            .command("pgrep")
            .args(["-a", "-x", "herald"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A clean shutdown (`systemctl exit`: every unit stopped, then the namespace ends).
    pub fn halt(&mut self) {
        if let Some(pid) = self.pid.take() {
            let out = Command::new("bash")
                .arg(scripts().join("halt.sh"))
                .arg(pid.to_string())
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "halt.sh: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// A clean shutdown, then a fresh boot on the same state (unit folders, enablement, linger). With
    /// `login: false` nobody logs in: root's user manager runs only if root lingers.
    pub fn reboot(&mut self, login: bool) {
        self.halt();
        if let Err(why) = self.start(login) {
            panic!("the second boot failed: {why}");
        }
    }
}

impl Drop for RealSystemd {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = Command::new("bash")
                .arg(scripts().join("halt.sh"))
                .arg(pid.to_string())
                .stdin(Stdio::null())
                .output();
        }
    }
}
