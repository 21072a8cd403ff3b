//! The conventions of a command-line program, checked on the real binary: `--version` names the commit,
//! `completions` and `man` produce scripts and pages the shell and `man` accept, a home that does not
//! exist is named as such, and piped output carries no colour.

mod support;

use std::process::Command;

use support::*;

fn herald(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .env_remove("HERALD_HOME")
        .env_remove("HERALD_LOG")
        .output()
        .unwrap()
}

#[test]
fn version_names_the_commit_and_its_date() {
    let out = herald(&["--version"]);
    let version = ok(&out);
    let prefix = format!("herald {} (", env!("CARGO_PKG_VERSION"));
    assert!(version.starts_with(&prefix), "{version}");
    // `herald 0.1.0 (abc1234 2026-11-26)`, or `unknown` for either outside a git checkout.
    let inside = version
        .trim_end()
        .strip_prefix(&prefix)
        .and_then(|v| v.strip_suffix(')'));
    let (commit, date) = inside.and_then(|v| v.split_once(' ')).expect("commit and date");
    assert!(
        date == "unknown" || (date.len() == 10 && date.as_bytes()[4] == b'-'),
        "{version}"
    );
    // Run where git is (not under Wine), the commit is this checkout's.
    let head = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    if let Ok(head) = head
        && head.status.success()
    {
        assert_eq!(commit, String::from_utf8_lossy(&head.stdout).trim(), "{version}");
    }
}

#[test]
fn every_shell_gets_a_completion_script_naming_the_commands() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = herald(&["completions", shell]);
        let script = ok(&out);
        for command in ["status", "logs", "completions", "man"] {
            assert!(script.contains(command), "{shell}: no {command}");
        }
    }
    let out = herald(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "an unknown shell is a usage error");
}

#[cfg(unix)]
#[test]
fn bash_accepts_the_completion_script() {
    let exe = env!("CARGO_BIN_EXE_herald");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source <('{exe}' completions bash) && complete -p herald && \
             COMP_WORDS=(herald lo); COMP_CWORD=1; COMP_LINE='herald lo'; COMP_POINT=9; \
             _herald herald lo herald; printf '%s\\n' \"${{COMPREPLY[@]}}\""
        ))
        .output()
        .expect("bash");
    let all = ok(&out);
    assert!(all.contains("-F _herald herald"), "{all}");
    assert!(
        all.lines().any(|l| l == "logs"),
        "completing `herald lo` offers logs: {all}"
    );
}

#[test]
fn the_manual_page_is_roff_naming_every_command() {
    let out = herald(&["man"]);
    let page = ok(&out);
    assert!(page.starts_with(".ie") || page.starts_with(".TH"), "{page}");
    assert!(page.contains(".TH herald 1"), "{page}");
    for section in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH DESCRIPTION",
        ".SH OPTIONS",
        ".SH SUBCOMMANDS",
    ] {
        assert!(page.contains(section), "no {section}");
    }
    assert!(
        page.contains(env!("CARGO_PKG_VERSION")),
        "the page carries the version"
    );
    #[cfg(unix)]
    render_with_groff(
        &out.stdout,
        &[
            "herald-run",
            "herald-status",
            "herald-logs",
            "herald-completions",
            "herald-man",
        ],
    );

    // Each command the main page names has its own page.
    let out = herald(&["man", "logs"]);
    let page = ok(&out);
    assert!(page.contains(".TH herald-logs 1"), "{page}");
    assert!(page.contains("\\-\\-since"), "{page}");
    #[cfg(unix)]
    render_with_groff(&out.stdout, &["herald logs", "--since", "--json", "--home"]);
    assert_eq!(herald(&["man", "nope"]).status.code(), Some(2));
}

/// Where groff is installed, the page renders without a warning and shows `words`.
#[cfg(unix)]
fn render_with_groff(page: &[u8], words: &[&str]) {
    use std::io::Write;
    use std::process::Stdio;
    let Ok(mut groff) = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!("groff is not installed: the page's structure was checked, not its rendering");
        return;
    };
    groff.stdin.take().unwrap().write_all(page).unwrap();
    let checked = groff.wait_with_output().unwrap();
    assert!(
        checked.status.success() && checked.stderr.is_empty(),
        "groff: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    // Plain text: no SGR escapes, no overstriking for bold or underline.
    let mut groff = Command::new("groff")
        .args(["-man", "-Tutf8", "-P-c", "-P-b", "-P-o", "-P-u"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    groff.stdin.take().unwrap().write_all(page).unwrap();
    let rendered = groff.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&rendered.stdout);
    for word in words {
        assert!(text.contains(word), "{word} not in the rendered page:\n{text}");
    }
}

#[test]
fn a_home_that_does_not_exist_is_named_not_just_not_running() {
    let home = TestHome::bare();
    let expected = format!("no Herald home at {}", home.root.display());

    let status = home.output(&["status"]);
    assert_eq!(status.status.code(), Some(3), "not running: {}", text(&status));
    assert!(text(&status).contains(&expected), "{}", text(&status));
    assert!(text(&status).contains("a typo in --home?"), "{}", text(&status));

    let json = home.output(&["status", "--json"]);
    assert_eq!(json.status.code(), Some(3));
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(
        value["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains(&expected)),
        "{value}"
    );

    let stop = home.output(&["stop"]);
    assert_eq!(stop.status.code(), Some(0), "nothing to stop: {}", text(&stop));
    assert!(text(&stop).contains(&expected), "{}", text(&stop));

    let logs = home.output(&["logs"]);
    assert_eq!(logs.status.code(), Some(1), "{}", text(&logs));
    assert!(text(&logs).contains(&expected), "{}", text(&logs));
    let follow = home.output(&["logs", "-f"]);
    assert_eq!(follow.status.code(), Some(1), "-f does not wait on a typo");

    let chat = home.output(&["chat", "hello"]);
    assert_eq!(chat.status.code(), Some(3), "{}", text(&chat));
    assert!(text(&chat).contains(&expected), "{}", text(&chat));

    assert!(!home.root.exists(), "asking about a home does not create it");
}

#[test]
fn a_mistyped_profile_is_named_beside_the_gateways_that_do_run() {
    let home = TestHome::new();
    let gateway = home.start(&[]);
    let out = home.output(&["--profile", "wrok", "status"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("no Herald home at") && all.contains("a typo in --profile?"),
        "{all}"
    );
    assert!(
        all.contains(&format!("also running: default home (pid {})", gateway.pid())),
        "{all}"
    );
    assert!(home.output(&["stop"]).status.success());
    assert_eq!(gateway.wait().0, Some(0));
}

#[test]
fn piped_output_has_no_colour_and_no_color_is_honoured() {
    let home = TestHome::new();
    for no_color in [None, Some(""), Some("1")] {
        let mut cmd = home.cmd(&["status", "--deep"]);
        cmd.env_remove("NO_COLOR")
            .env_remove("CLICOLOR_FORCE")
            .env_remove("FORCE_COLOR");
        if let Some(value) = no_color {
            cmd.env("NO_COLOR", value);
        }
        let out = cmd.output().unwrap();
        let all = text(&out);
        assert!(all.contains("SKIP") || all.contains("PASS"), "{all}");
        assert!(!all.contains('\x1b'), "NO_COLOR={no_color:?}: {all:?}");
    }
}
