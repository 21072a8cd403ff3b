//! The README's Quick start, run as written: its first command must start a gateway. The command is read
//! out of README.md at test time, so the README cannot drift from what works (it once said
//! `cargo run --release -- run`, which cargo refused: two binaries and no `default-run`).
//!
//! Linux only: it runs cargo itself (a release build, cached after the first run).

#![cfg(target_os = "linux")]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use herald_home::atomic::read_record;
use herald_home::records::{GatewayState, StateRecord};
use support::*;

/// What the two release builds here change of `[profile.release]`: no cross-crate LTO. These tests check
/// that the documented commands build and run Herald, not how well LTO optimises it (`herald-bench`
/// measures the real release build); the thin-LTO link is most of a release build's time on a 2-core
/// machine (8 minutes per executable with the `matrix` feature, measured). Both tests set the same, so
/// they share one build.
const FAST_RELEASE: [(&str, &str); 1] = [("CARGO_PROFILE_RELEASE_LTO", "false")];

/// The first command of the first `sh` block under `## Quick start`, without its comment.
fn quick_start_command(readme: &str) -> String {
    let section = readme
        .split("\n## Quick start")
        .nth(1)
        .expect("README.md has a `## Quick start` section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .expect("the Quick start has a ```sh block");
    let line = block.lines().next().expect("the block has a first line");
    line.split(" #").next().unwrap_or(line).trim().to_owned()
}

#[test]
fn the_quick_starts_first_command_starts_a_gateway_as_written() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(workspace.join("README.md")).unwrap();
    let command = quick_start_command(&readme);
    assert!(
        command.starts_with("cargo run"),
        "the Quick start should begin with `cargo run …`: {command:?}"
    );
    let home = TestHome::new();
    // Any free port: tests run side by side (the defaults otherwise).
    home.write("herald.toml", b"[http]\nlisten = \"127.0.0.1:0\"\n");
    let log = home.root.join("quick-start.log");
    let words: Vec<&str> = command.split_whitespace().collect();
    let mut gateway = Command::new(words[0])
        .args(&words[1..])
        .current_dir(&workspace)
        .envs(FAST_RELEASE)
        .env("HERALD_HOME", &home.root)
        .env_remove("HERALD_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(home.root.join("quick-start.err")).unwrap())
        .spawn()
        .unwrap();
    // A release build first, when none is cached.
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let state = read_record::<StateRecord>(&home.home().state_record()).present();
        if state.is_some_and(|s| s.state == GatewayState::Running) {
            break;
        }
        if let Ok(Some(status)) = gateway.try_wait() {
            let err = std::fs::read_to_string(home.root.join("quick-start.err")).unwrap_or_default();
            panic!("`{command}` exited with {status} before the gateway ran:\n{err}");
        }
        if Instant::now() > deadline {
            let _ = gateway.kill();
            panic!("`{command}`: no running gateway after 15 minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let stop = home.output(&["stop"]);
    assert!(stop.status.success(), "{}", text(&stop));
    let status = gateway.wait().unwrap();
    assert!(
        status.success(),
        "`{command}` exited with {status} after a planned stop"
    );
}

/// The README's install step (`cargo install --path crates/herald --locked`) installs a working `herald`.
/// Into a temporary root, sharing the workspace's build directory so the release build is not made twice.
#[test]
fn the_documented_install_command_installs_a_working_herald() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(workspace.join("README.md")).unwrap();
    let documented = "cargo install --path crates/herald --locked";
    assert!(
        readme.contains(documented),
        "README.md no longer says `{documented}`"
    );
    let root = tempfile::tempdir().unwrap();
    let out = Command::new("cargo")
        .args(documented.split_whitespace().skip(1))
        .arg("--root")
        .arg(root.path())
        .current_dir(&workspace)
        .envs(FAST_RELEASE)
        .env("CARGO_TARGET_DIR", workspace.join("target"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let version = Command::new(root.path().join("bin/herald"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(version.status.success(), "{}", text(&version));
    assert!(
        String::from_utf8_lossy(&version.stdout).starts_with("herald "),
        "{}",
        text(&version)
    );
}

#[test]
fn the_quick_start_command_is_found() {
    let readme = "# X\n\n## Quick start\n\nText.\n\n```sh\ncargo run --release -- run   # the gateway\nci/test.sh\n```\n";
    assert_eq!(quick_start_command(readme), "cargo run --release -- run");
}
