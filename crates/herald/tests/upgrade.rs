//! `herald upgrade` with real executables: the herald under test, installed (linked or copied) into a
//! folder of the test's own, upgraded to a second build of this tree with another version string
//! (`ci/build-upgrade-candidate.sh`, run by `ci/test.sh`), and to bad candidates made here — then the
//! gateway that serves afterwards, the files beside the executable, the journal and the lifecycle log
//! are checked.
//!
//! The candidates that misbehave once started (crash, claim a newer journal schema and write it, lie
//! about their version) are shell scripts that answer `version --json` as the real candidate does:
//! Unix only. The rest runs on Windows too (under Wine in CI), where the swap renames the running
//! `herald.exe` and `heraldw.exe` aside.

#[cfg(feature = "postgres")]
#[path = "support/database.rs"]
mod database;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use herald_home::atomic::RecordRead;
use support::{TestHome, http, text, try_http, upgrade_candidate as candidate, wait_for};

const EXE: &str = std::env::consts::EXE_SUFFIX;

fn version_of(exe: &Path) -> String {
    let out = Command::new(exe).args(["version", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["version"].as_str().unwrap().to_owned()
}

/// An installation of the herald under test in a folder of its own (with `heraldw` on Windows, as
/// installed there), and a home; the gateway is stopped on drop.
struct Install {
    _dir: tempfile::TempDir,
    bin: PathBuf,
    home: TestHome,
}

impl Install {
    fn new() -> Install {
        let dir = tempfile::Builder::new()
            .prefix("herald-upgrade")
            .tempdir()
            .unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let built = Path::new(env!("CARGO_BIN_EXE_herald"));
        let mut programs = vec![format!("herald{EXE}")];
        if cfg!(windows) {
            programs.push(format!("heraldw{EXE}"));
        }
        for program in programs {
            let from = built.with_file_name(&program);
            // A link where the file system allows: the upgrade renames over it and never writes
            // into it, so the build's own file is never changed.
            if std::fs::hard_link(&from, bin.join(&program)).is_err() {
                std::fs::copy(&from, bin.join(&program)).unwrap();
            }
        }
        let home = TestHome::new();
        home.write(
            "herald.toml",
            b"[gateway]\ndrain_timeout_secs = 5\n[http]\nlisten = \"127.0.0.1:0\"\n",
        );
        Install { _dir: dir, bin, home }
    }

    fn herald(&self) -> PathBuf {
        self.bin.join(format!("herald{EXE}"))
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.herald());
        cmd.arg("--home").arg(&self.home.root).args(args);
        cmd.env_remove("HERALD_HOME").env_remove("HERALD_LOG");
        cmd.env_remove("HERALD_UPGRADE_HALT_AFTER");
        cmd.stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.cmd(args);
        support::retry_wine_spawn(|| cmd.output())
    }

    fn start(&self) {
        let out = self.run(&["start"]);
        assert!(out.status.success(), "{}", text(&out));
    }

    /// The version the gateway serving the home runs, from its PID record.
    fn serving_version(&self) -> Option<String> {
        match self.home.pid_record() {
            RecordRead::Present(record) => Some(record.herald_version),
            _ => None,
        }
    }

    fn upgrade(&self, candidate: &Path, extra: &[&str]) -> Output {
        let mut args = vec!["upgrade", "--from", candidate.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.run(&args)
    }
}

impl Drop for Install {
    fn drop(&mut self) {
        let _ = self.run(&["stop"]);
    }
}

fn same_bytes(a: &Path, b: &Path) -> bool {
    std::fs::read(a).unwrap() == std::fs::read(b).unwrap()
}

/// Posts `id` to session `load` until it is acknowledged with a reply, following the gateway to its new
/// port across restarts; returns how long the API refused it (0 when the first try went through).
fn post_until_answered(home: &TestHome, id: &str) -> Duration {
    let began = Instant::now();
    let mut refused_since: Option<Instant> = None;
    loop {
        let url = home.state().and_then(|s| s.endpoints.http_url);
        let answer = url.as_deref().map(|url| {
            let body = serde_json::json!({"text": format!("message {id}"), "id": id}).to_string();
            try_http(
                url,
                "POST",
                "/v1/sessions/load/messages",
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            )
        });
        match answer {
            Some(Ok(r)) if r.status == 200 => {
                return refused_since.map_or(Duration::ZERO, |since| since.elapsed());
            }
            // 503 draining / not ready, a refused connection, no URL yet: the same id again.
            _ => {
                refused_since.get_or_insert_with(Instant::now);
                assert!(
                    began.elapsed() < Duration::from_secs(60),
                    "message {id} was never answered"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

#[test]
fn an_upgrade_under_load_serves_the_new_version_and_answers_every_acknowledged_message_once() {
    let candidate = candidate();
    let new_version = version_of(&candidate);
    let install = Install::new();
    let old_version = version_of(&install.herald());
    assert_ne!(old_version, new_version);
    let original = install.herald();
    let original_bytes = std::fs::read(&original).unwrap();
    install.start();
    assert_eq!(install.serving_version().as_deref(), Some(old_version.as_str()));

    // A client sending keyed messages throughout.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let stop = stop.clone();
        let home = TestHome::at(&install.home.root);
        std::thread::spawn(move || {
            let mut sent = Vec::new();
            let mut longest = Duration::ZERO;
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let id = format!("m{n}");
                longest = longest.max(post_until_answered(&home, &id));
                sent.push(id);
            }
            // A second handle on the same home: its drop would stop the gateway.
            std::mem::forget(home);
            (sent, longest)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let out = install.upgrade(&candidate, &[]);
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (sent, longest_refusal) = client.join().unwrap();
    eprintln!(
        "{report}\n{} keyed messages; the longest refusal of one: {longest_refusal:?}",
        sent.len()
    );

    assert!(
        report.contains(&format!("herald upgraded {old_version} -> {new_version}")),
        "{report}"
    );
    assert_eq!(install.serving_version().as_deref(), Some(new_version.as_str()));
    assert!(
        same_bytes(&install.herald(), &candidate),
        "the candidate is installed"
    );
    let previous = install.bin.join(format!("herald.prev{EXE}"));
    assert_eq!(
        std::fs::read(&previous).unwrap(),
        original_bytes,
        "the previous one is kept"
    );
    if cfg!(windows) {
        let gui = install.bin.join(format!("heraldw{EXE}"));
        assert!(same_bytes(
            &gui,
            &candidate.with_file_name(format!("heraldw{EXE}"))
        ));
        assert!(install.bin.join(format!("heraldw.prev{EXE}")).is_file());
    }

    // Every acknowledged message answered exactly once, across the swap.
    let url = install.home.http_url();
    let replies = support::replies(&url, "load");
    for id in &sent {
        assert_eq!(replies.get(id).map(Vec::len), Some(1), "{id}: {replies:?}");
    }
    // The check turn is nowhere to be seen.
    let sessions = http(&url, "GET", "/v1/sessions", &[], b"").json();
    assert!(!sessions.to_string().contains("herald-check"), "{sessions}");

    let names = install.home.event_names();
    for event in ["upgrade_begin", "upgrade_swap", "upgrade_healthy"] {
        assert!(names.contains(&event.to_owned()), "{event}: {names:?}");
    }
    let status = text(&install.run(&["status"]));
    assert!(!status.contains("cut short"), "{status}");
    assert!(
        status.contains(&format!("version: herald {new_version}")),
        "{status}"
    );
}

#[test]
fn bad_candidates_are_refused_before_anything_changes() {
    let install = Install::new();
    install.start();
    let pid = install.home.pid_record().present().unwrap().pid;
    let original = std::fs::read(install.herald()).unwrap();
    let dir = tempfile::tempdir().unwrap();

    // A program for another platform: a Windows header here, a Linux one on Windows.
    let foreign = dir.path().join(format!("foreign{EXE}"));
    let mut header = if cfg!(windows) {
        let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
        elf.resize(18, 0);
        elf.extend_from_slice(&0x3eu16.to_le_bytes());
        elf
    } else {
        let mut pe = b"MZ".to_vec();
        pe.resize(0x3c, 0);
        pe.extend_from_slice(&0x80u32.to_le_bytes());
        pe.resize(0x80, 0);
        pe.extend_from_slice(b"PE\0\0");
        pe.extend_from_slice(&0x8664u16.to_le_bytes());
        pe
    };
    header.resize(4096, 0);
    std::fs::write(&foreign, &header).unwrap();
    make_executable(&foreign);
    let not_a_program = dir.path().join(format!("notes{EXE}"));
    std::fs::write(&not_a_program, b"just some text\n").unwrap();
    make_executable(&not_a_program);
    let missing = dir.path().join("nothing-here");

    #[cfg_attr(not(unix), allow(unused_mut))]
    let mut cases: Vec<(PathBuf, &str)> = vec![
        (
            foreign,
            if cfg!(windows) {
                "a Linux (ELF) program"
            } else {
                "a Windows (PE) program"
            },
        ),
        (not_a_program, "not a program"),
        (missing, "cannot read it"),
        (install.herald(), "the installed executable itself"),
    ];
    #[cfg(unix)]
    {
        let not_executable = dir.path().join("not-executable");
        std::fs::copy(install.herald(), &not_executable).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&not_executable, std::fs::Permissions::from_mode(0o644)).unwrap();
        cases.push((not_executable, "not executable"));
        let liar = script(dir.path(), "liar", "echo '{\"name\": \"herald\"}'", "exit 1");
        cases.push((liar, "not a Herald build's answer"));
        let older = script(
            dir.path(),
            "older",
            &format!(
                "{} version --json | sed 's/\"journal_schema\":[0-9]*/\"journal_schema\":1/'",
                candidate().display()
            ),
            "exit 1",
        );
        cases.push((older, "the candidate reads up to schema 1"));
    }
    for (candidate, reason) in cases {
        let out = install.upgrade(&candidate, &[]);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(1), "{}: {said}", candidate.display());
        assert!(said.contains("refused; nothing was changed"), "{said}");
        assert!(said.contains(reason), "{reason}: {said}");
        assert_eq!(std::fs::read(install.herald()).unwrap(), original);
        assert_eq!(install.home.pid_record().present().unwrap().pid, pid);
        assert!(!install.home.root.join("upgrade/plan.json").exists());
    }
    assert!(install.home.event_names().contains(&"upgrade_refused".to_owned()));

    // One upgrade of a home at a time: while another holds the upgrade lock, refused at once.
    let held =
        herald_home::lock::InstanceLock::try_acquire(&install.home.root.join("upgrade").join("upgrade.lock"))
            .unwrap();
    let out = install.upgrade(&candidate(), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("another `herald upgrade` is running"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read(install.herald()).unwrap(), original);
    drop(held);

    // A gateway started by another installation of herald (here, the build itself): upgrading this
    // one would leave that one running the old build.
    let other = Install::new();
    let out = other.home.output(&["start"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = other.upgrade(&candidate(), &[]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("the gateway of this home runs"), "{said}");
    assert!(same_bytes(
        &other.herald(),
        Path::new(env!("CARGO_BIN_EXE_herald"))
    ));
}

/// A home whose journal is a PostgreSQL database, which every replica shares and no backup of the
/// upgrade's could put back: a candidate that would change its schema, or could not read it, is refused
/// before anything changes; one at the same schema upgrades the home as any other, and the
/// conversation is still there. (The candidates that lie about their schema are scripts: Unix only.)
#[cfg(all(unix, feature = "postgres"))]
#[test]
fn a_shared_postgres_journal_is_upgraded_over_only_at_its_own_schema() {
    use std::io::Write;

    let Some(db) = database::Database::create() else {
        return;
    };
    let install = Install::new();
    install.home.write(
        "herald.toml",
        format!(
            "[gateway]\ndrain_timeout_secs = 5\n[http]\nlisten = \"127.0.0.1:0\"\n[journal]\nurl = \"{}\"\n\
             password_env = \"HERALD_TEST_JOURNAL_PASSWORD\"\n",
            db.url()
        )
        .as_bytes(),
    );
    // In the home's secrets: the upgraded gateway is started detached, without the test's environment.
    let mut set = install.cmd(&["secret", "set", "HERALD_TEST_JOURNAL_PASSWORD"]);
    let mut child = set
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(db.password.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    install.start();
    let url = install.home.http_url();
    let first = support::post_message(&url, "pg", Some("before"), "before the upgrade", "");
    assert_eq!(first.status, 200, "{first:?}");
    let schema = || db.query("SELECT schema_version FROM herald_journal");
    let ours = serde_json::from_slice::<serde_json::Value>(&install.run(&["version", "--json"]).stdout)
        .unwrap()["postgres_schema"]
        .as_u64()
        .unwrap();
    let (ours, older, newer) = (ours.to_string(), ours - 1, ours + 1);
    assert_eq!(schema(), [ours.as_str()]);
    let pid = install.home.pid_record().present().unwrap().pid;
    let original = std::fs::read(install.herald()).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let real = candidate();
    let claiming = |name: &str, edit: &str| {
        script(
            dir.path(),
            name,
            &format!("{} version --json | sed '{edit}'", real.display()),
            "exit 1",
        )
    };
    let cases = [
        (
            claiming("without", r#"s/"postgres_schema":[0-9]*,//"#),
            "was built without PostgreSQL support".to_owned(),
        ),
        (
            claiming(
                "older",
                &format!(r#"s/"postgres_schema":[0-9]*/"postgres_schema":{older}/"#),
            ),
            format!("is at schema {ours}; the candidate reads up to schema {older}"),
        ),
        (
            claiming(
                "newer",
                &format!(r#"s/"postgres_schema":[0-9]*/"postgres_schema":{newer}/"#),
            ),
            format!("from schema {ours} to {newer}: every replica shares it"),
        ),
    ];
    for (candidate, reason) in &cases {
        let out = install.upgrade(candidate, &[]);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(1), "{}: {said}", candidate.display());
        assert!(said.contains("refused; nothing was changed"), "{said}");
        assert!(said.contains(reason.as_str()), "{reason}: {said}");
        assert_eq!(std::fs::read(install.herald()).unwrap(), original);
        assert_eq!(install.home.pid_record().present().unwrap().pid, pid);
        assert!(!install.home.root.join("upgrade/plan.json").exists());
    }
    assert_eq!(schema(), [ours.as_str()]);

    // The real candidate reads this schema: upgraded, and the conversation is the database's.
    let new_version = version_of(&real);
    let out = install.upgrade(&real, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(install.serving_version().as_deref(), Some(new_version.as_str()));
    let url = install.home.http_url();
    let after = support::post_message(&url, "pg", Some("after"), "after the upgrade", "");
    assert_eq!(after.status, 200, "{after:?}");
    let replies = support::replies(&url, "pg");
    for id in ["before", "after"] {
        assert_eq!(replies.get(id).map(Vec::len), Some(1), "{id}: {replies:?}");
    }
    assert_eq!(schema(), [ours.as_str()]);
}

fn make_executable(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// A shell-script candidate: `version` runs `on_version`, anything else `otherwise`.
#[cfg(unix)]
fn script(dir: &Path, name: &str, on_version: &str, otherwise: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("#!/bin/sh\nif [ \"$1\" = version ]; then\n  {on_version}\n  exit\nfi\n{otherwise}\n"),
    )
    .unwrap();
    make_executable(&path);
    path
}

/// A candidate that answers as the real one and, once started, does `then` before running it.
#[cfg(unix)]
fn misbehaving(dir: &Path, name: &str, then: &str) -> PathBuf {
    let real = candidate();
    script(
        dir,
        name,
        &format!("exec {} \"$@\"", real.display()),
        &format!("{then}\nexec {} \"$@\"", real.display()),
    )
}

#[cfg(unix)]
#[test]
fn candidates_that_fail_once_started_are_rolled_back_and_the_old_version_serves_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let journal_version = |install: &Install| {
        herald_journal::snapshot::schema_version(&install.home.root.join("state.db"))
            .unwrap()
            .unwrap()
    };
    let cases = [
        // Crashes at every start: the start fails, the supervisor's crash loop never gets going.
        (
            misbehaving(dir.path(), "crashing", "echo 'crashing candidate' >&2; exit 1"),
            "restart",
            None,
        ),
        // Migrates the journal to a schema the old version cannot read, then fails: the rollback
        // must put the backup back or the old version would not start.
        (
            misbehaving(
                dir.path(),
                "migrating",
                "python3 -c \"import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA user_version=99'); c.commit()\" \"$2/state.db\"; exit 1",
            ),
            "restart",
            Some("restored from the backup"),
        ),
        // Starts and never becomes ready (holds nothing, writes nothing): the start times out, and the
        // process it left starting is ended — else it could fight the restored version for the home.
        (
            misbehaving(dir.path(), "never-ready", "while :; do sleep 1; done"),
            "restart",
            None,
        ),
        // Says it is the new version, and runs the old one: the gate reads the PID record.
        (
            script(
                dir.path(),
                "impostor",
                &format!("exec {} \"$@\"", candidate().display()),
                &format!("exec {} \"$@\"", env!("CARGO_BIN_EXE_herald")),
            ),
            "health gate",
            None,
        ),
    ];
    for (candidate, step, journal_word) in cases {
        let install = Install::new();
        install.start();
        let old_version = install.serving_version().unwrap();
        let url = install.home.http_url();
        let before = support::post_message(&url, "kept", Some("before"), "before the upgrade", "");
        assert_eq!(before.status, 200, "{}", before.body);
        let schema = journal_version(&install);
        let original = std::fs::read(install.herald()).unwrap();

        let out = install.upgrade(&candidate, &["--health-timeout", "5", "--timeout", "4"]);
        let said = text(&out);
        eprintln!("{}: {said}", candidate.display());
        assert_eq!(out.status.code(), Some(1), "{said}");
        assert!(said.contains(&format!("failed at {step}")), "{step}: {said}");
        assert!(
            said.contains(&format!("herald {old_version} serves again")),
            "{said}"
        );
        if let Some(words) = journal_word {
            assert!(said.contains(words), "{said}");
        }
        assert_eq!(std::fs::read(install.herald()).unwrap(), original);
        assert_eq!(install.serving_version().as_deref(), Some(old_version.as_str()));
        assert_eq!(journal_version(&install), schema);
        // What was answered before is still there, and the old version takes turns.
        let url = install.home.http_url();
        let history = support::replies(&url, "kept");
        assert_eq!(history.get("before").map(Vec::len), Some(1), "{history:?}");
        let after = support::post_message(&url, "kept", Some("after"), "after the rollback", "");
        assert_eq!(after.status, 200, "{}", after.body);
        let names = install.home.event_names();
        assert!(names.contains(&"upgrade_rollback".to_owned()), "{names:?}");
        assert!(!names.contains(&"upgrade_healthy".to_owned()), "{names:?}");
        let plan = std::fs::read_to_string(install.home.root.join("upgrade/plan.json")).unwrap();
        assert!(plan.contains("\"rolled_back\""), "{plan}");
        let left = shells_running(&install.herald());
        assert!(
            left.is_empty(),
            "{}: still running: {left:?}",
            candidate.display()
        );
    }
}

/// Shell processes running `script` (a candidate script installed there), from `/proc`.
#[cfg(target_os = "linux")]
fn shells_running(script: &Path) -> Vec<String> {
    let script = script.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.first().is_some_and(|a| a.ends_with("sh")) && args.contains(&script) {
            found.push(args.join(" "));
        }
    }
    found
}

#[cfg(all(unix, not(target_os = "linux")))]
fn shells_running(_script: &Path) -> Vec<String> {
    Vec::new()
}

/// `kill -9` of `herald upgrade` after each step (the test hook makes it die there, as a kill would):
/// `status` explains it, a new upgrade is refused until it is settled, and `--resume` (even steps) or
/// `--rollback` (odd ones) settles it — the new or the old version serving, never a half-installed home.
#[test]
fn an_upgrade_killed_after_any_step_is_finished_by_resume_or_undone_by_rollback() {
    let candidate = candidate();
    let new_version = version_of(&candidate);
    let steps = [
        "validated",
        "backing_up",
        "backed_up",
        "swapping",
        "swapped",
        "restarted",
    ];
    for (n, step) in steps.iter().enumerate() {
        let install = Install::new();
        install.start();
        let old_version = install.serving_version().unwrap();
        let original = std::fs::read(install.herald()).unwrap();

        let mut cmd = install.cmd(&["upgrade", "--from", candidate.to_str().unwrap()]);
        cmd.env("HERALD_UPGRADE_HALT_AFTER", step);
        let out = support::retry_wine_spawn(|| cmd.output());
        assert_eq!(out.status.code(), Some(86), "{step}: {}", text(&out));

        let status = text(&install.run(&["status"]));
        assert!(
            status.contains(&format!("cut short at step {step}")),
            "{step}: {status}"
        );
        assert!(status.contains("--resume"), "{status}");
        let again = install.upgrade(&candidate, &[]);
        assert_eq!(again.status.code(), Some(2), "{step}: {}", text(&again));
        assert!(text(&again).contains("left unfinished"), "{}", text(&again));

        let (how, version) = if n % 2 == 0 {
            ("--resume", new_version.as_str())
        } else {
            ("--rollback", old_version.as_str())
        };
        let out = install.run(&["upgrade", how]);
        assert!(out.status.success(), "{step} {how}: {}", text(&out));
        wait_for(&format!("{step} {how}: herald {version} serving"), || {
            install.serving_version().as_deref() == Some(version)
        });
        if how == "--rollback" {
            assert_eq!(std::fs::read(install.herald()).unwrap(), original, "{step}");
        } else {
            assert!(same_bytes(&install.herald(), &candidate), "{step}");
        }
        let status = text(&install.run(&["status"]));
        assert!(!status.contains("cut short"), "{step} {how}: {status}");
        let url = install.home.http_url();
        let reply = support::post_message(&url, "after", None, "still there?", "");
        assert_eq!(reply.status, 200, "{step} {how}: {}", reply.body);
    }
}

#[cfg(unix)]
#[test]
fn upgrade_after_exit_waits_for_that_process_then_upgrades() {
    let candidate = candidate();
    let new_version = version_of(&candidate);
    let install = Install::new();
    install.start();
    let mut updater = Command::new("sleep").arg("30").spawn().unwrap();
    let out = install.upgrade(&candidate, &["--after-exit", &updater.id().to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("once pid"), "{}", text(&out));
    std::thread::sleep(Duration::from_millis(500));
    assert_ne!(install.serving_version().as_deref(), Some(new_version.as_str()));
    updater.kill().unwrap();
    updater.wait().unwrap();
    wait_for("the watcher's upgrade", || {
        install.serving_version().as_deref() == Some(new_version.as_str())
            && install.home.event_names().contains(&"upgrade_healthy".to_owned())
    });
    assert!(same_bytes(&install.herald(), &candidate));
}

/// A package manager (or an upgrade killed after its swap) renames a new file over the executable while
/// the gateway runs: a worker that dies then is started again by its monitor from the image the monitor
/// runs — not from the path, which on Linux the kernel now calls "herald (deleted)" — so the gateway
/// comes back, one build throughout, until it is restarted on the new one.
#[cfg(target_os = "linux")]
#[test]
fn a_worker_that_dies_after_its_file_was_replaced_comes_back_on_the_monitors_build() {
    let install = Install::new();
    install.start();
    let old_version = install.serving_version().unwrap();
    let worker = install.home.worker_pid();
    let staged = install.bin.join("herald.dpkg-new");
    std::fs::copy(candidate(), &staged).unwrap();
    std::fs::rename(&staged, install.herald()).unwrap();

    // SAFETY: kill(2) of the worker this test's gateway runs, by the pid its state record names.
    assert_eq!(unsafe { libc::kill(worker as i32, libc::SIGKILL) }, 0);
    let new_worker = install.home.wait_new_worker(worker);
    let started = install
        .home
        .events()
        .into_iter()
        .rfind(|e| e.event == "start" && e.pid == new_worker)
        .expect("the new worker's start event");
    assert_eq!(
        started.field("version").and_then(|v| v.as_str()),
        Some(old_version.as_str())
    );
    let argv = started.field("argv").unwrap().to_string();
    assert!(argv.contains(&install.herald().display().to_string()), "{argv}");
    let url = install.home.http_url();
    let reply = support::post_message(&url, "back", None, "are you there?", "");
    assert_eq!(reply.status, 200, "{}", reply.body);
}
