//! `herald status --deep`: make each lie happen for real and check the probe that catches it and the
//! verdict that names it.

mod support;

use herald_home::atomic::write_record;
use herald_home::lock::InstanceLock;
use herald_home::records::PidRecord;
use serde_json::Value;
use support::*;

fn deep(home: &TestHome) -> (i32, Value) {
    let out = home.output(&["status", "--deep", "--json"]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    (out.status.code().unwrap(), json)
}

fn failed(json: &Value) -> Vec<u64> {
    json["probes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["ok"] == false)
        .map(|p| p["id"].as_u64().unwrap())
        .collect()
}

fn verdict(json: &Value) -> &str {
    json["verdict"].as_str().unwrap()
}

#[test]
fn healthy_and_cleanly_stopped() {
    let home = TestHome::new();
    let gateway = home.start(&[]);
    let (code, json) = deep(&home);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["probes"].as_array().unwrap().len(), 11);
    assert!(failed(&json).is_empty(), "{json}");
    assert!(verdict(&json).starts_with("healthy"), "{json}");
    assert_eq!(json["healthy"], true);
    let text_out = home.output(&["status", "--deep"]);
    assert!(
        text(&text_out).contains("PASS   7. Control channel"),
        "{}",
        text(&text_out)
    );

    assert!(home.output(&["stop"]).status.success());
    assert_eq!(gateway.wait().0, Some(0));
    let (code, json) = deep(&home);
    assert_eq!(code, 3);
    assert!(failed(&json).is_empty(), "{json}");
    assert!(
        verdict(&json).starts_with("not running (last exit: code 0"),
        "{json}"
    );
    // What could not be asked of a stopped gateway is SKIP with the reason, never PASS.
    let skipped: Vec<u64> = json["probes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["result"] == "skip")
        .map(|p| p["id"].as_u64().unwrap())
        .collect();
    assert_eq!(skipped, [3, 4, 7, 8, 11], "{json}");
    let text_out = text(&home.output(&["status", "--deep"]));
    assert!(
        text_out.contains("SKIP   7. Control channel")
            && text_out.contains("not tried (nothing holds the lock)"),
        "{text_out}"
    );
    assert!(
        !text_out.contains('\x1b'),
        "piped output has no colour: {text_out:?}"
    );
}

/// An agent that cannot work — a `command` whose program does not exist — is named by `--deep` (P11)
/// from the probe the gateway runs at start, before any turn; a turn then says it will not go away.
#[test]
fn a_missing_agent_program_fails_the_agent_probe() {
    let home = TestHome::new();
    home.write(
        "herald.toml",
        b"[http]\nlisten = \"127.0.0.1:0\"\n[agent]\nbackend = \"command\"\n[agent.command]\ncommand = [\"herald-test-no-such-agent-program\"]\n",
    );
    let _gateway = home.start(&["--no-supervise"]);
    let mut last = Value::Null;
    wait_for("the agent probe to fail", || {
        let (code, json) = deep(&home);
        last = json.clone();
        // `/readyz` fails too (P8: an agent that cannot work until fixed makes the gateway useless), and
        // the verdict names the cause.
        code == 1 && failed(&json) == [8, 11]
    });
    assert!(
        verdict(&last).contains(
            "its agent is failing (P11: command: the agent is misconfigured: the command \
             `herald-test-no-such-agent-program` is not found on PATH"
        ),
        "{last}"
    );
    let reply = post_message(&home.http_url(), "s", None, "hello", "").json();
    assert_eq!(reply["status"], "failed", "{reply}");
    assert!(
        reply["reply"]["text"].as_str().unwrap().contains("herald doctor"),
        "{reply}"
    );
}

#[test]
fn stale_pid_record_after_a_kill() {
    let home = TestHome::new();
    let gateway = home.start(&["--no-supervise"]);
    let pid = gateway.pid();
    gateway.kill();
    let (code, json) = deep(&home);
    assert_eq!(code, 3);
    assert!(failed(&json).contains(&1), "{json}");
    assert!(
        verdict(&json).contains(&format!("stale PID record names pid {pid}")),
        "{json}"
    );
}

#[test]
fn pid_record_naming_a_live_unrelated_process() {
    let home = TestHome::new();
    home.home().ensure().unwrap();
    let me = herald_process::identity::current();
    write_record(
        &home.home().pid_record(),
        &PidRecord {
            version: 1,
            pid: me.key.pid,
            start_time: me.key.start_time,
            argv: vec!["herald".into(), "run".into()],
            exe: Some("herald".into()),
            home: home.root.clone(),
            herald_version: "0".into(),
            started_at_ms: 0,
            control: "x".into(),
        },
    )
    .unwrap();
    let (code, json) = deep(&home);
    assert_eq!(code, 3);
    let failed = failed(&json);
    assert!(failed.contains(&1) && failed.contains(&3), "{json}");
    let p3 = &json["probes"][2]["detail"];
    assert!(p3.as_str().unwrap().contains("another program"), "{json}");
    assert!(verdict(&json).contains("stale PID record"), "{json}");
}

#[test]
fn lock_held_by_a_process_that_is_not_herald() {
    let home = TestHome::new();
    home.home().ensure().unwrap();
    let _lock = InstanceLock::try_acquire(&home.home().lock_file()).unwrap();
    let (code, json) = deep(&home);
    assert_eq!(code, 1, "running (locked) but unhealthy: {json}");
    let failed = failed(&json);
    assert!(failed.contains(&2) && failed.contains(&7), "{json}");
    assert!(
        verdict(&json).contains("not by a verified herald gateway"),
        "{json}"
    );
}

#[test]
fn stale_state_record() {
    let home = TestHome::new();
    let gateway = home.start(&[]);
    // The record is also rewritten on each health change: tamper with it only once those have settled.
    wait_for("the agent and adapters to settle", || {
        home.state().is_some_and(|s| health_settled(&s))
    });
    // Pretend the heartbeat stopped an hour ago (the gateway only rewrites it every 30 s otherwise).
    let mut state = home.state().unwrap();
    state.updated_at_ms -= 3_600_000;
    write_record(&home.home().state_record(), &state).unwrap();
    let (code, json) = deep(&home);
    assert_eq!(code, 1, "{json}");
    assert_eq!(failed(&json), vec![5], "{json}");
    assert!(verdict(&json).contains("state record disagrees"), "{json}");
    assert!(home.output(&["stop"]).status.success());
    assert_eq!(gateway.wait().0, Some(0));
}

/// Freezes every thread of a process (SIGSTOP on Unix; SuspendThread on each thread on Windows) until
/// dropped: the process stays alive, but its event loop cannot run — a wedge, made for real.
struct Frozen(u32);

#[cfg(unix)]
impl Frozen {
    fn freeze(pid: u32) -> Frozen {
        // SAFETY: kill(2) on the worker this test's gateway started.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);
        Frozen(pid)
    }
}

#[cfg(unix)]
impl Drop for Frozen {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.0 as i32, libc::SIGCONT) };
    }
}

#[cfg(windows)]
impl Frozen {
    fn freeze(pid: u32) -> Frozen {
        let suspended = windows_threads::for_each_thread(pid, |thread| {
            // SAFETY: a thread handle opened with THREAD_SUSPEND_RESUME for this call.
            unsafe { windows_sys::Win32::System::Threading::SuspendThread(thread) != u32::MAX }
        });
        assert!(suspended > 0, "no thread of {pid} could be suspended");
        Frozen(pid)
    }
}

#[cfg(windows)]
impl Drop for Frozen {
    fn drop(&mut self) {
        windows_threads::for_each_thread(self.0, |thread| {
            // SAFETY: a thread handle opened with THREAD_SUSPEND_RESUME for this call.
            unsafe { windows_sys::Win32::System::Threading::ResumeThread(thread) != u32::MAX }
        });
    }
}

#[cfg(windows)]
mod windows_threads {
    use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, INVALID_HANDLE_VALUE};
    use windows_sys::Win32::System::Diagnostics::ToolHelp::{
        CreateToolhelp32Snapshot, TH32CS_SNAPTHREAD, THREADENTRY32, Thread32First, Thread32Next,
    };
    use windows_sys::Win32::System::Threading::{OpenThread, THREAD_SUSPEND_RESUME};

    /// Calls `act` with a handle to each thread of process `pid`; returns how many calls succeeded.
    pub fn for_each_thread(pid: u32, mut act: impl FnMut(HANDLE) -> bool) -> usize {
        // SAFETY: a snapshot of all threads; the handle is closed below.
        let snapshot = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0) };
        assert!(
            snapshot != INVALID_HANDLE_VALUE,
            "CreateToolhelp32Snapshot failed"
        );
        let mut entry = THREADENTRY32 {
            dwSize: std::mem::size_of::<THREADENTRY32>() as u32,
            ..Default::default()
        };
        let mut done = 0;
        // SAFETY: `entry` is a valid THREADENTRY32 with dwSize set, as Thread32First/Next require.
        let mut more = unsafe { Thread32First(snapshot, &mut entry) } != 0;
        while more {
            if entry.th32OwnerProcessID == pid {
                // SAFETY: plain OpenThread; a null result is checked.
                let thread = unsafe { OpenThread(THREAD_SUSPEND_RESUME, 0, entry.th32ThreadID) };
                if !thread.is_null() {
                    done += usize::from(act(thread));
                    // SAFETY: the handle was opened above and is closed once.
                    unsafe { CloseHandle(thread) };
                }
            }
            // SAFETY: as for Thread32First.
            more = unsafe { Thread32Next(snapshot, &mut entry) } != 0;
        }
        // SAFETY: the snapshot handle is closed once.
        unsafe { CloseHandle(snapshot) };
        done
    }
}

#[test]
fn wedged_worker_fails_the_ping_while_the_process_lives() {
    let home = TestHome::new();
    let gateway = home.start(&[]);
    let worker = home.worker_pid();
    let frozen = Frozen::freeze(worker);
    let started = std::time::Instant::now();
    let (code, json) = deep(&home);
    let elapsed = started.elapsed();
    assert!(
        elapsed < std::time::Duration::from_secs(3),
        "bounded by the ping timeout: {elapsed:?}"
    );
    assert_eq!(code, 1, "{json}");
    assert_eq!(
        failed(&json),
        vec![7],
        "P4 (liveness) passes, P7 (ping) fails, and so HTTP (P8) is not even asked: {json}"
    );
    assert_eq!(json["probes"][7]["result"], "skip", "{json}");
    assert!(verdict(&json).contains("wedged"), "{json}");
    drop(frozen);
    assert!(home.output(&["stop"]).status.success());
    assert_eq!(gateway.wait().0, Some(0));
}
