//! One Windows install test's world under Wine: a profile home under a root with a hostile name, a
//! redirected Startup folder (`HERALD_STARTUP_DIR`) and `Run` key (`HERALD_RUN_KEY`, a key of its own
//! under `HKCU\Software\HeraldTests`, so not even the prefix's real `Run` key is touched), a `bin`
//! folder first on `PATH` for substituted tools, and the real `herald` binary run against it. Each test
//! uses its own profile, so the task and service names (`Herald_Gateway_<profile>`) never collide in the
//! shared Wine prefix.
//!
//! **Invariant:** one case at a time per test binary: the tests share Wine's Task Scheduler and Service
//! Control Manager, and Wine's `schtasks` can hang when several run at once in one prefix.

#![allow(dead_code)]

use herald_home::sync::MutexExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};

use herald_home::atomic::read_record;
use herald_home::records::{GatewayState, StateRecord};
use herald_home::{Home, ProfileName};

static SERIAL: Mutex<()> = Mutex::new(());

pub struct WineCase {
    _serial: MutexGuard<'static, ()>,
    /// The temp dir holding everything below; removed with the case.
    pub dir: tempfile::TempDir,
    /// The home root; the gateway's home is `<root>/profiles/<profile>`.
    pub root: PathBuf,
    pub profile: String,
    pub startup: PathBuf,
    /// The subkey of `HKEY_CURRENT_USER` standing in for the `Run` key.
    pub run_key: String,
    /// First on `PATH` for every command the case runs.
    pub bin: PathBuf,
    pub herald: PathBuf,
    /// Run when the case is dropped, before its temp dir goes (also when a test fails): it removes what
    /// the test may have left registered or running.
    on_drop: fn(&WineCase),
}

impl Drop for WineCase {
    fn drop(&mut self) {
        (self.on_drop)(self);
    }
}

impl WineCase {
    /// A case whose home root is `<temp>/<root_name>` and whose profile's `herald.toml` is `config`;
    /// `on_drop` cleans up after it.
    pub fn new(
        prefix: &str,
        profile: &str,
        root_name: &str,
        config: &str,
        on_drop: fn(&WineCase),
    ) -> WineCase {
        let serial = SERIAL.lock_unpoisoned();
        let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        let root = dir.path().join(root_name);
        let home = root.join("profiles").join(profile);
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join("herald.toml"), config).unwrap();
        let startup = dir.path().join("Startup");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&startup).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        let run_key = format!(
            r"Software\HeraldTests\{}\Run",
            dir.path().file_name().unwrap().to_str().unwrap()
        );
        WineCase {
            _serial: serial,
            run_key,
            root,
            profile: profile.to_owned(),
            startup,
            bin,
            herald: PathBuf::from(env!("CARGO_BIN_EXE_herald")),
            on_drop,
            dir,
        }
    }

    pub fn home(&self) -> Home {
        Home::resolve(herald_home::paths::HomeRequest {
            flag: Some(self.root.clone()),
            profile: Some(ProfileName::new(&self.profile).unwrap()),
            ..Default::default()
        })
        .unwrap()
    }

    /// The task and service name of this profile.
    pub fn name(&self) -> String {
        format!("Herald_Gateway_{}", self.profile)
    }

    /// This profile's `.cmd` launcher in the redirected Startup folder: the form the Startup fallback
    /// had before it became a `Run` value (drift now).
    pub fn legacy_launcher(&self) -> PathBuf {
        self.startup.join(format!("{}.cmd", self.name()))
    }

    /// This profile's `Run` value (the Startup fallback), if set.
    pub fn run_value(&self) -> Option<String> {
        use herald_install::startup::{RunKey, SystemRunKey};
        SystemRunKey.read(&self.run_key, &self.name()).unwrap()
    }

    /// `exe --home <root> --profile <profile> <args>`, with the Startup folder redirected and `bin` first
    /// on `PATH`.
    pub fn command(&self, exe: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(exe);
        cmd.arg("--home")
            .arg(&self.root)
            .arg("--profile")
            .arg(&self.profile)
            .args(args)
            .env_remove("HERALD_HOME")
            .env("HERALD_STARTUP_DIR", &self.startup)
            .env("HERALD_RUN_KEY", &self.run_key)
            .stdin(Stdio::null());
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![self.bin.clone()];
        dirs.extend(std::env::split_paths(&path));
        cmd.env("PATH", std::env::join_paths(dirs).unwrap());
        cmd
    }

    pub fn herald(&self, args: &[&str]) -> Output {
        self.command(&self.herald, args).output().unwrap()
    }

    /// The state record says running.
    pub fn running(&self) -> bool {
        matches!(
            read_record::<StateRecord>(&self.home().state_record()).present(),
            Some(s) if s.state == GatewayState::Running
        )
    }
}
