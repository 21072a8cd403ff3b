//! `herald secret set | list | rm` and `config check` against the real binary: values enter through
//! standard input only, never show up in output, and a store others can read is refused.
//! (A gateway reading its key from the store is in `openai.rs`, against the mock-llm peer.)

mod support;

use std::io::Write;
use std::process::{Output, Stdio};

use support::{TestHome, text};

const VALUE: &str = "sk-herald-cli-91c4e0b7";

fn set(home: &TestHome, name: &str, value: &str) -> Output {
    let mut child = home
        .cmd(&["secret", "set", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(value.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn openai_home(var: &str) -> TestHome {
    let home = TestHome::new();
    home.write(
        "herald.toml",
        format!("[http]\nlisten = \"127.0.0.1:0\"\n[agent]\nbackend = \"openai\"\n[agent.openai]\napi_key_env = \"{var}\"\n")
            .as_bytes(),
    );
    home
}

#[test]
fn set_list_and_remove_never_show_a_value() {
    let home = openai_home("HERALD_TEST_CLI_KEY");
    let mut all = String::new();

    let out = set(&home, "HERALD_TEST_CLI_KEY", &format!("{VALUE}\n"));
    all.push_str(&support::ok(&out));
    assert!(
        text(&out).contains("stored HERALD_TEST_CLI_KEY"),
        "{}",
        text(&out)
    );
    let out = set(&home, "OTHER_TOKEN", "123:abc");
    all.push_str(&support::ok(&out));
    assert!(
        text(&out).contains("names no variable OTHER_TOKEN"),
        "{}",
        text(&out)
    );
    let again = set(&home, "HERALD_TEST_CLI_KEY", VALUE);
    assert!(text(&again).contains("replaced"), "{}", text(&again));

    let list = support::ok(&home.output(&["secret", "list"]));
    assert!(
        list.contains("HERALD_TEST_CLI_KEY") && list.contains("named by agent.openai.api_key_env"),
        "{list}"
    );
    assert!(
        list.contains("OTHER_TOKEN") && list.contains("not named by herald.toml"),
        "{list}"
    );
    all.push_str(&list);

    let check = home.output(&["config", "check"]);
    all.push_str(&support::ok(&check));
    assert!(
        text(&check).contains("from the secrets store"),
        "{}",
        text(&check)
    );

    all.push_str(&support::ok(&home.output(&["secret", "rm", "OTHER_TOKEN"])));
    let gone = home.output(&["secret", "rm", "OTHER_TOKEN"]);
    assert_eq!(gone.status.code(), Some(1), "{}", text(&gone));
    let list = support::ok(&home.output(&["secret", "list"]));
    assert!(!list.contains("OTHER_TOKEN"), "{list}");
    assert!(!all.contains(VALUE), "a value was printed:\n{all}");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.home().secrets_file())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn bad_names_and_empty_values_are_usage_errors() {
    let home = TestHome::new();
    let out = set(&home, "1-BAD", VALUE);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not a variable name"), "{}", text(&out));
    let out = set(&home, "GOOD", " \n");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("empty"), "{}", text(&out));
    assert!(!home.home().secrets_file().exists());
}

#[test]
fn config_check_names_a_variable_nobody_provides() {
    let home = openai_home("HERALD_TEST_NOBODY_SETS_THIS");
    let out = home.output(&["config", "check"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(78), "{shown}");
    assert!(
        shown.contains("HERALD_TEST_NOBODY_SETS_THIS (agent.openai.api_key_env)")
            && shown.contains("herald secret set HERALD_TEST_NOBODY_SETS_THIS"),
        "{shown}"
    );
    // One only this shell has passes, with a note that a service will not see it.
    let out = home
        .cmd(&["config", "check"])
        .env("HERALD_TEST_NOBODY_SETS_THIS", "from-the-shell")
        .output()
        .unwrap();
    let shown = support::ok(&out);
    assert!(shown.contains("does not see this shell's variables"), "{shown}");
}

#[cfg(unix)]
#[test]
fn a_store_others_can_read_is_refused_by_every_reader() {
    use std::os::unix::fs::PermissionsExt;
    let home = openai_home("HERALD_TEST_CLI_KEY");
    support::ok(&set(&home, "HERALD_TEST_CLI_KEY", VALUE));
    let store = home.home().secrets_file();
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o644)).unwrap();
    for args in [
        &["secret", "list"][..],
        &["run", "--no-supervise"],
        &["config", "check"],
    ] {
        let out = home.output(args);
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(78), "{args:?}: {shown}");
        assert!(shown.contains("chmod 600"), "{args:?}: {shown}");
        assert!(!shown.contains(VALUE), "{shown}");
    }
}

#[test]
fn config_check_names_a_command_agent_program_that_does_not_exist() {
    let home = TestHome::new();
    home.write(
        "herald.toml",
        b"[agent]\nbackend = \"command\"\n[agent.command]\ncommand = [\"herald-test-no-such-program\"]\n",
    );
    let out = home.output(&["config", "check"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(78), "{shown}");
    assert!(
        shown.contains(
            "agent.command.command: the command `herald-test-no-such-program` is not found on PATH"
        ),
        "{shown}"
    );
}
