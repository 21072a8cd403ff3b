//! Reloading a running gateway (`herald reload`, SIGHUP on Unix): agent settings apply to the next turn,
//! a config that does not parse changes nothing, and SIGHUP never stops the gateway.

mod support;

use support::{TestHome, post_message, text};

fn echo_config() -> &'static str {
    "[http]\nlisten = \"127.0.0.1:0\"\n"
}

fn command_config() -> String {
    let dir = std::env::temp_dir();
    format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[agent]\nbackend = \"command\"\n[agent.command]\ncommand = [{:?}, {:?}]\n",
        support::test_agent().to_string_lossy(),
        dir.join(format!("herald-reload-{}.log", std::process::id()))
            .to_string_lossy()
    )
}

#[test]
fn a_reload_switches_the_agent_for_the_next_turn_and_a_broken_config_changes_nothing() {
    let home = TestHome::new();
    home.write("herald.toml", echo_config().as_bytes());
    let gateway = home.start(&[]);
    let url = home.http_url();
    let reply = post_message(&url, "r", None, "one", "").json();
    assert_eq!(reply["reply"]["text"], "echo: one", "{reply}");

    home.write("herald.toml", command_config().as_bytes());
    let shown = support::ok(&home.output(&["reload"]));
    assert!(
        shown.contains("applied now: agent.backend, agent.command.command"),
        "{shown}"
    );
    let reply = post_message(&url, "r", None, "two", "").json();
    assert_eq!(reply["reply"]["text"], "agent: two", "{reply}");

    // A config that does not parse: refused with its reason, the gateway keeps its agent.
    home.write("herald.toml", b"[agent]\nbackend = \"nope\"\n");
    let out = home.output(&["reload"]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains("nothing changed"), "{}", text(&out));
    let reply = post_message(&url, "r", None, "three", "").json();
    assert_eq!(reply["reply"]["text"], "agent: three", "{reply}");
    assert!(home.output(&["stop"]).status.success());
    gateway.wait();

    // Not running: exit 3.
    let out = home.output(&["reload"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
}

/// SIGHUP reloads (as nginx and sshd do) and never stops: sent to the supervising monitor — the pid the
/// records name, `$MAINPID` to systemd — it reaches the worker that serves.
#[cfg(unix)]
#[test]
fn sighup_reloads_and_does_not_stop() {
    let home = TestHome::new();
    home.write("herald.toml", echo_config().as_bytes());
    let gateway = home.start(&[]);
    let url = home.http_url();
    let worker = home.worker_pid();
    home.write("herald.toml", command_config().as_bytes());
    gateway.signal(libc::SIGHUP);
    support::wait_for("the reload event", || {
        home.events().iter().any(|e| e.event == "reload")
    });
    let reload = home.events().into_iter().find(|e| e.event == "reload").unwrap();
    assert_eq!(reload.fields["source"], "control_channel", "{reload:?}");
    let reply = post_message(&url, "h", None, "after hup", "").json();
    assert_eq!(reply["reply"]["text"], "agent: after hup", "{reply}");
    // The same worker serves: nothing stopped or restarted.
    assert_eq!(home.worker_pid(), worker);
    assert!(!home.event_names().iter().any(|e| e == "stop_requested"));

    // SIGHUP straight to the serving process is a reload too.
    libc_kill(worker, libc::SIGHUP);
    support::wait_for("a second reload", || {
        home.events().iter().filter(|e| e.event == "reload").count() >= 2
    });
    let last = home.events().into_iter().rfind(|e| e.event == "reload").unwrap();
    assert_eq!(last.fields["source"], "signal:SIGHUP", "{last:?}");
    assert_eq!(home.worker_pid(), worker);
    assert!(home.output(&["stop"]).status.success());
    gateway.wait();
}

#[cfg(unix)]
fn libc_kill(pid: u32, signal: i32) {
    // SAFETY: kill(2) on the test's own gateway worker.
    assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
}
