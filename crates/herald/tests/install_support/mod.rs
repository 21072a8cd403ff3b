//! Test support for `herald install`: recording fakes of the service-manager commands, first on `PATH`,
//! and every OS location redirected into a temp dir, so no test touches the real user's units, agents
//! or Startup folder.
//!
//! A fake (`systemctl`, `loginctl`, `launchctl`, `schtasks`) appends `<tool> <args…>` to `calls.log` and
//! answers from `<tool>.rules`: lines `PATTERN|CODES|STDOUT`, where PATTERN is a shell glob over the
//! arguments, CODES a comma list of exit codes used one per matching call (the last one repeats) and
//! STDOUT printed as it is. No matching rule: exit 0, no output.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

#[cfg(unix)]
const FAKE: &str = r#"#!/bin/sh
tool=$(basename "$0")
printf '%s %s\n' "$tool" "$*" >> "$HERALD_FAKE_DIR/calls.log"
rules="$HERALD_FAKE_DIR/$tool.rules"
n=0
if [ -f "$rules" ]; then
  while IFS='|' read -r pat codes out; do
    n=$((n+1))
    case "$*" in
      $pat)
        counter="$HERALD_FAKE_DIR/$tool.$n.count"
        i=$(cat "$counter" 2>/dev/null || echo 0); i=$((i+1)); echo "$i" > "$counter"
        code=$(printf '%s' "$codes" | cut -d, -f"$i")
        [ -z "$code" ] && code=$(printf '%s' "$codes" | awk -F, '{print $NF}')
        [ -n "$out" ] && printf '%s\n' "$out"
        exit "$code"
        ;;
    esac
  done < "$rules"
fi
exit 0
"#;

pub struct Fakes {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub bin: PathBuf,
    pub units: PathBuf,
    pub system_units: PathBuf,
    pub run_systemd: PathBuf,
    pub agents: PathBuf,
    pub startup: PathBuf,
}

impl Fakes {
    /// Fakes for every tool, systemd "booted" (the run dir exists).
    pub fn new() -> Fakes {
        let dir = tempfile::Builder::new().prefix("herald-fakes").tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let fakes = Fakes {
            bin: root.join("bin"),
            units: root.join("config/systemd/user"),
            system_units: root.join("etc/systemd/system"),
            run_systemd: root.join("run/systemd/system"),
            agents: root.join("Library/LaunchAgents"),
            startup: root.join("Startup"),
            root,
            _dir: dir,
        };
        std::fs::create_dir_all(&fakes.bin).unwrap();
        std::fs::create_dir_all(&fakes.run_systemd).unwrap();
        #[cfg(unix)]
        for tool in ["systemctl", "loginctl", "launchctl"] {
            use std::os::unix::fs::PermissionsExt;
            let path = fakes.bin.join(tool);
            std::fs::write(&path, FAKE).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        fakes
    }

    /// Adds a rule for `tool` (see the module doc).
    pub fn rule(&self, tool: &str, pattern: &str, codes: &str, stdout: &str) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join(format!("{tool}.rules")))
            .unwrap();
        writeln!(file, "{pattern}|{codes}|{stdout}").unwrap();
    }

    /// An installed, enabled, active unit and a lingering user: what a second install sees.
    pub fn systemd_all_good(&self) {
        self.rule("systemctl", "*is-enabled *", "0", "enabled");
        self.rule("systemctl", "*is-active *", "0", "active");
        self.rule("loginctl", "show-user *", "0", "Linger=yes");
    }

    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.root.join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn clear_calls(&self) {
        let _ = std::fs::remove_file(self.root.join("calls.log"));
    }

    /// Points a `herald` command at the fakes and the redirected locations.
    pub fn env(&self, cmd: &mut Command) {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![self.bin.clone()];
        dirs.extend(std::env::split_paths(&path));
        cmd.env("PATH", std::env::join_paths(dirs).unwrap())
            .env("HERALD_FAKE_DIR", &self.root)
            .env("HERALD_SYSTEMD_USER_DIR", &self.units)
            .env("HERALD_SYSTEMD_SYSTEM_DIR", &self.system_units)
            .env("HERALD_SYSTEMD_RUN_DIR", &self.run_systemd)
            .env("HERALD_LAUNCH_AGENTS_DIR", &self.agents)
            .env("HERALD_STARTUP_DIR", &self.startup)
            .env("USER", "tester")
            .env_remove("SUDO_USER")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WSL_DISTRO_NAME")
            .env_remove("WSL_INTEROP");
    }

    pub fn unit(&self, name: &str) -> PathBuf {
        self.units.join(name)
    }
}

pub fn text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
