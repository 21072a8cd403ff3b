//! The systemd backend against a real systemd (see `real_systemd`): `herald install` in user and system
//! scope, readiness, the watchdog, the exit-code contract (0 stays stopped, 1 and 75 restart, 78 never),
//! crashes without a lost turn, `start`/`stop`/`restart` through systemctl, a reboot, drift, `uninstall`,
//! the system unit's sandbox, and `herald logs` reading journald.
#![cfg(target_os = "linux")]

mod real_systemd;
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use herald_home::atomic::write_record;
use herald_home::records::{GatewayState, StopMarker};
use real_systemd::{Manager, RealSystemd};
use support::{TestHome, text, try_http};

const UNIT: &str = "herald.service";
const PATIENT: Duration = Duration::from_secs(30);

fn ok_inside(out: std::process::Output, what: &str) -> String {
    let all = text(&out);
    assert!(out.status.success(), "{what} failed ({}): {all}", out.status);
    all
}

/// A home with the echo agent, installed with systemd in `manager`'s scope and running.
fn installed(systemd: &RealSystemd, home: &TestHome, manager: Manager) -> String {
    let mut args = vec!["install"];
    if manager == Manager::System {
        args.extend(["--system", "--run-as-user", "root"]);
    }
    let out = ok_inside(systemd.herald(&home.root, &args), "herald install");
    assert!(out.contains("herald installed with systemd"), "{out}");
    out
}

/// One chat turn answered by the gateway serving now (a single attempt: no retry hides a gateway that is
/// not ready yet).
fn answers_a_turn(home: &TestHome, session: &str, id: &str) {
    let state = home.state().expect("a state record");
    assert_eq!(state.state, GatewayState::Running, "{state:?}");
    let url = state.endpoints.http_url.expect("an HTTP url");
    let response = try_http(
        &url,
        "POST",
        &format!("/v1/sessions/{session}/messages"),
        &[("Content-Type", "application/json")],
        serde_json::json!({"text": format!("hello {id}"), "id": id})
            .to_string()
            .as_bytes(),
    )
    .unwrap_or_else(|e| panic!("the gateway systemd calls active does not serve: {e}"));
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.json()["reply"]["text"], format!("echo: hello {id}"));
}

/// Waits for a main process other than `old` that serves (a restart by systemd).
fn wait_new_main(systemd: &RealSystemd, home: &TestHome, manager: Manager, old: u32) -> u32 {
    let deadline = Instant::now() + PATIENT;
    loop {
        let pid = systemd.main_pid(manager, UNIT);
        let active = systemd.property(manager, UNIT, "ActiveState") == "active";
        let running = home
            .state()
            .is_some_and(|s| s.state == GatewayState::Running && s.pid == pid);
        if pid != 0 && pid != old && active && running {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "no new main process after {old}: {}",
            systemd.describe(manager, UNIT)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The unit stays in `state` for `hold` (systemd does not restart it).
fn stays(systemd: &RealSystemd, manager: Manager, state: &str, hold: Duration) {
    let until = Instant::now() + hold;
    while Instant::now() < until {
        assert_eq!(
            systemd.property(manager, UNIT, "ActiveState"),
            state,
            "{}",
            systemd.describe(manager, UNIT)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A stop marker asking the gateway (by its pid record) to drain and exit 75, as a supervisor does.
fn ask_for_exit_75(home: &TestHome) {
    let record = home.pid_record().present().expect("a pid record");
    let marker = StopMarker {
        version: 1,
        target: record.key(),
        expires_at_ms: u64::MAX,
        requested_by: "the systemd test".into(),
        restart: true,
    };
    write_record(&home.home().stop_marker(), &marker).unwrap();
}

fn restarts(systemd: &RealSystemd, manager: Manager) -> u32 {
    systemd.property(manager, UNIT, "NRestarts").parse().unwrap()
}

fn drop_in(systemd: &RealSystemd, manager: Manager, name: &str, body: &str) {
    let dir = systemd.units(manager).join(format!("{UNIT}.d"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), body).unwrap();
    ok_inside(systemd.systemctl(manager, &["daemon-reload"]), "daemon-reload");
}

#[test]
fn a_user_unit_is_active_only_once_the_gateway_serves_and_the_watchdog_restarts_a_frozen_one() {
    let Some(systemd) = RealSystemd::boot() else {
        return;
    };
    let home = TestHome::new();
    installed(&systemd, &home, Manager::User);
    // `systemctl start` (run by install) returns once the gateway sent READY=1: it serves right away.
    assert_eq!(systemd.property(Manager::User, UNIT, "ActiveState"), "active");
    assert_eq!(systemd.property(Manager::User, UNIT, "Type"), "notify");
    answers_a_turn(&home, "ready", "r1");
    let status = ok_inside(systemd.herald(&home.root, &["status"]), "herald status");
    assert!(status.contains("running"), "{status}");

    // The watchdog: pings keep a live gateway running well past WatchdogSec; a frozen one is killed and
    // restarted by systemd.
    drop_in(
        &systemd,
        Manager::User,
        "watchdog.conf",
        "[Service]\nWatchdogSec=2\n",
    );
    ok_inside(systemd.systemctl(Manager::User, &["restart", UNIT]), "restart");
    let pid = systemd.main_pid(Manager::User, UNIT);
    let before = restarts(&systemd, Manager::User);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        systemd.main_pid(Manager::User, UNIT),
        pid,
        "{}",
        systemd.describe(Manager::User, UNIT)
    );
    assert_eq!(restarts(&systemd, Manager::User), before);
    ok_inside(
        systemd.systemctl(
            Manager::User,
            &["kill", "--kill-whom=main", "--signal=SIGSTOP", UNIT],
        ),
        "SIGSTOP",
    );
    let new = wait_new_main(&systemd, &home, Manager::User, pid);
    assert_ne!(new, pid);
    assert_eq!(restarts(&systemd, Manager::User), before + 1);
    let journal = systemd.describe(Manager::User, UNIT);
    assert!(journal.contains("Watchdog timeout"), "{journal}");
    answers_a_turn(&home, "ready", "r2");
}

#[test]
fn kill_9_is_restarted_by_systemd_and_no_acknowledged_turn_is_lost() {
    let Some(systemd) = RealSystemd::boot() else {
        return;
    };
    let home = TestHome::new();
    installed(&systemd, &home, Manager::User);
    for i in 0..5 {
        answers_a_turn(&home, "kept", &format!("k{i}"));
    }
    let pid = systemd.main_pid(Manager::User, UNIT);
    ok_inside(
        systemd.systemctl(
            Manager::User,
            &["kill", "--kill-whom=main", "--signal=SIGKILL", UNIT],
        ),
        "SIGKILL",
    );
    wait_new_main(&systemd, &home, Manager::User, pid);
    let url = home.state().unwrap().endpoints.http_url.unwrap();
    let history = support::http(&url, "GET", "/v1/sessions/kept/messages", &[], b"").json();
    let texts: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..5)
        .flat_map(|i| [format!("hello k{i}"), format!("echo: hello k{i}")])
        .collect();
    assert_eq!(texts, expected);
}

#[test]
fn the_exit_code_contract_under_systemd_0_stays_stopped_75_restarts_78_stays_failed() {
    let Some(systemd) = RealSystemd::boot() else {
        return;
    };
    let home = TestHome::new();
    installed(&systemd, &home, Manager::User);
    let m = Manager::User;

    // 75, a requested restart: restarted at once, and not counted as a failure.
    let pid = systemd.main_pid(m, UNIT);
    ask_for_exit_75(&home);
    wait_new_main(&systemd, &home, m, pid);
    assert_eq!(systemd.property(m, UNIT, "Result"), "success");

    // 1, a failure: restarted. A gateway started outside systemd holds the home's lock, so the unit's
    // gateway exits 1 ("already running") until that one is gone; then the restart succeeds.
    ok_inside(systemd.herald(&home.root, &["stop"]), "herald stop");
    let mut outside = systemd.command(env!("CARGO_BIN_EXE_herald"));
    outside
        .arg("--home")
        .arg(&home.root)
        .args(["run", "--no-supervise"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut outside = outside.spawn().unwrap();
    support::wait_for("the gateway outside systemd to run", || {
        home.state().is_some_and(|s| s.state == GatewayState::Running)
    });
    let outside_pid = home.pid_record().present().unwrap().pid;
    // The starts so far count towards StartLimitBurst; this part needs a few more.
    ok_inside(systemd.systemctl(m, &["reset-failed", UNIT]), "reset-failed");
    let before = restarts(&systemd, m);
    ok_inside(
        systemd.systemctl(m, &["start", "--no-block", UNIT]),
        "start --no-block",
    );
    support::wait_for("systemd to restart the gateway that exited 1", || {
        restarts(&systemd, m) > before
    });
    ok_inside(
        systemd
            .command("kill")
            .args(["-TERM", &outside_pid.to_string()])
            .output()
            .unwrap(),
        "kill the outside gateway",
    );
    outside.wait().unwrap();
    wait_new_main(&systemd, &home, m, outside_pid);
    let journal = systemd.describe(m, UNIT);
    assert!(journal.contains("status=1/FAILURE"), "{journal}");

    // 0: a plain SIGTERM (not through systemctl) drains the gateway, which exits 0 and stays stopped.
    ok_inside(
        systemd.systemctl(m, &["kill", "--kill-whom=main", "--signal=SIGTERM", UNIT]),
        "SIGTERM",
    );
    systemd.wait_state(m, UNIT, "inactive", PATIENT);
    assert_eq!(systemd.property(m, UNIT, "ExecMainStatus"), "0");
    stays(&systemd, m, "inactive", Duration::from_secs(4));

    // 78: a config broken after install; the gateway refuses to start and systemd leaves it failed.
    home.write("herald.toml", b"[http]\nlisten = \"not an address\"\n");
    let out = systemd.herald(&home.root, &["start"]);
    assert!(!out.status.success(), "{}", text(&out));
    systemd.wait_state(m, UNIT, "failed", PATIENT);
    assert_eq!(systemd.property(m, UNIT, "ExecMainStatus"), "78");
    let failed_restarts = restarts(&systemd, m);
    stays(&systemd, m, "failed", Duration::from_secs(5));
    assert_eq!(restarts(&systemd, m), failed_restarts);
    let status = systemd.herald(&home.root, &["status"]);
    let said = text(&status);
    assert!(
        said.contains("code 78") && said.contains("not an address"),
        "{said}"
    );
}

#[test]
fn start_stop_and_restart_go_through_systemctl() {
    let Some(systemd) = RealSystemd::boot() else {
        return;
    };
    let home = TestHome::new();
    installed(&systemd, &home, Manager::User);
    let m = Manager::User;

    let out = ok_inside(systemd.herald(&home.root, &["stop"]), "herald stop");
    assert!(out.contains("systemd"), "{out}");
    assert_eq!(systemd.property(m, UNIT, "ActiveState"), "inactive");
    assert_eq!(home.state().unwrap().state, GatewayState::Stopped);
    // Drained (a planned stop), and systemd does not bring it back.
    assert!(
        home.event_names().iter().any(|e| e == "drain_end"),
        "{:?}",
        home.event_names()
    );
    stays(&systemd, m, "inactive", Duration::from_secs(4));

    ok_inside(systemd.herald(&home.root, &["start"]), "herald start");
    assert_eq!(systemd.property(m, UNIT, "ActiveState"), "active");
    answers_a_turn(&home, "s", "s1");

    let pid = systemd.main_pid(m, UNIT);
    ok_inside(systemd.herald(&home.root, &["restart"]), "herald restart");
    let new = wait_new_main(&systemd, &home, m, pid);
    assert_ne!(new, pid);
    answers_a_turn(&home, "s", "s2");
}

#[test]
fn after_a_reboot_an_enabled_system_unit_comes_back() {
    let Some(mut systemd) = RealSystemd::boot() else {
        return;
    };
    let home = TestHome::new();
    installed(&systemd, &home, Manager::System);
    systemd.reboot(false);
    systemd.wait_state(Manager::System, UNIT, "active", PATIENT);
    wait_new_main(&systemd, &home, Manager::System, 0);
    answers_a_turn(&home, "boot", "b1");
}

#[test]
fn after_a_reboot_a_user_unit_comes_back_with_linger_and_nobody_logged_in() {
    let Some(mut systemd) = RealSystemd::boot() else {
        return;
    };
    let home = TestHome::new();
    installed(&systemd, &home, Manager::User);
    let linger = systemd
        .command("loginctl")
        .args(["show-user", "root", "-p", "Linger"])
        .output()
        .unwrap();
    assert_eq!(text(&linger).trim(), "Linger=yes");
    systemd.reboot(false);
    // Nobody logged in: logind starts root's user manager because root lingers, and it starts the unit.
    systemd.wait_state(Manager::User, UNIT, "active", PATIENT);
    wait_new_main(&systemd, &home, Manager::User, 0);
    answers_a_turn(&home, "boot", "b1");
}

#[test]
fn a_hand_edited_unit_is_repaired_and_uninstall_leaves_nothing_behind() {
    let Some(systemd) = RealSystemd::boot() else {
        return;
    };
    let home = TestHome::new();
    installed(&systemd, &home, Manager::User);
    let m = Manager::User;
    let path = systemd.user_units().join(UNIT);
    let written = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, written.replace("RestartSec=2", "RestartSec=30")).unwrap();
    ok_inside(systemd.systemctl(m, &["daemon-reload"]), "daemon-reload");
    assert_eq!(systemd.property(m, UNIT, "RestartUSec"), "30s");

    let out = ok_inside(systemd.herald(&home.root, &["install"]), "the second install");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), written, "{out}");
    // systemd itself runs the repaired unit (the install reloaded it).
    assert_eq!(systemd.property(m, UNIT, "RestartUSec"), "2s");
    assert_eq!(systemd.property(m, UNIT, "NeedDaemonReload"), "no");
    answers_a_turn(&home, "d", "d1");
    // --force rewrites and restarts even when nothing drifted.
    let pid = systemd.main_pid(m, UNIT);
    ok_inside(
        systemd.herald(&home.root, &["install", "--force"]),
        "install --force",
    );
    wait_new_main(&systemd, &home, m, pid);

    let out = ok_inside(systemd.herald(&home.root, &["uninstall"]), "herald uninstall");
    assert!(out.contains("herald uninstalled"), "{out}");
    assert!(!path.exists());
    let wants = systemd.user_units().join("default.target.wants").join(UNIT);
    assert!(
        std::fs::symlink_metadata(&wants).is_err(),
        "{} is left",
        wants.display()
    );
    assert_eq!(systemd.property(m, UNIT, "LoadState"), "not-found");
    assert_eq!(systemd.herald_processes(), "");
    assert_eq!(home.state().unwrap().state, GatewayState::Stopped);
    let again = ok_inside(systemd.herald(&home.root, &["uninstall"]), "a second uninstall");
    assert!(again.contains("not installed"), "{again}");
}

/// Installs a `--system` unit for a home at `root` and proves its sandbox: every setting as systemd reads
/// it, a chat turn served (journal, records and logs written in the home), a write to `/usr` and one to
/// `outside` (a directory the gateway has no business writing) refused as read-only, one in the home
/// allowed.
fn serves_sandboxed(systemd: &RealSystemd, root: &Path, private_tmp: bool, outside: &Path) {
    let home = TestHome::at(root);
    home.write("herald.toml", b"");
    installed(systemd, &home, Manager::System);
    let m = Manager::System;
    for (property, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "read-only"),
        ("PrivateTmp", if private_tmp { "yes" } else { "no" }),
        ("WorkingDirectory", root.to_str().unwrap()),
        ("User", "root"),
    ] {
        assert_eq!(systemd.property(m, UNIT, property), value, "{property}");
    }
    // systemd shows the list quoted, as the unit writes it.
    let writable = systemd.property(m, UNIT, "ReadWritePaths");
    assert_eq!(
        herald_install::systemd::split_words(&writable.replace('%', "%%")).unwrap(),
        [root.to_str().unwrap()]
    );
    answers_a_turn(&home, "sandbox", "x1");
    let main = systemd.main_pid(m, UNIT).to_string();
    let in_its_mounts = |path: &Path| {
        systemd
            .command("nsenter")
            .args(["-t", &main, "-m", "touch"])
            .arg(path)
            .output()
            .unwrap()
    };
    for denied in [
        Path::new("/usr/herald-sandbox-probe"),
        &outside.join("herald-sandbox-probe"),
    ] {
        let out = in_its_mounts(denied);
        assert!(
            !out.status.success() && text(&out).contains("Read-only"),
            "{}: {}",
            denied.display(),
            text(&out)
        );
    }
    ok_inside(in_its_mounts(&root.join("probe")), "a write in the home");
    ok_inside(systemd.herald(&home.root, &["stop"]), "herald stop");
    assert_eq!(systemd.property(m, UNIT, "ActiveState"), "inactive");
}

#[test]
fn a_system_unit_serves_inside_its_sandbox() {
    let Some(systemd) = RealSystemd::boot() else {
        return;
    };
    // Outside /tmp (so PrivateTmp=yes is written) and with characters the unit must quote.
    let base = tempfile::Builder::new()
        .prefix("herald-sandbox")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    serves_sandboxed(&systemd, &base.path().join("home 50% \"q\""), true, base.path());
}

#[test]
fn a_system_unit_whose_home_is_under_home_serves_despite_protect_home() {
    let Some(systemd) = RealSystemd::boot() else {
        return;
    };
    // The usual place: a user's `~/.herald`, under the /home that ProtectHome=read-only covers.
    let Ok(user) = tempfile::Builder::new()
        .prefix("herald-sandbox")
        .tempdir_in("/home")
    else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("cannot make a directory under /home, and CI=true makes that a failure");
        }
        eprintln!("\n!!!!! SKIPPED: cannot make a directory under /home !!!!!\n");
        return;
    };
    serves_sandboxed(&systemd, &user.path().join(".herald"), true, user.path());
}

#[test]
fn a_system_unit_whose_home_is_in_the_shared_tmp_keeps_seeing_it() {
    let Some(systemd) = RealSystemd::boot() else {
        return;
    };
    // PrivateTmp=yes would hide a home in /tmp: it is left out, and the gateway serves.
    let base = tempfile::Builder::new()
        .prefix("herald-sandbox")
        .tempdir()
        .unwrap();
    serves_sandboxed(&systemd, &base.path().join("home"), false, Path::new("/etc"));
}

#[test]
fn herald_logs_reads_the_journal_of_a_systemd_managed_home() {
    let Some(systemd) = RealSystemd::boot() else {
        return;
    };
    let home = TestHome::new();
    installed(&systemd, &home, Manager::User);
    answers_a_turn(&home, "logged", "l1");
    // What an earlier gateway outside systemd left must not pass for the current output.
    home.write(
        "logs/stdio.log",
        b"2026-01-01T00:00:00Z  INFO a stale line from stdio.log\n",
    );

    let out = systemd.herald(&home.root, &["logs"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the journal of herald.service (systemd user unit)"),
        "{stderr}"
    );
    assert!(!stdout.contains("stale line"), "{stdout}");
    assert!(stdout.contains("INFO herald gateway running"), "{stdout}");
    assert!(
        stdout.contains("turn ended") && stdout.contains("session=logged"),
        "{stdout}"
    );
    // systemd's own messages about the unit, in the same shape.
    assert!(
        stdout.contains("INFO systemd: Started herald.service"),
        "{stdout}"
    );

    // --json: one object per line, with the gateway's time and level.
    let out = systemd.herald(&home.root, &["logs", "--json", "-n", "100"]);
    let objects: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert!(
        objects.iter().any(|o| o["level"] == "info"
            && o["message"].as_str().is_some_and(|m| m.starts_with("turn ended"))
            && o["time"].as_str().is_some_and(|t| t.starts_with("20"))),
        "{objects:?}"
    );

    // --since a time: what came after it, nothing of what came before.
    std::thread::sleep(Duration::from_millis(300));
    let cutoff = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
    std::thread::sleep(Duration::from_millis(300));
    answers_a_turn(&home, "after", "a1");
    let mut since = String::new();
    support::wait_for("the turn after the cutoff in the journal", || {
        let out = systemd.herald(&home.root, &["logs", "--since", &cutoff]);
        since = String::from_utf8_lossy(&out.stdout).into_owned();
        since.contains("session=after")
    });
    assert!(
        !since.contains("gateway running") && !since.contains("session=logged"),
        "since {cutoff}:\n{since}"
    );

    // -f: a new turn's line arrives while following.
    let mut follow = systemd.herald_command(&home.root, &["logs", "-f", "-n", "0"]);
    let mut follower = follow
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let lines = lines.clone();
        let stdout = follower.stdout.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut all = lines.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    answers_a_turn(&home, "followed", "f1");
    support::wait_for("the followed turn's line", || {
        lines.lock().unwrap().contains("session=followed")
    });
    assert!(!lines.lock().unwrap().contains("session=logged"));
    // Ending the follower (nsenter forwards the signal; the namespace's process goes with its pipe).
    let _ = follower.kill();
    let _ = follower.wait();
    systemd
        .command("pkill")
        .args(["-f", "journalctl"])
        .status()
        .unwrap();
    reader.join().unwrap();
}

/// `herald upgrade` on a home systemd manages: the restart goes through systemctl (the unit's
/// `ExecStart` names the installed path, which the upgrade keeps), the new version is what systemd runs;
/// and a candidate that cannot start is rolled back through systemd too, the old version active again.
#[test]
fn an_upgrade_restarts_through_systemd_and_a_failing_one_is_rolled_back_through_it() {
    let Some(systemd) = RealSystemd::boot() else {
        return;
    };
    let m = Manager::User;
    let home = TestHome::new();
    let bin = home.root.parent().unwrap().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let herald = bin.join("herald");
    std::fs::copy(env!("CARGO_BIN_EXE_herald"), &herald).unwrap();
    let run = |args: &[&str]| {
        systemd
            .command(&herald)
            .arg("--home")
            .arg(&home.root)
            .args(args)
            .output()
            .unwrap()
    };
    let out = ok_inside(run(&["install"]), "herald install");
    assert!(out.contains("herald installed with systemd"), "{out}");
    answers_a_turn(&home, "u", "u1");
    let old_version = home.pid_record().present().unwrap().herald_version;
    let old_main = systemd.main_pid(m, UNIT);

    let candidate = support::upgrade_candidate();
    let out = ok_inside(
        run(&["upgrade", "--from", candidate.to_str().unwrap()]),
        "herald upgrade",
    );
    assert!(out.contains("herald upgraded"), "{out}");
    let new_version = home.pid_record().present().unwrap().herald_version;
    assert_ne!(new_version, old_version);
    assert_eq!(systemd.property(m, UNIT, "ActiveState"), "active");
    assert_ne!(systemd.main_pid(m, UNIT), old_main);
    assert!(
        systemd
            .property(m, UNIT, "ExecStart")
            .contains(&herald.display().to_string())
    );
    answers_a_turn(&home, "u", "u2");

    // A candidate that exits at once: systemd cannot keep it up; the gate fails; rolled back.
    let bad = bin.parent().unwrap().join("failing-herald");
    std::fs::write(
        &bad,
        format!(
            "#!/bin/sh\nif [ \"$1\" = version ]; then\n  {} version --json | sed 's/-upgrade.1/-upgrade.2/'\n  exit\nfi\nexit 1\n",
            candidate.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = run(&[
        "upgrade",
        "--from",
        bad.to_str().unwrap(),
        "--health-timeout",
        "5",
        "--timeout",
        "10",
    ]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("herald {new_version} serves again")),
        "{said}"
    );
    assert_eq!(systemd.property(m, UNIT, "ActiveState"), "active");
    assert_eq!(home.pid_record().present().unwrap().herald_version, new_version);
    answers_a_turn(&home, "u", "u3");
}
