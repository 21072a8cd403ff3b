//! `herald doctor` against the real binary: each thing that breaks real installs, planted once, fails
//! its own line (and only the checks it should), and the exit code is 1; a sound home exits 0. The agent
//! refusing its key is in `openai.rs`, against the mock-llm peer.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::{TestHome, retry_wine_spawn, text};

/// `doctor --json` run by `exe` on `home`: (exit code, verdict per check).
fn doctor_with(exe: &Path, home: &TestHome, env: &[(&str, &str)]) -> (i32, Value) {
    let mut cmd = Command::new(exe);
    cmd.arg("--home").arg(&home.root).args(["doctor", "--json"]);
    cmd.env_remove("HERALD_HOME").env_remove("HERALD_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = retry_wine_spawn(|| cmd.output());
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    (out.status.code().unwrap(), json)
}

fn doctor(home: &TestHome) -> (i32, Value) {
    doctor_with(Path::new(env!("CARGO_BIN_EXE_herald")), home, &[])
}

fn finding<'a>(json: &'a Value, check: &str) -> &'a Value {
    json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == check)
        .unwrap_or_else(|| panic!("no {check} in {json}"))
}

fn failed(json: &Value) -> Vec<String> {
    json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["verdict"] == "FAIL")
        .map(|c| c["check"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_sound_home_passes_and_the_text_names_every_check() {
    let home = TestHome::new();
    home.write("herald.toml", b"[http]\nlisten = \"127.0.0.1:0\"\n");
    let (code, json) = doctor(&home);
    assert_eq!(code, 0, "{json}");
    assert!(failed(&json).is_empty(), "{json}");
    assert_eq!(json["ok"], true);
    for check in [
        "executable",
        "home",
        "config",
        "port",
        "secrets",
        "agent",
        "telegram",
        "matrix",
        "service",
        "disk",
    ] {
        finding(&json, check);
    }
    assert_eq!(finding(&json, "telegram")["verdict"], "SKIP");
    assert_eq!(finding(&json, "matrix")["verdict"], "SKIP");
    let out = home.output(&["doctor"]);
    let shown = text(&out);
    assert!(shown.contains("PASS  agent"), "{shown}");
    assert!(!shown.contains('\u{1b}'), "no colour when piped: {shown:?}");
}

#[test]
fn an_executable_in_the_temp_dir_fails() {
    let home = TestHome::new();
    home.write("herald.toml", b"[http]\nlisten = \"127.0.0.1:0\"\n");
    let dir = tempfile::Builder::new()
        .prefix("herald-doctor-exe")
        .tempdir_in(std::env::temp_dir())
        .unwrap();
    let copy = dir.path().join(format!("herald{}", std::env::consts::EXE_SUFFIX));
    std::fs::copy(env!("CARGO_BIN_EXE_herald"), &copy).unwrap();
    let (code, json) = doctor_with(&copy, &home, &[]);
    assert_eq!(code, 1, "{json}");
    assert_eq!(failed(&json), ["executable"], "{json}");
    assert!(
        finding(&json, "executable")["detail"]
            .as_str()
            .unwrap()
            .contains("temporary directory"),
        "{json}"
    );
}

#[test]
fn a_port_another_program_holds_fails() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let home = TestHome::new();
    home.write(
        "herald.toml",
        format!("[http]\nlisten = \"127.0.0.1:{port}\"\n").as_bytes(),
    );
    let (code, json) = doctor(&home);
    assert_eq!(code, 1, "{json}");
    assert_eq!(failed(&json), ["port"], "{json}");
    let detail = finding(&json, "port")["detail"].as_str().unwrap().to_owned();
    assert!(
        detail.contains(&format!("127.0.0.1:{port} is in use")),
        "{detail}"
    );
    if cfg!(target_os = "linux") {
        assert!(
            detail.contains(&format!("pid {}", std::process::id())),
            "{detail}"
        );
    }
    // Held by this home's own gateway: fine.
    drop(holder);
    let gateway = home.start(&["--no-supervise"]);
    let (code, json) = doctor(&home);
    assert_eq!(code, 0, "{json}");
    assert!(
        finding(&json, "port")["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("held by this home's gateway (pid {})", gateway.pid())),
        "{json}"
    );
}

#[test]
fn a_variable_nobody_provides_fails_secrets_and_agent() {
    let home = TestHome::new();
    home.write(
        "herald.toml",
        b"[http]\nlisten = \"127.0.0.1:0\"\n[agent]\nbackend = \"openai\"\n[agent.openai]\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key_env = \"HERALD_TEST_DOCTOR_KEY\"\n",
    );
    let (code, json) = doctor(&home);
    assert_eq!(code, 1, "{json}");
    assert_eq!(failed(&json), ["secrets", "agent"], "{json}");
    let secrets = finding(&json, "secrets");
    assert!(
        secrets["detail"]
            .as_str()
            .unwrap()
            .contains("HERALD_TEST_DOCTOR_KEY (agent.openai.api_key_env)"),
        "{json}"
    );
    assert_eq!(secrets["fix"], "`herald secret set HERALD_TEST_DOCTOR_KEY`");
}

#[test]
fn a_command_agent_program_that_does_not_exist_fails_agent() {
    let home = TestHome::new();
    home.write(
        "herald.toml",
        b"[http]\nlisten = \"127.0.0.1:0\"\n[agent]\nbackend = \"command\"\n[agent.command]\ncommand = [\"herald-test-doctor-no-such-program\"]\n",
    );
    let (code, json) = doctor(&home);
    assert_eq!(code, 1, "{json}");
    assert_eq!(failed(&json), ["agent"], "{json}");
    assert!(
        finding(&json, "agent")["detail"]
            .as_str()
            .unwrap()
            .contains("`herald-test-doctor-no-such-program` is not found on PATH"),
        "{json}"
    );
}

#[test]
fn a_broken_config_fails_config_and_skips_what_needs_it() {
    let home = TestHome::new();
    home.write("herald.toml", b"[http]\nlisten = 7\n");
    let (code, json) = doctor(&home);
    assert_eq!(code, 1, "{json}");
    assert_eq!(failed(&json), ["config"], "{json}");
    assert_eq!(finding(&json, "agent")["verdict"], "SKIP");
}

/// A build without the `matrix` feature (the default build) told `[matrix] enabled = true`: doctor fails
/// the matrix line, and the gateway refuses to start (exit 78), both saying how to get a build with it.
#[cfg(not(feature = "matrix"))]
#[test]
fn a_build_without_matrix_says_how_to_get_one_when_matrix_is_enabled() {
    let home = TestHome::new();
    home.write(
        "herald.toml",
        b"[http]\nlisten = \"127.0.0.1:0\"\n[matrix]\nenabled = true\nhomeserver = \"http://127.0.0.1:9\"\n\
          user_id = \"@bot:example.org\"\npassword_env = \"HERALD_TEST_MATRIX_PASSWORD\"\n\
          allowed_users = [\"@ann:example.org\"]\n",
    );
    let env = [("HERALD_TEST_MATRIX_PASSWORD", "x")];
    let (code, json) = doctor_with(Path::new(env!("CARGO_BIN_EXE_herald")), &home, &env);
    assert_eq!(code, 1, "{json}");
    assert_eq!(failed(&json), ["matrix"], "{json}");
    assert!(
        finding(&json, "matrix")["detail"]
            .as_str()
            .unwrap()
            .contains("--features matrix"),
        "{json}"
    );
    let out = home.cmd(&["run", "--no-supervise"]).envs(env).output().unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains("--features matrix"), "{}", text(&out));
}

/// A build without the `postgres` feature (the default build) told `[journal] url`: doctor fails the
/// journal line, and the gateway refuses to start (exit 78), both saying how to get a build with it.
#[cfg(not(feature = "postgres"))]
#[test]
fn a_build_without_postgres_says_how_to_get_one_when_a_journal_url_is_set() {
    let home = TestHome::new();
    home.write(
        "herald.toml",
        b"[http]\nlisten = \"127.0.0.1:0\"\n[journal]\nurl = \"postgres://herald@127.0.0.1:9/herald\"\n",
    );
    let (code, json) = doctor(&home);
    assert_eq!(code, 1, "{json}");
    assert_eq!(failed(&json), ["journal"], "{json}");
    assert!(
        finding(&json, "journal")["detail"]
            .as_str()
            .unwrap()
            .contains("--features postgres"),
        "{json}"
    );
    let out = home.output(&["run", "--no-supervise"]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains("--features postgres"), "{}", text(&out));
    assert!(!home.home().journal_file().exists(), "no state.db made instead");
}
