//! The real binary on a PostgreSQL journal (`[journal] url`), on the test cluster `ci/peers/postgres.sh`
//! starts (`HERALD_TEST_POSTGRES_URL`; `CI=true` without it is a failure, elsewhere these tests are
//! skipped with a message): conversations are kept in the database and outlive the home, the password
//! comes from a variable and shows up nowhere, a second gateway on the same database runs as a replica
//! beside the first (`tests/replicas.rs` puts three through faults), and
//! `doctor` and `deliveries` read the database the gateway writes. (A build without the `postgres`
//! feature refuses `[journal] url`: `tests/doctor.rs`.)

#![cfg(feature = "postgres")]

#[path = "support/database.rs"]
mod database;
mod support;

use std::process::Command;

use database::Database;
use serde_json::Value;
use support::{TestHome, http, post_message, retry_wine_spawn, text};

/// A home whose journal is `db`, the password in `HERALD_JOURNAL_PASSWORD`.
fn home_on(db: &Database) -> TestHome {
    let home = TestHome::new();
    home.write(
        "herald.toml",
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\n[journal]\nurl = \"{}\"\npassword_env = \"HERALD_JOURNAL_PASSWORD\"\n",
            db.url()
        )
        .as_bytes(),
    );
    home
}

fn doctor(home: &TestHome, password: &str) -> Value {
    let mut cmd = home.cmd(&["doctor", "--json"]);
    cmd.env("HERALD_JOURNAL_PASSWORD", password);
    let out = cmd.output().unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "journal")
        .unwrap()
        .clone()
}

#[test]
fn conversations_live_in_the_database_and_outlive_the_home() {
    let Some(db) = Database::create() else { return };
    let password = db.password.clone();
    let env = [("HERALD_JOURNAL_PASSWORD", password.as_str())];

    // Before the first start: reachable, nothing made yet; a wrong password is a failed check.
    let first = home_on(&db);
    let check = doctor(&first, &password);
    assert_eq!(check["verdict"], "PASS", "{check}");
    assert!(
        check["detail"].as_str().unwrap().contains("no journal yet"),
        "{check}"
    );
    let check = doctor(&first, "wrong-password-7x");
    assert_eq!(check["verdict"], "FAIL", "{check}");
    assert!(!check.to_string().contains("wrong-password-7x"), "{check}");

    let gateway = first.start_with_env(&["run", "--no-supervise"], &env);
    let url = first.http_url();
    let answer = post_message(&url, "alice", Some("m1"), "hello", "").json();
    assert_eq!(answer["status"], "done", "{answer}");
    assert_eq!(answer["reply"]["text"], "echo: hello");
    // The same id again is the same turn (the database's constraint), not a second answer.
    let again = post_message(&url, "alice", Some("m1"), "hello", "").json();
    assert_eq!(again["reply"]["text"], "echo: hello", "{again}");
    let page = http(&url, "GET", "/v1/sessions/alice/messages", &[], b"").json();
    assert_eq!(page["messages"].as_array().unwrap().len(), 2, "{page}");
    // Text the database cannot hold is refused as such (422, not "retry"), and the gateway stays ready.
    let refused = post_message(&url, "alice", Some("m-nul"), "a\u{0}b", "");
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(refused.json()["error"], "unstorable_text", "{}", refused.body);
    assert_eq!(http(&url, "GET", "/readyz", &[], b"").status, 200);
    assert!(
        !first.home().journal_file().exists(),
        "no state.db beside a PostgreSQL journal"
    );
    let events = first.events();
    let created = events
        .iter()
        .find(|e| e.fields.get("action").and_then(|v| v.as_str()) == Some("created"))
        .expect("a journal created event");
    assert_eq!(created.fields["backend"], "postgres");
    assert_eq!(created.fields["database"], db.url().as_str());

    // A second gateway on the same database runs beside it as a replica: the same conversations.
    let second = home_on(&db);
    let beside = second.start_with_env(&["run", "--no-supervise"], &env);
    let page = http(&second.http_url(), "GET", "/v1/sessions/alice/messages", &[], b"").json();
    assert_eq!(page["messages"].as_array().unwrap().len(), 2, "{page}");
    second.output(&["stop"]);
    assert_eq!(beside.wait().0, Some(0));

    // `deliveries list` and `doctor` read it beside the running gateway.
    let mut cmd = first.cmd(&["deliveries", "list", "--json"]);
    cmd.env("HERALD_JOURNAL_PASSWORD", &password);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let check = doctor(&first, &password);
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("schema version {}", herald_journal::PG_SCHEMA_VERSION)),
        "{check}"
    );

    first.output(&["stop"]);
    let (code, _) = gateway.wait();
    assert_eq!(code, Some(0));

    // Another home (another machine, a replaced container) on the same database has every message.
    let _gateway = second.start_with_env(&["run", "--no-supervise"], &env);
    let url = second.http_url();
    let page = http(&url, "GET", "/v1/sessions/alice/messages", &[], b"").json();
    let texts: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["hello", "echo: hello"], "{page}");
    let next = post_message(&url, "alice", Some("m2"), "again", "").json();
    assert_eq!(next["reply"]["text"], "echo: again", "{next}");
    let page = http(&url, "GET", "/v1/sessions/alice/messages", &[], b"").json();
    let turns: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["turn"].as_u64().unwrap())
        .collect();
    assert_eq!(turns, [1, 1, 2, 2], "the numbering goes on: {page}");

    // The password is in no file herald made: not the config, the logs, the records.
    for entry in walk(&first.root).into_iter().chain(walk(&second.root)) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&password),
            "{} holds the password",
            entry.display()
        );
    }
    second.output(&["stop"]);
}

#[test]
fn a_password_variable_that_is_not_set_stops_the_start_and_is_named() {
    let Some(db) = Database::create() else { return };
    let home = home_on(&db);
    let out = retry_wine_spawn(|| {
        Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("--home")
            .arg(&home.root)
            .args(["run", "--no-supervise"])
            .env_remove("HERALD_JOURNAL_PASSWORD")
            .env_remove("HERALD_HOME")
            .output()
    });
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains("HERALD_JOURNAL_PASSWORD"), "{}", text(&out));
}

/// Every file under `root`.
fn walk(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}
