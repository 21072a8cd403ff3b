//! Records, config and homes under bad input: every corrupt file gets clear behaviour and no panic; a PID
//! record naming someone else's process never makes herald report or kill it.

mod support;

use herald_home::lock::InstanceLock;
use herald_home::records::GatewayState;
use support::*;

const GARBAGE: &[(&str, &[u8])] = &[
    ("empty", b""),
    ("whitespace", b"   \n"),
    ("truncated", b"{\"version\":1,\"pid\":12"),
    ("binary", b"\x00\x01\xff\xfe\x80"),
    ("wrong version", b"{\"version\":99,\"pid\":1}"),
    ("wrong shape", b"{\"version\":1,\"pid\":\"one\"}"),
    ("not an object", b"[1,2,3]"),
];

#[test]
fn corrupt_records_are_reported_and_replaced_never_fatal() {
    for (label, bytes) in GARBAGE {
        let home = TestHome::new();
        home.write("run/pid.json", bytes);
        home.write("run/state.json", bytes);

        let (code, status) = home.status_json();
        assert_eq!(code, 3, "{label}: {status}");
        assert_eq!(status["running"], false, "{label}");
        let warnings = status["warnings"].to_string();
        assert!(
            warnings.contains("PID record") && warnings.contains("state record"),
            "{label}: {status}"
        );
        let text_status = home.output(&["status"]);
        assert_eq!(text_status.status.code(), Some(3), "{label}");
        assert!(text(&text_status).contains("warning:"), "{label}");

        let stop = home.output(&["stop"]);
        assert_eq!(stop.status.code(), Some(0), "{label}: {}", text(&stop));

        // A gateway starts over corrupt records and replaces them.
        let gateway = home.start(&[]);
        assert!(home.pid_record().present().is_some(), "{label}");
        assert!(home.output(&["stop"]).status.success(), "{label}");
        assert_eq!(gateway.wait().0, Some(0), "{label}");
    }
}

#[test]
fn corrupt_lifecycle_log_lines_do_not_stop_the_gateway() {
    let home = TestHome::new();
    home.write("logs/lifecycle.jsonl", b"not json\n\xff\xfe\n{\"ts\":");
    let gateway = home.start(&[]);
    assert!(home.output(&["stop"]).status.success());
    assert_eq!(gateway.wait().0, Some(0));
    let names = names_for(&home.events(), 0);
    assert!(names.is_empty());
    assert!(home.event_names().contains(&"exit".to_owned()));
}

#[test]
fn pid_record_naming_an_unrelated_live_process_is_not_trusted() {
    use herald_home::atomic::write_record;
    use herald_home::records::PidRecord;

    // The test process itself: alive, not a herald gateway, not on this home.
    let me = herald_process::identity::current();
    for (label, start_time, argv) in [
        (
            "recycled pid",
            me.key.start_time + 1000,
            vec!["herald".to_owned(), "run".to_owned()],
        ),
        (
            "other program",
            me.key.start_time,
            vec!["herald".to_owned(), "run".to_owned()],
        ),
    ] {
        let home = TestHome::new();
        home.home().ensure().unwrap();
        let record = PidRecord {
            version: 1,
            pid: me.key.pid,
            start_time,
            argv,
            exe: Some("herald".into()),
            home: home.root.clone(),
            herald_version: "0.1.0".into(),
            started_at_ms: 0,
            control: "nowhere".into(),
        };
        write_record(&home.home().pid_record(), &record).unwrap();

        let (code, status) = home.status_json();
        assert_eq!(code, 3, "{label}: {status}");
        assert_eq!(status["running"], false, "{label}");
        assert_eq!(status["pid"], serde_json::Value::Null, "{label}");
        assert!(
            status["warnings"].to_string().contains("stale PID record"),
            "{label}: {status}"
        );

        // stop must not touch the test process (we would not be here to assert otherwise).
        let stop = home.output(&["stop"]);
        assert_eq!(stop.status.code(), Some(0), "{label}: {}", text(&stop));
        assert!(text(&stop).contains("not running"), "{label}");

        // Now lock the home from this (non-herald) process: status must not claim a verified pid, and stop
        // must refuse to kill anything.
        let lock = InstanceLock::try_acquire(&home.home().lock_file()).unwrap();
        let (code, status) = home.status_json();
        assert_eq!(code, 0, "the lock is held: {status}");
        assert_eq!(status["pid"], serde_json::Value::Null, "{label}: {status}");
        assert!(
            status["warnings"].to_string().contains("is not it"),
            "{label}: {status}"
        );
        let stop = home.output(&["stop", "--timeout", "2"]);
        assert_eq!(stop.status.code(), Some(1), "{label}: {}", text(&stop));
        assert!(
            text(&stop).contains("nothing was killed"),
            "{label}: {}",
            text(&stop)
        );
        drop(lock);
    }
}

#[test]
fn bad_config_is_fatal_with_key_line_and_column() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[gateway]\ndrain_timeout_secs = 30\nbogus = 1\n",
            ":3:1:",
            "bogus",
        ),
        (
            "[gateway]\ndrain_timeout_secs = \"soon\"\n",
            ":2:22:",
            "gateway.drain_timeout_secs",
        ),
        ("[gateway]\ndrain_timeout_secs = 999999\n", ":2:22:", "3600"),
        ("[gateway\n", ":1:", "herald.toml"),
        ("[surprise]\n", ":1:", "surprise"),
    ];
    for (toml, location, mention) in cases {
        let home = TestHome::new();
        home.write("herald.toml", toml.as_bytes());
        let check = home.output(&["config", "check"]);
        assert_eq!(check.status.code(), Some(78), "{toml}");
        let message = text(&check);
        assert!(
            message.contains(location) && message.contains(mention),
            "{toml}: {message}"
        );

        let run = home.output(&["run"]);
        assert_eq!(run.status.code(), Some(78), "{toml}: {}", text(&run));
        assert!(text(&run).contains(location), "{}", text(&run));
        let state = home.state().expect("state record after a failed start");
        assert_eq!(state.state, GatewayState::StartupFailed);
        assert!(state.detail.unwrap().contains(mention));
        assert_eq!(state.last_exit.unwrap().code, 78);
        let names = home.event_names();
        assert_eq!(names, ["start", "startup_failed", "exit"], "{toml}");
        assert!(home.pid_record().present().is_none());
    }
}

#[test]
fn config_init_show_check() {
    let home = TestHome::bare();
    let show = home.output(&["config", "show"]);
    assert!(show.status.success());
    assert!(text(&show).contains("embedded defaults"));
    assert!(text(&show).contains("drain_timeout_secs = 30"));

    let init = home.output(&["config", "init"]);
    assert!(init.status.success(), "{}", text(&init));
    let written = std::fs::read_to_string(home.home().config_file()).unwrap();
    assert!(written.contains("# Seconds a planned stop"));
    assert!(home.output(&["config", "check"]).status.success());

    let again = home.output(&["config", "init"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again).contains("--force"));

    std::fs::write(home.home().config_file(), "[gateway]\ndrain_timeout_secs = 7\n").unwrap();
    let show = home.output(&["config", "show"]);
    assert!(text(&show).contains("drain_timeout_secs = 7"), "{}", text(&show));
    assert!(home.output(&["config", "init", "--force"]).status.success());
    assert!(text(&home.output(&["config", "show"])).contains("drain_timeout_secs = 30"));
}

#[test]
fn profiles_and_home_resolution() {
    let home = TestHome::new();
    // HERALD_HOME is honoured when --home is absent; --profile selects a subdirectory.
    let out = retry_wine_spawn(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["--profile", "work", "status", "--json"])
            .env("HERALD_HOME", &home.root)
            .output()
    });
    assert_eq!(out.status.code(), Some(3));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reported = std::path::PathBuf::from(status["home"].as_str().unwrap());
    assert_eq!(reported, home.root.join("profiles").join("work"));

    for bad in ["Work", "-x", "a/b", "..", &"x".repeat(65)] {
        let out = home.output(&[&format!("--profile={bad}"), "status"]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            text(&out).contains("invalid profile name"),
            "{bad}: {}",
            text(&out)
        );
    }
}

#[test]
fn hostile_home_paths_work() {
    let base = tempfile::tempdir().unwrap();
    for name in ["with space", "per%cent$dollar", "quote'and\"dq", "ünï-cødé"] {
        if cfg!(windows) && name.contains('"') {
            continue; // not a legal Windows file name
        }
        let root = base.path().join(name).join("home");
        let out = retry_wine_spawn(|| {
            std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
                .arg("--home")
                .arg(&root)
                .args(["config", "init"])
                .output()
        });
        assert!(out.status.success(), "{name}: {}", text(&out));
        let mut child = retry_wine_spawn(|| {
            std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
                .arg("--home")
                .arg(&root)
                .arg("run")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
        });
        let state = herald_home::Home::at(&root).state_record();
        wait_for("running", || {
            matches!(herald_home::atomic::read_record::<herald_home::records::StateRecord>(&state).present(),
                Some(s) if s.state == GatewayState::Running && s.pid == child.id())
        });
        let stop = retry_wine_spawn(|| {
            std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
                .arg("--home")
                .arg(&root)
                .arg("stop")
                .output()
        });
        assert!(stop.status.success(), "{name}: {}", text(&stop));
        assert_eq!(child.wait().unwrap().code(), Some(0), "{name}");
    }
}

#[cfg(unix)]
#[test]
fn home_is_private_and_records_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let home = TestHome::new();
    let gateway = home.start(&[]);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let h = home.home();
    assert_eq!(mode(h.root()), 0o700);
    assert_eq!(mode(&h.run_dir()), 0o700);
    assert_eq!(mode(&h.logs_dir()), 0o700);
    for file in [
        h.pid_record(),
        h.state_record(),
        h.lock_file(),
        h.lifecycle_log(),
        h.control_socket(),
    ] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    assert!(home.output(&["stop"]).status.success());
    assert_eq!(gateway.wait().0, Some(0));
}

#[cfg(unix)]
#[test]
fn a_long_home_path_still_gets_a_control_channel() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("x".repeat(120)).join("home");
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_herald"));
        cmd.arg("--home")
            .arg(&root)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd
    };
    let child = run(&["run"]).spawn().unwrap();
    let state = herald_home::Home::at(&root).state_record();
    wait_for("running", || {
        matches!(herald_home::atomic::read_record::<herald_home::records::StateRecord>(&state).present(),
            Some(s) if s.state == GatewayState::Running)
    });
    let stop = run(&["stop", "--via", "channel"]).output().unwrap();
    assert!(stop.status.success(), "{}", text(&stop));
    assert_eq!(child.wait_with_output().unwrap().status.code(), Some(0));
}

#[test]
fn status_lists_the_other_running_profiles() {
    let home = TestHome::new();
    let mut work = home
        .cmd(&["--profile", "work", "run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let work_home = herald_home::Home::at(home.root.join("profiles").join("work"));
    wait_for("the work profile to run", || {
        matches!(herald_home::atomic::read_record::<herald_home::records::StateRecord>(&work_home.state_record()).present(),
            Some(s) if s.state == GatewayState::Running)
    });
    // A directory that is not a valid profile name is ignored.
    std::fs::create_dir_all(home.root.join("profiles").join("Not A Profile")).unwrap();

    let (code, status) = home.status_json();
    assert_eq!(code, 3, "the default home itself is not running: {status}");
    let others = status["others"].as_array().unwrap();
    assert_eq!(others.len(), 1, "{status}");
    assert_eq!(others[0]["profile"], "work");
    assert_eq!(others[0]["pid"], work.id());
    let text_status = home.output(&["status"]);
    assert!(
        text(&text_status).contains(&format!("also running: profile work (pid {})", work.id())),
        "{}",
        text(&text_status)
    );

    // From the profile's side, the default home is a sibling too (not running here).
    let out = home.output(&["--profile", "work", "status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["running"], true);
    assert_eq!(status["others"].as_array().unwrap().len(), 0, "{status}");

    assert!(home.output(&["--profile", "work", "stop"]).status.success());
    assert_eq!(work.wait().unwrap().code(), Some(0));
}

/// Deleting `run/instance.lock` under a running gateway used to let a second monitor and worker start
/// beside it (the records then described the idle pair, and `stop` needed a force kill). Now `status`
/// still sees the gateway, the gateway locks the file now at the path at once (`lock_replaced`), a
/// second `run` refuses to serve beside it, and `stop` stops it. Unix only: on Windows an open file's deletion stays pending until
/// its last handle closes, so the held lock file cannot vanish.
#[cfg(unix)]
#[test]
fn a_deleted_lock_file_never_lets_a_second_gateway_serve() {
    let home = TestHome::new();
    let gateway = home.start(&[]);
    let pid = gateway.pid();
    std::fs::remove_file(home.home().lock_file()).unwrap();

    // At this instant `status` may find the hole (and say so) or the lock already restored: either way
    // the gateway is running.
    let (code, status) = home.status_json();
    assert_eq!(code, 0, "{status}");
    assert_eq!(status["running"], true);
    if !status["warnings"].as_array().is_none_or(Vec::is_empty) {
        assert!(
            status["warnings"]
                .to_string()
                .contains("instance.lock is missing or was replaced"),
            "{status}"
        );
    }

    // The gateway notices and locks its home again, and says so.
    wait_for("the gateway to lock its home again", || {
        herald_home::lock::InstanceLock::is_held(&home.home().lock_file()).unwrap_or(false)
    });
    wait_for("the lock_replaced event", || {
        home.events().iter().any(|e| e.event == "lock_replaced")
    });
    let restored = home
        .events()
        .into_iter()
        .find(|e| e.event == "lock_replaced")
        .unwrap();
    assert_eq!(
        restored.field("outcome").and_then(|v| v.as_str()),
        Some("restored")
    );
    let (code, status) = home.status_json();
    assert_eq!(code, 0, "{status}");
    assert!(
        !status["warnings"].to_string().contains("instance.lock"),
        "{status}"
    );

    // A second gateway is refused: found holding the lock, or (had it come in the gap) found running
    // beside a missing lock.
    let second = home.output(&["run", "--no-supervise"]);
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    assert!(
        text(&second).contains(&format!("a gateway (pid {pid}) still runs"))
            || text(&second).contains(&format!("already running (pid {pid})")),
        "{}",
        text(&second)
    );

    let stop = home.output(&["stop"]);
    assert!(stop.status.success(), "{}", text(&stop));
    assert!(
        text(&stop).contains(&format!("stopped pid {pid}")),
        "{}",
        text(&stop)
    );
    assert_eq!(gateway.wait().0, Some(0), "a planned stop, not a kill");
}
