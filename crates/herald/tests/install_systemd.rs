//! `herald install`/`uninstall` with systemd: the real binary against recording fakes of `systemctl` and
//! `loginctl` first on `PATH`, with the unit directory redirected (`HERALD_SYSTEMD_USER_DIR`, …), for
//! what a real systemd cannot show here: the exact command sequences (the contract), a user bus that
//! cannot be reached, a refused linger, sudo, and another home's unit. What the commands do to a real
//! systemd — install, drift repair, `--force`, uninstall, `start`/`stop`/`restart` — is proven against
//! one in `systemd_real.rs`.
#![cfg(target_os = "linux")]

mod install_support;
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use install_support::{Fakes, text};
use support::ok;

struct Case {
    _dir: tempfile::TempDir,
    home: PathBuf,
    fakes: Fakes,
}

impl Case {
    fn new() -> Case {
        Case::at("home")
    }

    /// A home at a hostile path under a temp dir.
    fn at(name: &str) -> Case {
        let dir = tempfile::Builder::new()
            .prefix("herald-install")
            .tempdir()
            .unwrap();
        let home = dir.path().join(name);
        std::fs::create_dir_all(&home).unwrap();
        Case {
            _dir: dir,
            home,
            fakes: Fakes::new(),
        }
    }

    fn cmd(&self, home: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
        cmd.arg("--home").arg(home).args(args);
        cmd.env_remove("HERALD_HOME")
            .env_remove("HERALD_LOG")
            .stdin(Stdio::null());
        self.fakes.env(&mut cmd);
        cmd
    }

    fn herald(&self, args: &[&str]) -> Output {
        self.cmd(&self.home, args).output().unwrap()
    }

    fn unit_path(&self) -> PathBuf {
        self.fakes.unit("herald.service")
    }
}

fn exe() -> String {
    env!("CARGO_BIN_EXE_herald").to_owned()
}

#[test]
fn install_writes_the_unit_and_runs_the_exact_sequence() {
    let case = Case::at("h 50% $x");
    let out = ok(&case.herald(&["install"]));
    assert!(out.contains("herald installed with systemd"), "{out}");
    assert_eq!(
        case.fakes.calls(),
        [
            "systemctl --user show-environment",
            "loginctl show-user tester -p Linger",
            "systemctl --user daemon-reload",
            "systemctl --user enable herald.service",
            "systemctl --user start herald.service",
            "loginctl enable-linger tester",
        ]
    );
    let unit = text(&case.unit_path());
    let facts = herald_install::systemd::parse_unit(&unit).unwrap();
    let invocation = facts.invocation().unwrap();
    assert_eq!(invocation.program, exe());
    assert_eq!(
        invocation.args,
        ["--home", case.home.to_str().unwrap(), "run", "--no-supervise"]
    );
    assert_eq!(invocation.herald_home.as_deref(), case.home.to_str());
    let mode = std::fs::metadata(case.unit_path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    verify_with_systemd_analyze(&case.unit_path());
}

/// The installed file passes the real `systemd-analyze --user verify` with no warning.
fn verify_with_systemd_analyze(unit: &Path) {
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("systemd-analyze is missing and CI=true: run ci/peers/install-service-tools.sh");
        }
        eprintln!("\n!!!!! SKIPPED: systemd-analyze is not installed !!!!!\n");
        return;
    };
    let runtime = tempfile::tempdir().unwrap();
    let out = Command::new(analyze)
        .args(["--user", "verify"])
        .arg(unit)
        .env("XDG_RUNTIME_DIR", runtime.path())
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && all.trim().is_empty(),
        "systemd-analyze: {all}"
    );
}

#[test]
fn a_second_install_changes_nothing() {
    let case = Case::new();
    case.fakes.systemd_all_good();
    ok(&case.herald(&["install"]));
    let before = std::fs::metadata(case.unit_path()).unwrap().modified().unwrap();
    case.fakes.clear_calls();
    let out = ok(&case.herald(&["install"]));
    assert!(out.contains("nothing to do"), "{out}");
    assert_eq!(
        case.fakes.calls(),
        [
            "systemctl --user show-environment",
            "systemctl --user is-enabled herald.service",
            "systemctl --user is-active herald.service",
            "loginctl show-user tester -p Linger",
        ],
        "only read-only probes"
    );
    assert_eq!(
        std::fs::metadata(case.unit_path()).unwrap().modified().unwrap(),
        before
    );
}

#[test]
fn dry_run_prints_everything_and_changes_nothing() {
    let case = Case::new();
    let out = ok(&case.herald(&["install", "--dry-run"]));
    for expected in [
        "write ",
        "ExecStart=",
        "run systemctl --user daemon-reload",
        "run systemctl --user enable herald.service",
        "run systemctl --user start herald.service",
        "sudo loginctl enable-linger tester",
        "dry run: nothing was changed",
        // The test binary is a cargo build output: a unit naming it would not survive `cargo clean`.
        "warning: ",
        "is a cargo build output",
        "cargo install --path crates/herald --locked",
    ] {
        assert!(out.contains(expected), "{expected} missing:\n{out}");
    }
    assert!(!case.unit_path().exists());
    assert!(
        case.fakes
            .calls()
            .iter()
            .all(|c| c.contains("show-environment") || c.contains("show-user")),
        "{:?}",
        case.fakes.calls()
    );

    ok(&case.herald(&["install"]));
    case.fakes.clear_calls();
    let out = ok(&case.herald(&["uninstall", "--dry-run"]));
    assert!(
        out.contains("run systemctl --user disable --now herald.service"),
        "{out}"
    );
    assert!(case.unit_path().exists());
}

#[test]
fn without_systemd_install_explains_what_to_do_instead() {
    let case = Case::new();
    std::fs::remove_dir(&case.fakes.run_systemd).unwrap();
    let out = case.herald(&["install"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("systemd is not running") && stderr.contains("herald install --backend none"),
        "{stderr}"
    );
    assert!(case.fakes.calls().is_empty());
    let out = case
        .cmd(&case.home, &["install"])
        .env("WSL_DISTRO_NAME", "Debian")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("/etc/wsl.conf"));
}

#[test]
fn an_unreachable_user_bus_falls_back_to_machine() {
    let case = Case::new();
    case.fakes.rule("systemctl", "--user show-environment", "1", "");
    ok(&case.herald(&["install"]));
    assert_eq!(
        case.fakes.calls(),
        [
            "systemctl --user show-environment",
            "systemctl --machine tester@ --user show-environment",
            "loginctl show-user tester -p Linger",
            "systemctl --machine tester@ --user daemon-reload",
            "systemctl --machine tester@ --user enable herald.service",
            "systemctl --machine tester@ --user start herald.service",
            "loginctl enable-linger tester",
        ]
    );
    case.fakes.rule("systemctl", "--machine *", "1", "");
    let out = case.herald(&["stop"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the user's systemd"));
}

#[test]
fn a_refused_linger_prints_the_exact_command() {
    let case = Case::new();
    case.fakes.rule("loginctl", "enable-linger *", "1", "");
    let out = ok(&case.herald(&["install"]));
    assert!(
        out.contains("run this yourself: sudo loginctl enable-linger tester"),
        "{out}"
    );
}

#[test]
fn a_unit_of_another_home_is_never_taken_over_silently() {
    let case = Case::new();
    ok(&case.herald(&["install", "--no-start-now"]));
    let other = case.home.with_file_name("other home");
    std::fs::create_dir_all(&other).unwrap();
    let out = case.cmd(&other, &["install"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another home"));
    // stop on the other home does not route through a unit that is not its own
    case.fakes.clear_calls();
    let out = case.cmd(&other, &["stop"]).output().unwrap();
    assert!(out.status.success());
    assert!(case.fakes.calls().is_empty(), "{:?}", case.fakes.calls());
    // a profile has its own unit name
    let out = case
        .cmd(&case.home, &["--profile", "work", "install", "--no-start-now"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(case.fakes.unit("herald-work.service").exists());
    ok(&case
        .cmd(&other, &["install", "--force", "--no-start-now"])
        .output()
        .unwrap());
    assert!(text(&case.unit_path()).contains("other home"));
}

#[test]
fn legacy_units_are_removed() {
    let case = Case::new();
    std::fs::create_dir_all(&case.fakes.units).unwrap();
    std::fs::write(
        case.fakes.unit("herald@.service"),
        "[Service]\nExecStart=/bin/true\n",
    )
    .unwrap();
    ok(&case.herald(&["install", "--no-start-now"]));
    assert!(!case.fakes.unit("herald@.service").exists());
    let calls = case.fakes.calls();
    assert!(
        calls.contains(&"systemctl --user disable --now herald@.service".to_owned()),
        "{calls:?}"
    );
}

#[test]
fn system_units_run_as_a_named_user_never_root_by_default() {
    // SAFETY of the assumption: the system scope needs root; these tests run as root in CI.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: --system needs root");
        return;
    }
    let case = Case::new();
    let out = case.herald(&["install", "--system"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to install a system unit"));

    let out = case
        .cmd(&case.home, &["install"])
        .env("SUDO_USER", "alice")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("this is sudo (for alice)"));

    case.fakes.clear_calls();
    let out = case
        .cmd(&case.home, &["install", "--system"])
        .env("SUDO_USER", "alice")
        .output()
        .unwrap();
    ok(&out);
    let unit = text(&case.fakes.system_units.join("herald.service"));
    assert!(unit.contains("\nUser=alice\n") && unit.contains("WantedBy=multi-user.target"));
    assert_eq!(
        case.fakes.calls(),
        [
            "systemctl daemon-reload",
            "systemctl enable herald.service",
            "systemctl start herald.service",
        ]
    );
    ok(&case.herald(&["install", "--system", "--run-as-user", "root", "--no-start-now"]));
    assert!(text(&case.fakes.system_units.join("herald.service")).contains("\nUser=root\n"));
    ok(&case.herald(&["uninstall", "--system"]));
    assert!(!case.fakes.system_units.join("herald.service").exists());
}

/// `status --deep` probe 9: what systemd says is checked against the lock — a unit the manager calls
/// active while no gateway holds the lock (a restart loop), and a gateway running outside the manager.
#[test]
fn status_deep_compares_the_service_manager_with_the_lock() {
    let case = Case::new();
    case.fakes.systemd_all_good();
    ok(&case.herald(&["install", "--no-start-now"]));
    let deep = |case: &Case| {
        let out = case.herald(&["status", "--deep", "--json"]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let p9 = json["probes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == 9)
            .cloned()
            .unwrap();
        (
            out.status.code(),
            p9,
            json["verdict"].as_str().unwrap().to_owned(),
        )
    };

    // The manager says active, nothing holds the lock.
    case.fakes
        .rule("systemctl", "*show herald.service*", "0", "ActiveState=active");
    let (code, p9, verdict) = deep(&case);
    assert_eq!(code, Some(3));
    assert_eq!(p9["ok"], false, "{p9}");
    assert!(
        p9["detail"].as_str().unwrap().contains("systemd (user): active"),
        "{p9}"
    );
    assert!(verdict.contains("says the service is active"), "{verdict}");
    assert!(
        case.fakes
            .calls()
            .iter()
            .any(|c| c.starts_with("systemctl --user show herald.service"))
    );
}

#[test]
fn status_deep_flags_a_gateway_running_outside_its_service_manager() {
    let case = Case::new();
    std::fs::write(
        case.home.join("herald.toml"),
        "[http]\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    case.fakes.systemd_all_good();
    ok(&case.herald(&["install", "--no-start-now"]));
    case.fakes
        .rule("systemctl", "*show herald.service*", "0", "ActiveState=inactive");
    let mut gateway = case
        .cmd(&case.home, &["run", "--no-supervise"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let state = case.home.join("run/state.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !std::fs::read_to_string(&state).is_ok_and(|s| s.contains("\"running\"")) {
        assert!(std::time::Instant::now() < deadline, "the gateway did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = case.herald(&["status", "--deep", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p9 = json["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == 9)
        .cloned()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{json}");
    assert_eq!(p9["ok"], false, "{p9}");
    assert!(
        json["verdict"]
            .as_str()
            .unwrap()
            .contains("service manager disagrees"),
        "{json}"
    );
    let _ = gateway.kill();
    let _ = gateway.wait();
}

/// A variable the config names must reach the gateway systemd starts: one set only in this shell is
/// named (with the fix), one systemd's manager environment or the secrets store has is not.
#[test]
fn install_names_a_variable_the_service_will_not_see() {
    let case = Case::new();
    std::fs::write(
        case.home.join("herald.toml"),
        "[agent]\nbackend = \"openai\"\n[agent.openai]\napi_key_env = \"HERALD_TEST_INSTALL_KEY\"\n",
    )
    .unwrap();
    let install = |case: &Case| {
        let out = case
            .cmd(&case.home, &["install", "--dry-run"])
            .env("HERALD_TEST_INSTALL_KEY", "sk-in-this-shell-only")
            .output()
            .unwrap();
        let shown = ok(&out);
        assert!(!shown.contains("sk-in-this-shell-only"), "{shown}");
        shown
    };
    let shown = install(&case);
    assert!(
        shown.contains("HERALD_TEST_INSTALL_KEY (agent.openai.api_key_env) is set in this shell only")
            && shown.contains("herald secret set HERALD_TEST_INSTALL_KEY"),
        "{shown}"
    );
    // systemd's own environment has it (`systemctl --user set-environment`, say): nothing to name.
    case.fakes.rule(
        "systemctl",
        "--user show-environment",
        "0",
        "HERALD_TEST_INSTALL_KEY=sk-systemd",
    );
    let shown = install(&case);
    assert!(!shown.contains("HERALD_TEST_INSTALL_KEY ("), "{shown}");
}

#[test]
fn install_is_content_with_a_variable_in_the_secrets_store() {
    let case = Case::new();
    std::fs::write(
        case.home.join("herald.toml"),
        "[agent]\nbackend = \"openai\"\n[agent.openai]\napi_key_env = \"HERALD_TEST_INSTALL_KEY\"\n",
    )
    .unwrap();
    let shown = ok(&case.herald(&["install", "--dry-run"]));
    assert!(
        shown.contains(
            "HERALD_TEST_INSTALL_KEY (agent.openai.api_key_env) is neither set nor in the secrets store"
        ),
        "{shown}"
    );
    let mut set = case.cmd(&case.home, &["secret", "set", "HERALD_TEST_INSTALL_KEY"]);
    set.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = set.spawn().unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"sk-stored").unwrap();
    }
    ok(&child.wait_with_output().unwrap());
    let shown = ok(&case.herald(&["install", "--dry-run"]));
    assert!(!shown.contains("HERALD_TEST_INSTALL_KEY ("), "{shown}");
}

#[test]
fn dry_run_without_systemd_shows_the_unit_and_that_nothing_could_register_it() {
    let case = Case::new();
    std::fs::remove_dir(&case.fakes.run_systemd).unwrap();
    let out = ok(&case.herald(&["install", "--dry-run"]));
    assert!(out.contains("nothing could register this unit"), "{out}");
    assert!(out.contains("systemd is not running"), "{out}");
    assert!(
        out.contains(&format!("write {}", case.unit_path().display())) && out.contains("ExecStart="),
        "the unit it would write: {out}"
    );
    assert!(out.contains("dry run: nothing was changed"), "{out}");
    assert!(!case.unit_path().exists());
    assert!(case.fakes.calls().is_empty(), "{:?}", case.fakes.calls());
    // A real install still refuses.
    assert_eq!(case.herald(&["install"]).status.code(), Some(1));
}

#[test]
fn dry_run_without_systemctl_or_with_a_failing_user_bus_still_shows_the_unit() {
    let case = Case::new();
    // No systemctl anywhere on PATH (the fakes' directory without its systemctl, and nothing else).
    std::fs::remove_file(case.fakes.bin.join("systemctl")).unwrap();
    let out = case
        .cmd(&case.home, &["install", "--dry-run"])
        .env("PATH", &case.fakes.bin)
        .output()
        .unwrap();
    let all = ok(&out);
    assert!(all.contains("nothing could register this unit"), "{all}");
    assert!(all.contains("cannot reach the user's systemd"), "{all}");
    assert!(all.contains("ExecStart="), "{all}");
    assert!(!case.unit_path().exists());

    // A systemctl that cannot connect (a container with systemd installed but not running as PID 1 for
    // this user): the same.
    let case = Case::new();
    case.fakes.rule(
        "systemctl",
        "*show-environment*",
        "1",
        "Failed to connect to bus: No medium found",
    );
    let all = ok(&case.herald(&["install", "--dry-run"]));
    assert!(all.contains("nothing could register this unit"), "{all}");
    assert!(all.contains("ExecStart="), "{all}");
    assert_eq!(
        case.fakes.calls(),
        [
            "systemctl --user show-environment",
            "systemctl --machine tester@ --user show-environment",
        ],
        "only the read-only probes ran"
    );
    assert_eq!(
        case.herald(&["install"]).status.code(),
        Some(1),
        "a real install refuses"
    );
}

#[test]
fn windows_only_backends_say_so_on_linux() {
    let case = Case::new();
    for backend in ["task", "startup", "windows-service"] {
        for extra in [&["--dry-run"][..], &[][..]] {
            let mut args = vec!["install", "--backend", backend];
            args.extend_from_slice(extra);
            let out = case.herald(&args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{stderr}");
            assert!(
                stderr.contains(&format!("--backend {backend} is Windows only (this is Linux)")),
                "{stderr}"
            );
        }
    }
    assert!(case.fakes.calls().is_empty());
}

#[test]
fn uninstall_dry_run_with_nothing_installed_says_so() {
    let case = Case::new();
    let out = ok(&case.herald(&["uninstall", "--dry-run"]));
    assert!(out.contains("herald is not installed for"), "{out}");
    assert!(!out.contains("up to date"), "{out}");
    assert!(case.fakes.calls().is_empty());
}

#[test]
fn uninstall_after_backend_none_stops_the_gateway() {
    let case = Case::new();
    std::fs::write(
        case.home.join("herald.toml"),
        "[http]\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let out = ok(&case.herald(&["install", "--backend", "none"]));
    assert!(out.contains("herald started"), "{out}");
    let status = |case: &Case| case.herald(&["status"]).status.code();
    assert_eq!(status(&case), Some(0));
    let pid = herald_home::atomic::read_record::<herald_home::records::PidRecord>(
        &herald_home::Home::at(&case.home).pid_record(),
    )
    .present()
    .unwrap()
    .pid;

    let out = ok(&case.herald(&["uninstall", "--dry-run"]));
    assert!(
        out.contains(&format!("would stop the gateway (pid {pid})")) && out.contains("dry run"),
        "{out}"
    );
    assert_eq!(status(&case), Some(0), "a dry run stops nothing");

    let out = ok(&case.herald(&["uninstall"]));
    assert!(out.contains(&format!("stopped pid {pid}")), "{out}");
    assert_eq!(status(&case), Some(3), "uninstall leaves nothing running");
    assert!(
        case.fakes.calls().is_empty(),
        "nothing was registered: {:?}",
        case.fakes.calls()
    );
}

#[test]
fn run_as_user_who_cannot_read_the_home_is_warned_about() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: --system needs root (and a home root owns)");
        return;
    }
    let case = Case::new();
    std::fs::set_permissions(&case.home, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = case.herald(&["install", "--system", "--run-as-user", "nobody", "--dry-run"]);
    let all = ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: the gateway would run as nobody")
            && stderr.contains(&format!("who cannot read its home {}", case.home.display()))
            && stderr.contains("owner uid 0, mode 0700"),
        "{stderr}"
    );
    assert!(
        all.contains("User=nobody"),
        "the dry run still shows the unit: {all}"
    );
    assert!(!case.fakes.system_units.join("herald.service").exists());

    // Its owner is fine; an account that does not exist is named.
    let out = case.herald(&["install", "--system", "--run-as-user", "root", "--dry-run"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning: the gateway would run as"));
    let out = case.herald(&[
        "install",
        "--system",
        "--run-as-user",
        "no-such-herald-user",
        "--dry-run",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("there is no account named no-such-herald-user"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
