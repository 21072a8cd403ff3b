//! `herald chat [--session ID] [--new] [MESSAGE]`: talk to the running gateway through its HTTP API.
//!
//! `--new` resets the session (`POST /v1/sessions/{session}/reset`) before the first message, in both the
//! one-shot and the interactive form: the agent then sees nothing said before. A reset of a conversation
//! that has no turn yet changes nothing, so retrying one is harmless.
//!
//! Each message gets an id before it is sent and keeps it across retries, so a gateway that restarts
//! mid-turn (`503 interrupted`, a refused connection while it comes back, a new port) still answers the
//! message exactly once: the retry finds the stored turn instead of making a new one.

use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};

use herald_home::{ExitCode, Home};
use herald_lifecycle::Target;
use herald_lifecycle::status::StatusReport;
use serde_json::{Value, json};

use crate::cli::ChatArgs;

/// How long one message keeps being retried while the gateway restarts.
const RETRY_WINDOW: Duration = Duration::from_secs(60);
const RETRY_STEP: Duration = Duration::from_millis(500);

pub fn chat(target: &Target, args: &ChatArgs) -> ExitCode {
    let home = target.home();
    let token = match token(target) {
        Ok(token) => token,
        Err(code) => return code,
    };
    if let Err(code) = gateway_url(home) {
        return code;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herald: cannot start the async runtime: {e}");
            return ExitCode::Failure;
        }
    };
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(3600))
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            eprintln!("herald: cannot build an HTTP client: {e}");
            return ExitCode::Failure;
        }
    };
    let session = args.session.as_str();
    if args.new {
        let code = runtime.block_on(reset(home, &client, token.as_deref(), session));
        if code != ExitCode::Ok {
            return code;
        }
    }
    let ids = MessageIds::new();
    if !args.message.is_empty() {
        let text = args.message.join(" ");
        return runtime.block_on(send(home, &client, token.as_deref(), session, &ids.next(), &text));
    }
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        let fresh = if args.new { " (a new conversation)" } else { "" };
        eprintln!("herald chat: session {session:?}{fresh}; one message per line, Ctrl+D to end");
    }
    let mut worst = ExitCode::Ok;
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            eprint!("> ");
            let _ = std::io::stderr().flush();
        }
        let Some(line) = lines.next() else { break };
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                eprintln!("herald: cannot read standard input: {e}");
                return ExitCode::Failure;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let code = runtime.block_on(send(home, &client, token.as_deref(), session, &ids.next(), &line));
        if code != ExitCode::Ok {
            worst = code;
            if matches!(code, ExitCode::NotRunning | ExitCode::Config) {
                break;
            }
        }
    }
    worst
}

/// The bearer token the gateway expects, from the same config it reads.
fn token(target: &Target) -> Result<Option<String>, ExitCode> {
    let config = match target.config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("herald: invalid configuration: {e}");
            return Err(ExitCode::Config);
        }
    };
    if !config.http.enabled {
        eprintln!(
            "herald: the HTTP API is disabled ([http] enabled = false), so `herald chat` cannot reach the gateway"
        );
        return Err(ExitCode::Config);
    }
    Ok(match (&config.http.token, &config.http.token_env) {
        (Some(token), _) => Some(token.clone()),
        (None, Some(var)) => std::env::var(var).ok().map(|t| t.trim().to_owned()),
        (None, None) => None,
    })
}

/// The running gateway's HTTP URL, or the exit code after explaining why there is none.
fn gateway_url(home: &Home) -> Result<String, ExitCode> {
    let report = StatusReport::gather(home);
    if let Some(missing) = super::missing_home(home) {
        eprintln!("herald: not running: {missing}");
        return Err(ExitCode::NotRunning);
    }
    if !report.running {
        eprintln!(
            "herald: no gateway is running on {}; start one with `herald start` (background) or `herald run` \
             (foreground)",
            home.root().display()
        );
        return Err(ExitCode::NotRunning);
    }
    report.http_url.ok_or_else(|| {
        eprintln!("herald: the gateway is running but has not published its HTTP address yet; try again");
        ExitCode::Failure
    })
}

/// Sends one message and prints its reply, retrying (same id) while the gateway restarts.
async fn send(
    home: &Home,
    client: &reqwest::Client,
    token: Option<&str>,
    session: &str,
    id: &str,
    text: &str,
) -> ExitCode {
    let body = json!({"text": text, "id": id}).to_string();
    let call = Call {
        home,
        client,
        token,
        path: format!("/v1/sessions/{}/messages", encode_segment(session)),
        body,
        what: "the message",
    };
    match call.post().await {
        Ok((200, payload)) => {
            let reply = payload["reply"]["text"].as_str().unwrap_or_default();
            println!("{reply}");
            if payload["status"] == "failed" {
                ExitCode::Failure
            } else {
                ExitCode::Ok
            }
        }
        Ok(_) => {
            println!("(stored as {id}; the reply will appear in the session history)");
            ExitCode::Ok
        }
        Err(code) => code,
    }
}

/// Starts a new conversation of `session`, retrying while the gateway restarts (a reset repeated
/// changes nothing).
async fn reset(home: &Home, client: &reqwest::Client, token: Option<&str>, session: &str) -> ExitCode {
    let call = Call {
        home,
        client,
        token,
        path: format!("/v1/sessions/{}/reset", encode_segment(session)),
        body: "{}".to_owned(),
        what: "the reset",
    };
    match call.post().await {
        Ok((_, payload)) => {
            tracing::debug!(
                "session {session:?} is at conversation {}",
                payload["conversation"]
            );
            ExitCode::Ok
        }
        Err(code) => code,
    }
}

/// One POST to the gateway, retried with the same body while the gateway restarts (a `503`, a refused
/// connection, a new port).
struct Call<'a> {
    home: &'a Home,
    client: &'a reqwest::Client,
    token: Option<&'a str>,
    path: String,
    body: String,
    what: &'static str,
}

impl Call<'_> {
    /// The status (`2xx`) and JSON body of the answer, or the exit code after saying why there is none.
    async fn post(&self) -> Result<(u16, Value), ExitCode> {
        let deadline = Instant::now() + RETRY_WINDOW;
        loop {
            let url = match gateway_url(self.home) {
                Ok(url) => url,
                Err(code) if Instant::now() < deadline && code != ExitCode::NotRunning => {
                    tokio::time::sleep(RETRY_STEP).await;
                    continue;
                }
                Err(code) => return Err(code),
            };
            let endpoint = format!("{url}{}", self.path);
            let mut request = self
                .client
                .post(&endpoint)
                .header("content-type", "application/json")
                .body(self.body.clone());
            if let Some(token) = self.token {
                request = request.bearer_auth(token);
            }
            let retry = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let payload: Value = response.json_lossy().await;
                    match status {
                        200..=299 => return Ok((status, payload)),
                        503 => payload["message"]
                            .as_str()
                            .unwrap_or("the gateway is busy")
                            .to_owned(),
                        _ => {
                            eprintln!(
                                "herald: the gateway refused {} ({}): {}",
                                self.what,
                                response_status(status),
                                payload["message"].as_str().unwrap_or("no details")
                            );
                            return Err(ExitCode::Failure);
                        }
                    }
                }
                Err(e) => format!("cannot reach {endpoint}: {e}"),
            };
            if Instant::now() >= deadline {
                eprintln!("herald: {retry}; gave up after {}s", RETRY_WINDOW.as_secs());
                return Err(ExitCode::Failure);
            }
            tracing::debug!("{retry}; retrying");
            tokio::time::sleep(RETRY_STEP).await;
        }
    }
}

/// A status code as reqwest prints it (`404 Not Found`).
fn response_status(code: u16) -> String {
    reqwest::StatusCode::from_u16(code).map_or_else(|_| code.to_string(), |s| s.to_string())
}

/// Reads a JSON body, or `null` when it is not JSON.
trait JsonLossy {
    async fn json_lossy(self) -> Value;
}

impl JsonLossy for reqwest::Response {
    async fn json_lossy(self) -> Value {
        match self.bytes().await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }
}

/// Percent-encodes a path segment (session ids are validated by the gateway; this keeps odd input from
/// changing the path).
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b':' | b'@') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Client-side message ids: unique per invocation and process.
struct MessageIds {
    prefix: String,
    counter: std::cell::Cell<u64>,
}

impl MessageIds {
    fn new() -> MessageIds {
        MessageIds {
            prefix: format!("chat-{}-{}", herald_home::time::now_ms(), std::process::id()),
            counter: std::cell::Cell::new(0),
        }
    }

    fn next(&self) -> String {
        let n = self.counter.get() + 1;
        self.counter.set(n);
        format!("{}-{n}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("alice"), "alice");
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }

    #[test]
    fn ids_are_distinct() {
        let ids = MessageIds::new();
        assert_ne!(ids.next(), ids.next());
    }
}
