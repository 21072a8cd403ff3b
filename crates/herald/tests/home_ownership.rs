//! A home belongs to its user: another user's home, a home others can write, a planted link in place of
//! `run/` or `logs/`, or a config others can write is refused with exit 78 and the fix — and nothing
//! outside the home is touched. Unix only (owners and modes); the root-only case needs root (CI runs as
//! root) and says so when skipped.

#![cfg(unix)]

mod support;

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use support::{TestHome, text};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_link_in_place_of_run_or_logs_is_refused_and_its_target_untouched() {
    for dir in ["run", "logs"] {
        let home = TestHome::new();
        let elsewhere = home.root.parent().unwrap().join(format!("elsewhere-{dir}"));
        std::fs::create_dir(&elsewhere).unwrap();
        set_mode(&elsewhere, 0o755);
        symlink(&elsewhere, home.root.join(dir)).unwrap();
        for args in [&["run", "--no-supervise"][..], &["start", "--timeout", "10"][..]] {
            let out = home.output(args);
            assert_eq!(out.status.code(), Some(78), "{dir} {args:?}: {}", text(&out));
            assert!(text(&out).contains("symbolic link"), "{dir}: {}", text(&out));
        }
        assert_eq!(mode(&elsewhere), 0o755, "{dir}: the link's target was chmodded");
        assert_eq!(
            std::fs::read_dir(&elsewhere).unwrap().count(),
            0,
            "{dir}: files appeared outside"
        );
    }
}

#[test]
fn a_home_or_config_others_can_write_is_refused() {
    let home = TestHome::new();
    std::fs::create_dir_all(&home.root).unwrap();
    set_mode(&home.root, 0o777);
    let out = home.output(&["run", "--no-supervise"]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains("writable by other users"), "{}", text(&out));
    assert_eq!(mode(&home.root), 0o777, "refused, not silently repaired");

    set_mode(&home.root, 0o700);
    home.write("herald.toml", b"[gateway]\ndrain_timeout_secs = 5\n");
    set_mode(&home.root.join("herald.toml"), 0o666);
    for args in [&["config", "check"][..], &["run", "--no-supervise"][..]] {
        let out = home.output(args);
        assert_eq!(out.status.code(), Some(78), "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains("herald.toml is writable by other users"),
            "{}",
            text(&out)
        );
    }
    // Fixed as the message says, it runs.
    set_mode(&home.root.join("herald.toml"), 0o644);
    let out = home.output(&["config", "check"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_link_in_place_of_the_lifecycle_log_is_not_followed() {
    let home = TestHome::new();
    let outside = home.root.parent().unwrap().join("outside.log");
    std::fs::write(&outside, b"precious\n").unwrap();
    std::fs::create_dir_all(home.root.join("logs")).unwrap();
    symlink(&outside, home.root.join("logs/lifecycle.jsonl")).unwrap();
    let gateway = home.start(&["--no-supervise"]);
    assert!(home.output(&["stop"]).status.success());
    let _ = gateway.wait();
    assert_eq!(std::fs::read(&outside).unwrap(), b"precious\n");
}

/// The reviewer's attack: `nobody` owns a home, links its `run` to a directory of root's and writes a
/// config whose command agent records who runs it; root starts a gateway there and sends a message.
#[test]
fn root_refuses_a_home_another_user_owns() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: needs root to give a home to another user (CI runs as root)");
        return;
    }
    let home = TestHome::new();
    let base = home.root.parent().unwrap().to_path_buf();
    set_mode(&base, 0o755);
    std::fs::create_dir_all(&home.root).unwrap();
    let roots = base.join("roots-dir");
    std::fs::create_dir(&roots).unwrap();
    set_mode(&roots, 0o755);
    let proof = base.join("pwned");
    symlink(&roots, home.root.join("run")).unwrap();
    home.write(
        "herald.toml",
        format!(
            "[agent]\nbackend = \"command\"\n[agent.command]\ncommand = [\"sh\", \"-c\", \"id > {}\"]\n",
            proof.display()
        )
        .as_bytes(),
    );
    let nobody = 65534;
    for path in [&home.root, &home.root.join("herald.toml")] {
        std::os::unix::fs::chown(path, Some(nobody), Some(nobody)).unwrap();
    }
    std::os::unix::fs::lchown(home.root.join("run"), Some(nobody), Some(nobody)).unwrap();

    let out = home.output(&["start", "--timeout", "10"]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains("belongs to uid 65534"), "{}", text(&out));
    assert_eq!(mode(&roots), 0o755, "root's directory was chmodded");
    assert_eq!(
        std::fs::read_dir(&roots).unwrap().count(),
        0,
        "records landed in root's directory"
    );
    let chat = home.output(&["chat", "hello"]);
    assert!(!chat.status.success());
    assert!(!proof.exists(), "the planted agent ran as root");
}
