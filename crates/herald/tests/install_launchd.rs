//! `herald install --backend launchd` and the routing of `start`/`stop`/`restart` through launchd, on
//! Linux: the planning is pure and the only OS contact is `launchctl`, replaced here by a recording fake
//! that scripts the exit codes the field notes describe (5 while the old job exits, 37 already in
//! progress, 125 no GUI session). The LaunchAgents directory is redirected (`HERALD_LAUNCH_AGENTS_DIR`).
#![cfg(target_os = "linux")]

mod install_support;
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use install_support::Fakes;
use support::ok;

struct Case {
    _dir: tempfile::TempDir,
    home: PathBuf,
    fakes: Fakes,
    uid: u32,
}

impl Case {
    fn new() -> Case {
        let dir = tempfile::Builder::new()
            .prefix("herald-launchd")
            .tempdir()
            .unwrap();
        let home = dir.path().join("Her ald & 50%");
        std::fs::create_dir_all(&home).unwrap();
        Case {
            _dir: dir,
            home,
            fakes: Fakes::new(),
            // SAFETY: getuid has no preconditions.
            uid: unsafe { libc::getuid() },
        }
    }

    fn herald(&self, args: &[&str]) -> Output {
        self.herald_at(&self.home, args)
    }

    fn herald_at(&self, home: &Path, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
        cmd.arg("--home").arg(home).args(args);
        cmd.env_remove("HERALD_HOME").stdin(Stdio::null());
        self.fakes.env(&mut cmd);
        // Only launchd is under test: systemd is absent, so nothing routes through it.
        cmd.env("HERALD_SYSTEMD_RUN_DIR", self.fakes.root.join("no-systemd"));
        cmd.output().unwrap()
    }

    fn plist(&self) -> PathBuf {
        self.fakes.agents.join("dev.herald.gateway.plist")
    }

    fn target(&self) -> String {
        format!("gui/{}/dev.herald.gateway", self.uid)
    }

    fn bootstrap(&self) -> String {
        format!("launchctl bootstrap gui/{} {}", self.uid, self.plist().display())
    }

    fn enable(&self) -> String {
        format!("launchctl enable {}", self.target())
    }
}

#[test]
fn install_writes_the_agent_and_enables_before_bootstrap() {
    let case = Case::new();
    let out = ok(&case.herald(&["install", "--backend", "launchd"]));
    assert!(out.contains("herald installed with launchd"), "{out}");
    assert_eq!(case.fakes.calls(), [case.enable(), case.bootstrap()]);
    let bytes = std::fs::read(case.plist()).unwrap();
    let facts = herald_install::launchd::parse_plist(&bytes).unwrap();
    assert_eq!(facts.label.as_deref(), Some("dev.herald.gateway"));
    assert_eq!(
        facts.program_arguments[1..],
        [
            "--home",
            case.home.to_str().unwrap(),
            "run",
            "--no-supervise",
            "--launchd"
        ]
    );
    assert_eq!(facts.herald_home.as_deref(), case.home.to_str());
    let mode = std::fs::metadata(case.plist()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);

    // Installed and loaded: a second install only looks.
    case.fakes.rule("launchctl", "print *", "0", "");
    case.fakes.clear_calls();
    let out = ok(&case.herald(&["install", "--backend", "launchd"]));
    assert!(out.contains("nothing to do"), "{out}");
    assert_eq!(case.fakes.calls(), [format!("launchctl print {}", case.target())]);

    // Drift: the loaded job is booted out, the file repaired, and the job bootstrapped again.
    std::fs::write(
        case.plist(),
        String::from_utf8(bytes.clone())
            .unwrap()
            .replace("<integer>45</integer>", "<integer>1</integer>"),
    )
    .unwrap();
    case.fakes.clear_calls();
    ok(&case.herald(&["install", "--backend", "launchd"]));
    assert_eq!(
        case.fakes.calls(),
        [
            format!("launchctl print {}", case.target()),
            format!("launchctl bootout {}", case.target()),
            case.enable(),
            case.bootstrap(),
        ]
    );
    assert_eq!(std::fs::read(case.plist()).unwrap(), bytes);
}

#[test]
fn bootstrap_5_is_retried_until_it_succeeds() {
    let case = Case::new();
    case.fakes.rule("launchctl", "bootstrap *", "5,5,0", "");
    ok(&case.herald(&["install", "--backend", "launchd"]));
    let calls = case.fakes.calls();
    assert_eq!(
        calls.iter().filter(|c| **c == case.bootstrap()).count(),
        3,
        "{calls:?}"
    );
    assert_eq!(calls[0], case.enable());
}

#[test]
fn bootstrap_37_is_success_only_when_print_shows_the_job() {
    let case = Case::new();
    case.fakes.rule("launchctl", "bootstrap *", "37", "");
    case.fakes.rule("launchctl", "print *", "0", "");
    ok(&case.herald(&["install", "--backend", "launchd", "--force"]));
    assert_eq!(
        case.fakes.calls().last().unwrap(),
        &format!("launchctl print {}", case.target())
    );

    let case = Case::new();
    case.fakes.rule("launchctl", "bootstrap *", "37", "");
    case.fakes.rule("launchctl", "print *", "113", "");
    let out = case.herald(&["install", "--backend", "launchd"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exit code 37"));
}

#[test]
fn bootstrap_125_explains_that_a_gui_session_is_needed() {
    let case = Case::new();
    case.fakes.rule("launchctl", "bootstrap *", "125", "");
    let out = case.herald(&["install", "--backend", "launchd"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no GUI session") && stderr.contains("Log in"),
        "{stderr}"
    );
}

#[test]
fn stop_is_bootout_restart_is_bootout_then_bootstrap_uninstall_removes() {
    let case = Case::new();
    ok(&case.herald(&["install", "--backend", "launchd", "--no-start-now"]));
    assert!(case.fakes.calls().is_empty(), "--no-start-now bootstraps nothing");
    case.fakes.clear_calls();
    let out = ok(&case.herald(&["stop"]));
    assert!(out.contains("via launchd"), "{out}");
    assert_eq!(
        case.fakes.calls(),
        [format!("launchctl bootout {}", case.target())]
    );
    case.fakes.clear_calls();
    ok(&case.herald(&["restart"]));
    assert_eq!(
        case.fakes.calls(),
        [
            format!("launchctl bootout {}", case.target()),
            case.enable(),
            case.bootstrap(),
        ]
    );
    case.fakes.clear_calls();
    ok(&case.herald(&["start"]));
    assert_eq!(case.fakes.calls(), [case.enable(), case.bootstrap()]);

    // bootout of a job that is not loaded (113) is fine for uninstall
    case.fakes.rule("launchctl", "bootout *", "113", "");
    case.fakes.clear_calls();
    ok(&case.herald(&["uninstall"]));
    assert_eq!(
        case.fakes.calls(),
        [format!("launchctl bootout {}", case.target())]
    );
    assert!(!case.plist().exists());
}

#[test]
fn legacy_labels_are_booted_out_and_removed() {
    let case = Case::new();
    std::fs::create_dir_all(&case.fakes.agents).unwrap();
    let legacy = case.fakes.agents.join("dev.herald.herald.plist");
    std::fs::write(&legacy, "<plist/>").unwrap();
    ok(&case.herald(&["install", "--backend", "launchd"]));
    assert!(!legacy.exists());
    assert_eq!(
        case.fakes.calls()[0],
        format!("launchctl bootout gui/{}/dev.herald.herald", case.uid)
    );
}

#[test]
fn launchd_refuses_what_it_cannot_do() {
    let case = Case::new();
    let out = case.herald(&["install", "--backend", "launchd", "--no-start-on-login"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--backend none"));
    let out = case.herald(&["install", "--backend", "launchd", "--dry-run"]);
    let text = ok(&out);
    assert!(
        text.contains("<key>KeepAlive</key>") && text.contains("run launchctl enable"),
        "{text}"
    );
    assert!(!case.plist().exists());
}
