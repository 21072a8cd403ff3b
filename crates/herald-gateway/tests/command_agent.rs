//! The `command` agent against real processes: the `command_fixture` example (built by `cargo test`
//! next to this binary, so the same programs run on Linux and on Windows under Wine) and, on Unix, real
//! shell scripts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use herald_gateway::agent::command::{CommandAgent, MAX_STDOUT};
use herald_gateway::agent::{Agent, AgentError, HistoryMessage, Role, TurnRequest};

/// The fixture program: `target/<profile>/examples/command_fixture[.exe]`, beside `deps/` where this
/// test binary lives.
fn fixture() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir
        .join("examples")
        .join(format!("command_fixture{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: run the whole `cargo test -p herald-gateway` (it builds examples), or \
         `cargo build -p herald-gateway --example command_fixture` first",
        path.display()
    );
    path
}

fn agent(args: &[&str], timeout: Duration) -> CommandAgent {
    let mut command = vec![fixture().to_string_lossy().into_owned()];
    command.extend(args.iter().map(|a| a.to_string()));
    CommandAgent::new(command, timeout, 2)
}

fn request() -> TurnRequest {
    TurnRequest {
        adapter: "http".to_owned(),
        chat_id: "chat-7".to_owned(),
        turn_id: 99,
        turn: 1,
        message: "what is \"herald\"? ünïcode".to_owned(),
        history: vec![
            HistoryMessage {
                role: Role::User,
                text: "oldest, dropped".to_owned(),
            },
            HistoryMessage {
                role: Role::Assistant,
                text: "kept 1".to_owned(),
            },
            HistoryMessage {
                role: Role::User,
                text: "kept 2".to_owned(),
            },
        ],
        attachments: Vec::new(),
    }
}

const TURN: Duration = Duration::from_secs(60);

#[tokio::test]
async fn happy_path_reply_is_stdout_and_arguments_arrive_intact() {
    let args = ["reply", "hello world", "", r#"quote " and \ back\"#, r"trailing\"];
    let reply = agent(&args, TURN).reply(&request()).await.unwrap();
    assert_eq!(reply.text, "hello world\n\nquote \" and \\ back\\\ntrailing\\");
}

#[tokio::test]
async fn stdin_receives_the_turn_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stdin.json");
    let reply = agent(&["echo-stdin", &file.to_string_lossy()], TURN)
        .reply(&request())
        .await
        .unwrap();
    let received = std::fs::read(&file).unwrap();
    assert_eq!(reply.text, format!("got {} bytes", received.len()));
    let value: serde_json::Value = serde_json::from_slice(&received).unwrap();
    assert_eq!(
        value,
        serde_json::json!({
            "session": {"adapter": "http", "chat_id": "chat-7"},
            "turn_id": 99,
            "turn": 1,
            "message": "what is \"herald\"? ünïcode",
            "history": [{"role": "assistant", "text": "kept 1"}, {"role": "user", "text": "kept 2"}],
        })
    );
}

#[tokio::test]
async fn json_reply_field_is_the_reply() {
    let reply = agent(&["json-reply"], TURN).reply(&request()).await.unwrap();
    assert_eq!(reply.text, "from the json field");
}

#[tokio::test]
async fn non_zero_exit_fails_with_status_and_stderr_tail() {
    let err = agent(&["fail", "7"], TURN).reply(&request()).await.unwrap_err();
    let AgentError::Failed(why) = &err else {
        panic!("{err:?}")
    };
    assert!(why.contains('7'), "{why}");
    assert!(why.ends_with("noise 19 | fatal: the model is on fire"), "{why}");
    assert!(!why.contains("first line of noise"), "only the tail: {why}");
    assert!(err.user_message().contains("fatal: the model is on fire"));
}

#[tokio::test]
async fn non_utf8_stdout_is_converted_lossily() {
    let reply = agent(&["bytes"], TURN).reply(&request()).await.unwrap();
    assert_eq!(reply.text, "caf\u{fffd} \u{fffd}!");
}

#[tokio::test]
async fn empty_stdout_is_an_empty_reply_failure() {
    let err = agent(&["empty"], TURN).reply(&request()).await.unwrap_err();
    assert_eq!(err, AgentError::Failed("empty reply".to_owned()));
}

#[tokio::test]
async fn missing_program_is_misconfigured_and_the_probe_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir
        .path()
        .join(format!("no-such-agent{}", std::env::consts::EXE_SUFFIX));
    let missing_agent = CommandAgent::new(vec![missing.to_string_lossy().into_owned()], TURN, 0);
    let err = missing_agent.reply(&request()).await.unwrap_err();
    let AgentError::Misconfigured(why) = &err else {
        panic!("{err:?}")
    };
    assert!(
        why.contains("was not found") && why.contains("no-such-agent"),
        "{why}"
    );
    // The reply tells the user it will not go away by retrying.
    assert!(
        err.user_message().contains("herald doctor"),
        "{}",
        err.user_message()
    );
    let probe = missing_agent.probe().await.unwrap_err();
    assert!(matches!(probe, AgentError::Misconfigured(_)), "{probe:?}");
    let bare = CommandAgent::new(vec!["herald-surely-no-such-program-3f1".into()], TURN, 0);
    let AgentError::Misconfigured(why) = bare.probe().await.unwrap_err() else {
        panic!("misconfigured")
    };
    assert!(why.contains("not found on PATH"), "{why}");
    let found = agent(&[], TURN).probe().await.expect("the fixture is executable");
    assert!(found.contains("is executable"), "{found}");
}

#[tokio::test]
async fn runaway_stdout_is_capped_and_killed() {
    let started = Instant::now();
    let err = agent(&["flood"], TURN).reply(&request()).await.unwrap_err();
    let AgentError::Failed(why) = &err else {
        panic!("{err:?}")
    };
    assert!(
        why.contains(&format!("more than {} MiB", MAX_STDOUT >> 20)),
        "{why}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "stopped at the cap, not at the timeout"
    );
}

#[tokio::test]
async fn heavy_stderr_does_not_deadlock() {
    let reply = agent(&["stderr-flood"], TURN).reply(&request()).await.unwrap();
    assert_eq!(reply.text, "survived");
}

#[tokio::test]
async fn a_program_that_ignores_stdin_still_answers() {
    let mut request = request();
    // Far more than a pipe buffer, so the write fails with a broken pipe once the program exits.
    request.history = (0..2000)
        .map(|i| HistoryMessage {
            role: Role::User,
            text: format!("{i} {}", "x".repeat(500)),
        })
        .collect();
    let agent = CommandAgent::new(
        vec![fixture().to_string_lossy().into_owned(), "ignore-stdin".into()],
        TURN,
        2000,
    );
    assert_eq!(agent.reply(&request).await.unwrap().text, "did not read");
}

/// Waits for the fixture's pid file: `"<child pid> <grandchild pid>"`.
async fn read_pids(file: &Path) -> (u32, u32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(file) {
            let mut pids = text.split_whitespace().map(|p| p.parse::<u32>().unwrap());
            return (pids.next().unwrap(), pids.next().unwrap());
        }
        assert!(
            Instant::now() < deadline,
            "the fixture never wrote {}",
            file.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that `pid` is gone (or a zombie nobody reaped yet) within a few seconds.
async fn assert_gone(pid: u32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(Instant::now() < deadline, "{what} (pid {pid}) is still running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(unix)]
fn alive(pid: u32) -> bool {
    let pid = libc::pid_t::try_from(pid).unwrap();
    // SAFETY: signal 0 only checks whether the process exists.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    // A killed grandchild is re-parented; in a container whose init does not reap, it stays a zombie.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

#[cfg(windows)]
fn alive(pid: u32) -> bool {
    use windows_sys::Win32::Foundation::{CloseHandle, WAIT_TIMEOUT};
    use windows_sys::Win32::System::Threading::{OpenProcess, PROCESS_SYNCHRONIZE, WaitForSingleObject};
    // SAFETY: OpenProcess has no pointer arguments; a null return means the process is gone.
    let handle = unsafe { OpenProcess(PROCESS_SYNCHRONIZE, 0, pid) };
    if handle.is_null() {
        return false;
    }
    // SAFETY: `handle` is a valid process handle with SYNCHRONIZE access, closed once right after.
    let running = unsafe { WaitForSingleObject(handle, 0) } == WAIT_TIMEOUT;
    // SAFETY: see above.
    unsafe { CloseHandle(handle) };
    running
}

#[tokio::test]
async fn timeout_kills_the_whole_tree() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    // Long enough for a cold Wine to start two processes, short enough for a test.
    let budget = Duration::from_secs(8);
    let started = Instant::now();
    let err = agent(&["tree", &pids.to_string_lossy()], budget)
        .reply(&request())
        .await
        .unwrap_err();
    assert_eq!(err, AgentError::Timeout(budget));
    assert!(
        started.elapsed() < budget + Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let (child, grandchild) = read_pids(&pids).await;
    assert_gone(child, "the program").await;
    assert_gone(grandchild, "the program's child").await;
}

#[tokio::test]
async fn dropping_the_turn_kills_the_whole_tree() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let agent = agent(&["tree", &pids.to_string_lossy()], TURN);
    let request = request();
    // A `BoxFuture`: polled through `&mut`, really dropped by `drop`.
    let mut turn = agent.reply(&request);
    let (child, grandchild) = tokio::select! {
        result = &mut turn => panic!("the turn ended on its own: {result:?}"),
        pids = read_pids(&pids) => pids,
    };
    // Both are running mid-turn (this also shows that `alive` can see them at all).
    assert!(alive(child) && alive(grandchild), "{child} {grandchild}");
    drop(turn);
    assert_gone(child, "the program").await;
    assert_gone(grandchild, "the program's child").await;
}

#[tokio::test]
async fn what_the_program_leaves_running_is_killed_when_it_exits() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let started = Instant::now();
    // The grandchild holds our stdout open: without the tree kill this would run into the timeout.
    let reply = agent(&["orphan", &pids.to_string_lossy()], TURN)
        .reply(&request())
        .await
        .unwrap();
    assert_eq!(reply.text, "left a grandchild behind");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let (_, grandchild) = read_pids(&pids).await;
    assert_gone(grandchild, "the program's child").await;
}

#[cfg(unix)]
mod scripts {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str, mode: u32) -> String {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path.to_string_lossy().into_owned()
    }

    #[tokio::test]
    async fn a_shell_script_answers_from_its_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("copy.json");
        let body = r#"cat > "$1"; printf '{"reply": "script saw %s bytes"}\n' "$(wc -c < "$1" | tr -d ' ')""#;
        let program = script(dir.path(), "agent.sh", body, 0o755);
        let agent = CommandAgent::new(vec![program, copy.to_string_lossy().into_owned()], TURN, 5);
        let reply = agent.reply(&request()).await.unwrap();
        let size = std::fs::metadata(&copy).unwrap().len();
        assert_eq!(reply.text, format!("script saw {size} bytes"));
    }

    #[tokio::test]
    async fn a_script_timeout_kills_its_background_sleep() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let body = format!(
            "sleep 3600 &\necho \"$$ $!\" > '{}.tmp' && mv '{0}.tmp' '{0}'\nwait",
            pids.display()
        );
        let program = script(dir.path(), "slow.sh", &body, 0o755);
        let budget = Duration::from_secs(2);
        let err = CommandAgent::new(vec![program], budget, 0)
            .reply(&request())
            .await
            .unwrap_err();
        assert_eq!(err, AgentError::Timeout(budget));
        let (shell, sleep) = read_pids(&pids).await;
        assert_gone(shell, "the script").await;
        assert_gone(sleep, "the script's sleep").await;
    }

    #[tokio::test]
    async fn a_file_that_is_not_executable_is_misconfigured() {
        let dir = tempfile::tempdir().unwrap();
        let program = script(dir.path(), "plain.sh", "echo hi", 0o644);
        let err = CommandAgent::new(vec![program], TURN, 0)
            .reply(&request())
            .await
            .unwrap_err();
        let AgentError::Misconfigured(why) = &err else {
            panic!("{err:?}")
        };
        assert!(why.contains("not executable"), "{why}");
        let probe = CommandAgent::new(vec![script(dir.path(), "plain2.sh", "echo hi", 0o644)], TURN, 0)
            .probe()
            .await
            .unwrap_err();
        assert!(probe.to_string().contains("chmod +x"), "{probe}");
    }
}
