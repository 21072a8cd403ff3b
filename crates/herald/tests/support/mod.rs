//! Test support: the real `herald` binary in a temporary home.
//!
//! Every test gets its own home under a temp dir (on Windows under Wine, a real Windows temp path), runs
//! the built binary as a child process, and reads the same records and logs a user would.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use herald_home::Home;
use herald_home::atomic::{RecordRead, read_record};
use herald_home::lifecycle::{LifecycleEvent, read_events};
use herald_home::records::{GatewayState, PidRecord, StateRecord};

/// Generous: Wine starts processes far slower than Linux.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub struct TestHome {
    _dir: Option<tempfile::TempDir>,
    pub root: PathBuf,
}

impl TestHome {
    /// A home whose config makes the HTTP adapter pick a free port (tests run in parallel).
    pub fn new() -> TestHome {
        let home = TestHome::bare();
        home.write("herald.toml", b"");
        home
    }

    /// A home with no config file at all.
    pub fn bare() -> TestHome {
        let dir = tempfile::Builder::new().prefix("herald-test").tempdir().unwrap();
        let root = dir.path().join("home");
        TestHome {
            _dir: Some(dir),
            root,
        }
    }

    /// A home (not yet created) at `root`, which the caller removes.
    pub fn at(root: &Path) -> TestHome {
        TestHome {
            _dir: None,
            root: root.to_owned(),
        }
    }

    pub fn home(&self) -> Home {
        Home::at(&self.root)
    }

    /// A `herald` command on this home, with a clean environment for the variables herald reads.
    pub fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_of(Path::new(env!("CARGO_BIN_EXE_herald")), args)
    }

    /// [`TestHome::cmd`] with another `herald` executable (a copy the test changes).
    pub fn cmd_of(&self, herald: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(herald);
        cmd.arg("--home").arg(&self.root).args(args);
        cmd.env_remove("HERALD_HOME").env_remove("HERALD_LOG");
        cmd.stdin(Stdio::null());
        cmd
    }

    pub fn output(&self, args: &[&str]) -> Output {
        let mut cmd = self.cmd(args);
        retry_wine_spawn(|| cmd.output())
    }

    /// Starts `herald run` and waits until its state record says `running`.
    pub fn start(&self, extra: &[&str]) -> Gateway {
        let gateway = self.spawn(extra);
        self.wait_running(&gateway);
        gateway
    }

    /// Runs `herald <args>` with the Telegram test token in `HERALD_TEST_TG_TOKEN` (what the Telegram
    /// tests' configs name in `token_env`) and waits until it serves.
    pub fn start_with_token(&self, args: &[&str], token: &str) -> Gateway {
        self.start_with_env(args, &[("HERALD_TEST_TG_TOKEN", token)])
    }

    /// Runs `herald <args>` with `env` added to its environment and waits until it serves.
    pub fn start_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Gateway {
        let mut cmd = self.cmd(args);
        cmd.envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let gateway = Gateway::from_child(retry_wine_spawn(|| cmd.spawn()));
        self.wait_running(&gateway);
        gateway
    }

    /// Starts `herald run` without waiting.
    pub fn spawn(&self, extra: &[&str]) -> Gateway {
        let mut args = vec!["run"];
        args.extend_from_slice(extra);
        let mut cmd = self.cmd(&args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = retry_wine_spawn(|| cmd.spawn());
        Gateway::from_child(child)
    }

    /// Waits until `gateway`'s state record says `running`. A gateway that exits first, or is not running
    /// within [`PATIENCE`], fails the test with what it printed, its state record and its lifecycle log
    /// (a hung one is killed for that), so a failure seen once in CI says why.
    pub fn wait_running(&self, gateway: &Gateway) {
        let pid = gateway.pid();
        let start = Instant::now();
        loop {
            if matches!(self.state(), Some(s) if s.state == GatewayState::Running && s.pid == pid) {
                return;
            }
            let exited = gateway.has_exited();
            if exited || start.elapsed() >= PATIENCE {
                let how = if exited {
                    "exited before it was running"
                } else {
                    "was not running in time (killed)"
                };
                let said = gateway.kill_and_collect();
                let log = std::fs::read_to_string(self.home().lifecycle_log()).unwrap_or_default();
                panic!(
                    "gateway {pid} {how} after {:?}\n--- its output:\n{said}\n--- its state record: {:?}\n\
                     --- the lifecycle log:\n{log}",
                    start.elapsed(),
                    self.state()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn state(&self) -> Option<StateRecord> {
        read_record::<StateRecord>(&self.home().state_record()).present()
    }

    /// The supervised worker serving now, per the state record.
    pub fn worker_pid(&self) -> u32 {
        self.state()
            .and_then(|s| s.worker_pid)
            .expect("a supervised worker")
    }

    /// Waits until a worker other than `old` is running (after a restart).
    pub fn wait_new_worker(&self, old: u32) -> u32 {
        let mut new = 0;
        wait_for(
            &format!("a worker other than {old} to be running"),
            || match self.state() {
                Some(s) if s.state == GatewayState::Running && s.worker_pid.is_some_and(|w| w != old) => {
                    new = s.worker_pid.unwrap();
                    true
                }
                _ => false,
            },
        );
        new
    }

    pub fn pid_record(&self) -> RecordRead<PidRecord> {
        read_record::<PidRecord>(&self.home().pid_record())
    }

    pub fn events(&self) -> Vec<LifecycleEvent> {
        read_events(&self.home().lifecycle_log()).unwrap().0
    }

    pub fn event_names(&self) -> Vec<String> {
        self.events().into_iter().map(|e| e.event).collect()
    }

    pub fn run_dir(&self) -> PathBuf {
        self.home().run_dir()
    }

    /// Writes a file in the home. A `herald.toml` without an `[http]` section gets one that listens on a
    /// free loopback port.
    pub fn write(&self, relative: impl AsRef<Path>, bytes: &[u8]) {
        let relative = relative.as_ref();
        let mut bytes = bytes.to_vec();
        if relative == Path::new("herald.toml") && !bytes.windows(6).any(|w| w == b"[http]") {
            bytes.extend_from_slice(b"\n[http]\nlisten = \"127.0.0.1:0\"\n");
        }
        let path = self.root.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, &bytes).unwrap();
    }

    pub fn status_json(&self) -> (i32, serde_json::Value) {
        let out = self.output(&["status", "--json"]);
        let json = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {}", text(&out)));
        (out.status.code().unwrap(), json)
    }
}

/// A test never leaves a gateway behind, even when it fails half-way (a detached gateway started with
/// `herald start` is nobody's child and would otherwise outlive the test run).
impl Drop for TestHome {
    fn drop(&mut self) {
        if herald_home::lock::InstanceLock::is_held(&self.home().lock_file()).unwrap_or(false) {
            let _ = self
                .cmd(&["stop", "--timeout", "10"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A running `herald run` child. Killed on drop if still running.
pub struct Gateway {
    /// In a mutex so that [`TestHome::wait_running`], which has `&Gateway`, can look at it and, when the
    /// gateway failed to start, take it for its output.
    child: std::sync::Mutex<Option<Child>>,
    pid: u32,
}

impl Gateway {
    /// Adopts a `herald run` child started with a command of one's own (extra environment, say).
    pub fn from_child(child: Child) -> Gateway {
        Gateway {
            pid: child.id(),
            child: std::sync::Mutex::new(Some(child)),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn take(&mut self) -> Child {
        self.child.get_mut().unwrap().take().unwrap()
    }

    /// Waits for exit; returns (exit code, stdout+stderr).
    pub fn wait(mut self) -> (Option<i32>, String) {
        let child = self.take();
        let start = Instant::now();
        let out = wait_with_timeout(child, PATIENCE);
        assert!(start.elapsed() < PATIENCE, "gateway did not exit");
        (out.status.code(), text(&out))
    }

    /// Kills (SIGKILL / TerminateProcess) and reaps the process.
    pub fn kill(mut self) {
        let mut child = self.take();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    pub fn try_exit_code(&mut self) -> Option<Option<i32>> {
        let child = self.child.get_mut().unwrap().as_mut().unwrap();
        child.try_wait().unwrap().map(|s| s.code())
    }

    /// Whether the process has ended (reaped, but its output is still in the pipes).
    fn has_exited(&self) -> bool {
        let mut child = self.child.lock().unwrap();
        child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    /// Ends the process if it still runs and returns what it printed, waiting at most 10 s for its pipes
    /// to close (a grandchild may hold them open).
    fn kill_and_collect(&self) -> String {
        let Some(mut child) = self.child.lock().unwrap().take() else {
            return String::new();
        };
        let _ = child.kill();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(out)) => format!("({:?}) {}", out.status, text(&out)),
            Ok(Err(e)) => format!("(cannot read its output: {e})"),
            Err(_) => "(its output pipes were still open 10 s after it ended)".to_owned(),
        }
    }

    #[cfg(unix)]
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with our own child's pid.
        let rc = unsafe { libc::kill(self.pid() as i32, signal) };
        assert_eq!(rc, 0);
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.get_mut().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_with_timeout(child: Child, timeout: Duration) -> Output {
    let (tx, rx) = std::sync::mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.unwrap(),
        Err(_) => panic!("process {pid} did not exit within {timeout:?}"),
    }
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Both output streams of a command that must have succeeded (else the test fails showing them).
pub fn ok(out: &Output) -> String {
    let all = text(out);
    assert!(out.status.success(), "exit {:?}:\n{all}", out.status.code());
    all
}

/// Runs a spawn of the test's own command, once more (twice at most) when it fails with
/// `ERROR_INTERNAL_ERROR` (1359): Wine's `CreateProcess` fails that way now and then while many processes
/// start at once (seen in CI: a `herald status` the harness ran, and the job-object test's `herald start`).
/// That error comes from the emulator, never from Herald. Every test's own spawn of `herald` (or of itself)
/// goes through here; only that spawn is retried, and any other error fails the test.
pub fn retry_wine_spawn<T>(mut spawn: impl FnMut() -> std::io::Result<T>) -> T {
    let mut attempts = 0;
    loop {
        match spawn() {
            Ok(value) => return value,
            Err(e) if cfg!(windows) && e.raw_os_error() == Some(1359) && attempts < 2 => {
                attempts += 1;
                eprintln!("the test's spawn failed with {e} (Wine); trying again");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("cannot run herald: {e}"),
        }
    }
}

/// Whether the agent and every adapter in `state` have left `starting`. Until then the gateway rewrites
/// its state record on each health change, so a test that compares or tampers with the record waits for
/// this first (the echo agent is judged just after `ready`).
pub fn health_settled(state: &StateRecord) -> bool {
    state
        .agent
        .as_ref()
        .is_some_and(|a| a.state != herald_home::records::HealthState::Starting)
        && state
            .adapters
            .iter()
            .all(|a| a.state != herald_home::records::HealthState::Starting)
}

/// Every document the `test_agent` was given (logged next to `log`), in the order it started them.
pub fn agent_inputs(log: &Path) -> Vec<serde_json::Value> {
    let mut name = log.as_os_str().to_owned();
    name.push(".turns");
    std::fs::read_to_string(PathBuf::from(name))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Polls `condition` every 10 ms until it holds (test-side only; the product never polls like this).
pub fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The lifecycle events of one pid, by name.
pub fn names_for(events: &[LifecycleEvent], pid: u32) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.pid == pid)
        .map(|e| e.event.clone())
        .collect()
}

pub fn find<'a>(events: &'a [LifecycleEvent], pid: u32, name: &str) -> &'a LifecycleEvent {
    events
        .iter()
        .find(|e| e.pid == pid && e.event == name)
        .unwrap_or_else(|| panic!("no {name} event for pid {pid} in {events:#?}"))
}

/// An HTTP response as the tests see it.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request over a fresh connection, written byte for byte (so tests can send anything).
pub fn http(url: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    try_http(url, method, path, headers, body).unwrap_or_else(|e| panic!("{method} {url}{path}: {e}"))
}

/// [`http`], with connection failures and unparsable answers as errors instead of panics.
pub fn try_http(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    use std::io::{Read, Write};
    let authority = url.strip_prefix("http://").expect("an http:// url");
    let mut stream = std::net::TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(PATIENCE))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(request.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    // The server may close early (a rejected oversize body): keep what arrived.
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {text:?}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// Message id → the replies stored for it, from the session's history (a message answered twice shows
/// two; one not answered yet, none).
pub fn replies(url: &str, session: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    let history = http(
        url,
        "GET",
        &format!("/v1/sessions/{session}/messages?limit=1000"),
        &[],
        b"",
    )
    .json();
    let mut replies = std::collections::BTreeMap::<String, Vec<String>>::new();
    for message in history["messages"].as_array().unwrap() {
        let entry = replies
            .entry(message["id"].as_str().unwrap().to_owned())
            .or_default();
        if message["role"] == "assistant" {
            entry.push(message["text"].as_str().unwrap().to_owned());
        }
    }
    replies
}

/// POSTs `{"text": text, "id": id}` to a session and returns the response.
pub fn post_message(url: &str, session: &str, id: Option<&str>, text: &str, query: &str) -> HttpResponse {
    let body = match id {
        Some(id) => serde_json::json!({"text": text, "id": id}),
        None => serde_json::json!({"text": text}),
    };
    http(
        url,
        "POST",
        &format!("/v1/sessions/{session}/messages{query}"),
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

impl TestHome {
    /// The running gateway's HTTP URL, from the state record.
    pub fn http_url(&self) -> String {
        let mut url = None;
        wait_for("the state record to name the HTTP url", || {
            url = self.state().and_then(|s| s.endpoints.http_url);
            url.is_some()
        });
        url.unwrap()
    }
}

/// The `test_agent` example (a stand-in `command` agent that logs each run), built by `cargo test` next
/// to the test binaries.
pub fn test_agent() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    let agent = dir.join(format!("test_agent{}", std::env::consts::EXE_SUFFIX));
    assert!(
        agent.exists(),
        "{} is missing: run the tests with `cargo test`",
        agent.display()
    );
    agent
}

/// A client that keeps posting to a gateway's HTTP API on a thread of its own (a fresh session each
/// time), so a test can show the API answered throughout something else.
pub struct HttpProbe {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Answered>,
}

/// What an [`HttpProbe`] saw.
#[derive(Debug, Default)]
pub struct Answered {
    pub ok: usize,
    /// Every request that was not a 200 within 2 s: what happened.
    pub failures: Vec<String>,
    pub slowest: Duration,
}

impl HttpProbe {
    pub fn start(url: &str) -> HttpProbe {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, url) = (stop.clone(), url.to_owned());
        let thread = std::thread::spawn(move || {
            let mut answered = Answered::default();
            let mut n = 0;
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let sent = Instant::now();
                let body = serde_json::json!({"text": format!("probe {n}")}).to_string();
                let reply = try_http(
                    &url,
                    "POST",
                    &format!("/v1/sessions/probe-{n}/messages"),
                    &[("Content-Type", "application/json")],
                    body.as_bytes(),
                );
                let took = sent.elapsed();
                answered.slowest = answered.slowest.max(took);
                match reply {
                    Ok(r) if r.status == 200 && took < Duration::from_secs(2) => answered.ok += 1,
                    Ok(r) => answered
                        .failures
                        .push(format!("{} after {took:?}: {}", r.status, r.body)),
                    Err(e) => answered.failures.push(format!("{e} after {took:?}")),
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            answered
        });
        HttpProbe { stop, thread }
    }

    pub fn finish(self) -> Answered {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

/// The second build of this tree, with another version string, that upgrade tests install
/// (`ci/build-upgrade-candidate.sh` puts it in `target[/<triple>]/upgrade-candidate/`;
/// `HERALD_UPGRADE_CANDIDATE` names another).
pub fn upgrade_candidate() -> PathBuf {
    if let Some(path) = std::env::var_os("HERALD_UPGRADE_CANDIDATE") {
        return PathBuf::from(path);
    }
    // target[/<triple>]/debug/deps/<test> → target[/<triple>]/upgrade-candidate/herald
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .ancestors()
        .nth(3)
        .unwrap()
        .join("upgrade-candidate")
        .join(format!("herald{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "the upgrade candidate is missing at {}: run `bash ci/build-upgrade-candidate.sh` (with the \
         target triple when cross-building)",
        path.display()
    );
    path
}
