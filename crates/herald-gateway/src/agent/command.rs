//! `command`: a local program answers each turn.
//!
//! # The contract with the program
//!
//! For every turn Herald runs the configured program directly (no shell; `command[0]` is the program,
//! the rest its arguments), writes one JSON document to its stdin and closes it:
//!
//! ```json
//! {"session": {"adapter": "http", "chat_id": "abc"}, "turn_id": 7, "turn": 2, "message": "hi",
//!  "history": [{"role": "user", "text": "earlier"}, {"role": "assistant", "text": "reply"}]}
//! ```
//!
//! A message that came with files (a photo, a document, a voice note) also has `"attachments": [{"kind":
//! "photo", "path": "/…/media/…", "mime": "image/jpeg", "name": "cat.jpg", "size": 12345}]` — the files are
//! in the home's media store, readable by the program, and the key is absent when there are none.
//!
//! When the gateway keeps a media store (it always does when run by `herald`), the document also has
//! `"files_dir": "/…/media/out/<turn_id>"`: a private folder of the turn's own, made before the program
//! starts. A program may leave files there for the chat and name them in a JSON reply, `{"reply": "Here
//! is the chart.", "files": ["chart.png"]}` (names relative to `files_dir`, or absolute inside it); the
//! text may then be empty. Each named file must be a regular file inside the folder (no symlink, no `..`)
//! within the media size limit, at most [`outfiles::MAX_FILES`] of them — what is refused is said under the
//! reply, and the rest are sent (see [`outfiles`]).
//!
//! `turn_id` is the journal's id of the turn (unique across sessions), `turn` its number within the
//! session. `history` holds the last `history_messages` messages of the session's current conversation
//! (since its last reset), oldest first, without `message` itself and without the gateway's failure
//! notices. The reply is the program's stdout, read as UTF-8 (invalid bytes become U+FFFD) with trailing
//! line breaks removed; if that text is a JSON object with a string field `reply`, the field is the reply
//! instead, so a program may answer `{"reply": "..."}`. The program succeeds by exiting 0 with a non-blank
//! reply. Anything else is an [`AgentError`]: a non-zero exit is `Failed` with the exit status and the last
//! lines of stderr, a blank reply is `Failed("empty reply")`, a program that cannot be started is
//! `Unavailable`, and a turn that outlives `timeout_secs` is `Timeout`. Stdout is limited to
//! [`MAX_STDOUT`]; a program that writes more is stopped and the turn fails. Only the last
//! [`STDERR_KEPT`] bytes of stderr are kept. The program must not rely on being able to leave anything
//! running: see below.
//!
//! # Invariant: a turn's processes live no longer than the turn
//!
//! Every process the program starts — its children and grandchildren too — is gone when the turn ends:
//! when the program exits (what it left running is killed), when the turn times out, and when the future
//! returned by [`Agent::reply`] is dropped (the gateway stops mid-turn). Otherwise a stuck or chatty agent
//! script would outlive the gateway that started it, hold its pipes open, and pile up across turns.
//!
//! How the tree is tracked is the OS leaf's business (`command/unix.rs`, `command/windows.rs`, same
//! signatures): on Unix the program leads its own process group, which is killed with `SIGKILL` before
//! the leader is reaped (so the group id cannot have been reused); on Windows the program is created
//! suspended, put in a new Job Object and only then resumed (so it cannot start anything outside the
//! job), and the job is terminated. A process that deliberately leaves the group (`setsid`) escapes on
//! Unix; if it keeps our stdout open, the turn ends with `Timeout`, never a hang.
//!
//! Reading never deadlocks: stdin is written, and stdout and stderr are read, concurrently with waiting
//! for the exit, so a program that fills its stderr pipe before reading stdin still finishes.

use std::ffi::OsString;
use std::io;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::outfiles::{self, OutFiles};
use super::{Agent, AgentError, Answer, BoxFuture, Draft, HistoryMessage, TurnRequest};

#[cfg(unix)]
#[path = "command/unix.rs"]
mod os;
#[cfg(windows)]
#[path = "command/windows.rs"]
mod os;

/// The most stdout a turn may produce (1 MiB); a program that writes more is killed.
pub const MAX_STDOUT: usize = 1 << 20;
/// How much of the end of stderr is kept (64 KiB); the rest is read and discarded.
pub const STDERR_KEPT: usize = 64 << 10;
/// How many lines of stderr an error message quotes, at most.
const STDERR_TAIL_LINES: usize = 5;
/// How many characters of stderr an error message quotes, at most.
const STDERR_TAIL_CHARS: usize = 1000;

/// Runs a local program per turn. See the module documentation for the contract.
#[derive(Debug, Clone)]
pub struct CommandAgent {
    program: OsString,
    args: Vec<OsString>,
    timeout: Duration,
    history_messages: usize,
    /// Each line the program writes is shown as the answer so far (`[agent.command] stream`).
    stream: bool,
    /// Where each turn's program may leave files for the chat; `None`: it may not.
    files: Option<OutFiles>,
}

impl CommandAgent {
    /// `command` is the program followed by its arguments (`[agent.command] command`), `timeout` the
    /// per-turn budget and `history_messages` how many earlier messages go on stdin. An empty `command`
    /// is accepted here and reported as `Unavailable` on every turn, so a misconfiguration reaches the
    /// user as a reply rather than stopping the gateway.
    pub fn new(command: Vec<String>, timeout: Duration, history_messages: usize) -> CommandAgent {
        let mut parts = command.into_iter().map(OsString::from);
        CommandAgent {
            program: parts.next().unwrap_or_default(),
            args: parts.collect(),
            timeout,
            history_messages,
            stream: false,
            files: None,
        }
    }

    /// Shows each line the program writes as the answer so far (a draft the chat sees grow).
    #[must_use]
    pub fn streaming(mut self, stream: bool) -> CommandAgent {
        self.stream = stream;
        self
    }

    /// Gives each turn's program a folder of its own (`files_dir`) to leave files for the chat in.
    #[must_use]
    pub fn with_files(mut self, files: OutFiles) -> CommandAgent {
        self.files = Some(files);
        self
    }

    /// The agent `[agent.command]` describes.
    pub fn from_config(config: &herald_home::config::CommandConfig) -> CommandAgent {
        CommandAgent::new(
            config.command.clone(),
            Duration::from_secs(config.timeout_secs),
            config.history_messages,
        )
        .streaming(config.stream)
    }

    async fn run(&self, request: &TurnRequest, draft: Option<&Draft>) -> Result<Answer, AgentError> {
        if self.program.is_empty() {
            return Err(AgentError::Misconfigured("no command is configured".to_owned()));
        }
        let files_dir =
            match &self.files {
                Some(files) => Some(files.prepare(request.turn_id).map_err(|e| {
                    AgentError::Unavailable(format!("cannot make the turn's files folder: {e}"))
                })?),
                None => None,
            };
        let input = stdin_json(request, self.history_messages, files_dir.as_deref());
        // The process tree is killed when `tree` is dropped: on return, on timeout, and when this future
        // is dropped mid-turn.
        let os::Spawned {
            tree,
            stdin,
            stdout,
            stderr,
            exited,
        } = os::spawn(&self.program, &self.args).map_err(|e| start_error(&self.program, &e))?;
        let io_error = |e: io::Error| AgentError::Failed(format!("cannot talk to the command: {e}"));
        let stdin = tokio::process::ChildStdin::from_std(stdin).map_err(io_error)?;
        let stdout = tokio::process::ChildStdout::from_std(stdout).map_err(io_error)?;
        let stderr = tokio::process::ChildStderr::from_std(stderr).map_err(io_error)?;

        let write = async move {
            let mut stdin = stdin;
            // The program may exit without reading its input; a broken pipe is its business, not an error.
            let _ = stdin.write_all(&input).await;
            let _ = stdin.shutdown().await;
            Ok::<(), Stop>(())
        };
        let exit = async move { exited.await.map_err(|_| Stop::Lost)?.map_err(Stop::Wait) };
        let turn = async {
            tokio::try_join!(
                write,
                read_capped(stdout, MAX_STDOUT, draft),
                read_tail(stderr, STDERR_KEPT),
                exit
            )
        };
        let outcome = tokio::time::timeout(self.timeout, turn).await;
        drop(tree);
        match outcome {
            Err(_elapsed) => Err(AgentError::Timeout(self.timeout)),
            Ok(Err(Stop::Overflow)) => Err(AgentError::Failed(format!(
                "the command wrote more than {} MiB to stdout",
                MAX_STDOUT >> 20
            ))),
            Ok(Err(Stop::Lost)) => Err(AgentError::Failed(
                "lost track of the command's process".to_owned(),
            )),
            Ok(Err(Stop::Wait(e))) => Err(AgentError::Failed(format!("cannot wait for the command: {e}"))),
            Ok(Err(Stop::Io(e))) => Err(io_error(e)),
            Ok(Ok(((), out, err, status))) => {
                let output = finish(status, &out, &err)?;
                Ok(self.answer(output, files_dir.as_deref()))
            }
        }
    }

    /// The answer from the program's output: its text, and the files it named that may be sent (the
    /// others said under the text).
    fn answer(&self, output: Output, files_dir: Option<&std::path::Path>) -> Answer {
        let Output {
            text,
            files: names,
            mut refused,
        } = output;
        let files = match (&self.files, files_dir) {
            _ if names.is_empty() => Vec::new(),
            (Some(out), Some(dir)) => {
                let (files, more) = out.collect(dir, &names);
                refused.extend(more);
                files
            }
            _ => {
                refused.push("files were named, but this gateway takes no files from its agent".to_owned());
                Vec::new()
            }
        };
        for line in &refused {
            tracing::warn!("agent command: {line}");
        }
        Answer {
            text: outfiles::with_refusals(text, &refused),
            files,
        }
    }
}

impl Agent for CommandAgent {
    fn name(&self) -> &'static str {
        "command"
    }

    fn wants_history(&self) -> bool {
        self.history_messages > 0
    }

    fn history_limit(&self) -> usize {
        self.history_messages
    }

    fn reply<'a>(&'a self, request: &'a TurnRequest) -> BoxFuture<'a, Result<Answer, AgentError>> {
        Box::pin(self.run(request, None))
    }

    fn streams(&self) -> bool {
        self.stream
    }

    fn reply_drafting<'a>(
        &'a self,
        request: &'a TurnRequest,
        draft: &'a Draft,
    ) -> BoxFuture<'a, Result<Answer, AgentError>> {
        Box::pin(self.run(request, self.stream.then_some(draft)))
    }

    fn probe(&self) -> BoxFuture<'_, Result<String, AgentError>> {
        let resolved = resolve_program(&self.program);
        Box::pin(async move {
            resolved
                .map(|path| format!("the command {} is executable", path.display()))
                .map_err(AgentError::Misconfigured)
        })
    }
}

/// Why a turn stopped before the program's exit was collected.
#[derive(Debug)]
enum Stop {
    /// Stdout passed [`MAX_STDOUT`].
    Overflow,
    /// The waiter went away without an answer.
    Lost,
    /// Waiting for the exit failed.
    Wait(io::Error),
    /// Reading a pipe failed.
    Io(io::Error),
}

/// The JSON document written to the program's stdin: the last `history_messages` of the history.
fn stdin_json(
    request: &TurnRequest,
    history_messages: usize,
    files_dir: Option<&std::path::Path>,
) -> Vec<u8> {
    let skip = request.history.len().saturating_sub(history_messages);
    let history: Vec<serde_json::Value> = request.history[skip..]
        .iter()
        .map(|HistoryMessage { role, text }| serde_json::json!({"role": role.as_str(), "text": text}))
        .collect();
    let mut document = serde_json::json!({
        "session": {"adapter": request.adapter, "chat_id": request.chat_id},
        "turn_id": request.turn_id,
        "turn": request.turn,
        "message": request.message,
        "history": history,
    });
    if !request.attachments.is_empty() {
        document["attachments"] = serde_json::json!(request.attachments);
    }
    if let Some(dir) = files_dir {
        document["files_dir"] = serde_json::json!(dir.to_string_lossy());
    }
    let mut bytes = document.to_string().into_bytes();
    bytes.push(b'\n');
    bytes
}

/// What a program answered: its text, the files it named, and what of its answer cannot be taken.
#[derive(Debug, PartialEq, Eq)]
struct Output {
    text: String,
    files: Vec<String>,
    refused: Vec<String>,
}

/// Turns a finished run into the turn's result.
fn finish(status: ExitStatus, stdout: &[u8], stderr: &[u8]) -> Result<Output, AgentError> {
    if !status.success() {
        let tail = stderr_tail(stderr);
        return Err(AgentError::Failed(if tail.is_empty() {
            format!("the command failed ({status})")
        } else {
            format!("the command failed ({status}): {tail}")
        }));
    }
    extract_reply(stdout)
}

/// The reply in the program's stdout: the text without trailing line breaks, or the `reply` field (and
/// the `files` list) if the text is a JSON object that has a string `reply`.
fn extract_reply(stdout: &[u8]) -> Result<Output, AgentError> {
    let text = String::from_utf8_lossy(stdout);
    let text = text.trim_end_matches(['\n', '\r']);
    let mut output = Output {
        text: text.to_owned(),
        files: Vec::new(),
        refused: Vec::new(),
    };
    if let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_str::<serde_json::Value>(text)
        && let Some(serde_json::Value::String(reply)) = fields.remove("reply")
    {
        output.text = reply;
        match fields.remove("files") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Array(names)) => {
                for name in names {
                    match name {
                        serde_json::Value::String(name) => output.files.push(name),
                        other => output
                            .refused
                            .push(format!("the entry {other} of `files` is not a file name")),
                    }
                }
            }
            Some(other) => output
                .refused
                .push(format!("`files` is not a list of file names: {other}")),
        }
    }
    if output.text.trim().is_empty() && output.files.is_empty() {
        Err(AgentError::Failed("empty reply".to_owned()))
    } else {
        Ok(output)
    }
}

/// The last few non-blank lines of stderr, lossily decoded, joined with ` | ` and bounded in length.
fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let mut lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .rev()
        .take(STDERR_TAIL_LINES)
        .collect();
    lines.reverse();
    let joined = lines.join(" | ");
    let count = joined.chars().count();
    if count <= STDERR_TAIL_CHARS {
        joined
    } else {
        let kept: String = joined.chars().skip(count - (STDERR_TAIL_CHARS - 1)).collect();
        format!("…{kept}")
    }
}

/// Reads everything, failing with [`Stop::Overflow`] as soon as more than `cap` bytes arrive. With a
/// `draft`, every complete line grows it (the output so far, up to its last line break).
async fn read_capped(
    mut pipe: impl AsyncRead + Unpin,
    cap: usize,
    draft: Option<&Draft>,
) -> Result<Vec<u8>, Stop> {
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) => return Ok(out),
            Ok(n) if out.len() + n > cap => return Err(Stop::Overflow),
            Ok(n) => {
                out.extend_from_slice(&chunk[..n]);
                if let Some(draft) = draft
                    && chunk[..n].contains(&b'\n')
                    && let Some(end) = out.iter().rposition(|b| *b == b'\n')
                {
                    draft.grow(String::from_utf8_lossy(&out[..end]).trim_end());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Windows reports the writer's end closing as a broken pipe: that is the end of the data.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(out),
            Err(e) => return Err(Stop::Io(e)),
        }
    }
}

/// Reads everything, keeping only the last `keep` bytes.
async fn read_tail(mut pipe: impl AsyncRead + Unpin, keep: usize) -> Result<Vec<u8>, Stop> {
    let mut tail = Vec::new();
    let mut chunk = vec![0u8; 16 << 10];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => {
                tail.extend_from_slice(&chunk[..n]);
                // Trim only once the buffer is twice the budget, so trimming costs O(1) per byte.
                if tail.len() > 2 * keep {
                    tail.drain(..tail.len() - keep);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => break,
            Err(e) => return Err(Stop::Io(e)),
        }
    }
    if tail.len() > keep {
        tail.drain(..tail.len() - keep);
    }
    Ok(tail)
}

/// The error for a program that could not be started.
fn start_error(program: &OsString, error: &io::Error) -> AgentError {
    let name = program.to_string_lossy();
    match error.kind() {
        // Neither goes away by retrying: the configuration names a program that cannot run.
        io::ErrorKind::NotFound => AgentError::Misconfigured(format!(
            "the command `{name}` was not found ([agent.command] command)"
        )),
        io::ErrorKind::PermissionDenied => AgentError::Misconfigured(format!(
            "the command `{name}` is not executable (permission denied)"
        )),
        _ if os::is_bad_executable(error) => {
            AgentError::Misconfigured(format!("the command `{name}` is not a valid executable"))
        }
        _ => AgentError::Unavailable(format!("cannot start the command `{name}`: {error}")),
    }
}

/// Where `program` is: a name without a directory is looked up on `PATH` (with `PATHEXT` on Windows),
/// as the spawn will; a path must name an executable file. The error says what is wrong and what to do.
pub fn resolve_program(program: &std::ffi::OsStr) -> Result<std::path::PathBuf, String> {
    let name = program.to_string_lossy();
    if program.is_empty() {
        return Err("no command is configured: set [agent.command] command = [\"program\", ...]".to_owned());
    }
    let path = std::path::Path::new(program);
    let has_dir = path.components().count() > 1;
    if !has_dir {
        return which::which(program).map_err(|_| {
            format!(
                "the command `{name}` is not found on PATH (give its full path in [agent.command] command, \
                 or install it)"
            )
        });
    }
    let meta = std::fs::metadata(path).map_err(|e| format!("the command `{name}` cannot be used: {e}"))?;
    if !meta.is_file() {
        return Err(format!("the command `{name}` is not a file"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(format!(
                "the command `{name}` is not executable: run `chmod +x '{name}'`"
            ));
        }
    }
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::Role;

    fn request(history: usize) -> TurnRequest {
        TurnRequest {
            adapter: "http".to_owned(),
            chat_id: "chat-1".to_owned(),
            turn_id: 42,
            turn: 3,
            message: "héllo \"there\"\n".to_owned(),
            history: (0..history)
                .map(|i| HistoryMessage {
                    role: if i % 2 == 0 { Role::User } else { Role::Assistant },
                    text: format!("m{i}"),
                })
                .collect(),
            attachments: Vec::new(),
        }
    }

    #[test]
    fn stdin_json_has_the_documented_shape_and_the_last_history_entries() {
        let bytes = stdin_json(&request(5), 2, None);
        assert_eq!(bytes.last(), Some(&b'\n'));
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "session": {"adapter": "http", "chat_id": "chat-1"},
                "turn_id": 42,
                "turn": 3,
                "message": "héllo \"there\"\n",
                "history": [{"role": "assistant", "text": "m3"}, {"role": "user", "text": "m4"}],
            })
        );
    }

    #[test]
    fn stdin_json_names_the_turns_files_folder_when_there_is_one() {
        let dir = std::path::Path::new("/home/u/.herald/media/out/42");
        let value: serde_json::Value =
            serde_json::from_slice(&stdin_json(&request(0), 0, Some(dir))).unwrap();
        assert_eq!(value["files_dir"], "/home/u/.herald/media/out/42");
    }

    #[test]
    fn stdin_json_history_limits() {
        let all: serde_json::Value = serde_json::from_slice(&stdin_json(&request(3), 50, None)).unwrap();
        assert_eq!(all["history"].as_array().unwrap().len(), 3);
        let none: serde_json::Value = serde_json::from_slice(&stdin_json(&request(3), 0, None)).unwrap();
        assert_eq!(none["history"], serde_json::json!([]));
    }

    #[test]
    fn reply_is_stdout_without_trailing_line_breaks() {
        assert_eq!(extract_reply(b"hello\n").unwrap().text, "hello");
        assert_eq!(extract_reply(b"  two\nlines\r\n\n").unwrap().text, "  two\nlines");
    }

    #[test]
    fn reply_field_of_a_json_object_wins() {
        assert_eq!(
            extract_reply(br#"{"reply": "from json", "x": 1}"#).unwrap().text,
            "from json"
        );
        assert_eq!(extract_reply(b"{\"reply\":\"a\\nb\"}\n").unwrap().text, "a\nb");
        // Not a string field, not an object, or not JSON at all: the text itself.
        assert_eq!(extract_reply(br#"{"reply": 5}"#).unwrap().text, r#"{"reply": 5}"#);
        assert_eq!(extract_reply(br#"["reply"]"#).unwrap().text, r#"["reply"]"#);
        assert_eq!(extract_reply(b"{not json").unwrap().text, "{not json");
    }

    #[test]
    fn a_json_reply_may_name_files_and_then_be_empty() {
        let output = extract_reply(br#"{"reply": "", "files": ["a.png", 7, "b/c.pdf"]}"#).unwrap();
        assert_eq!(output.text, "");
        assert_eq!(output.files, vec!["a.png".to_owned(), "b/c.pdf".to_owned()]);
        assert_eq!(
            output.refused,
            vec!["the entry 7 of `files` is not a file name".to_owned()]
        );
        let odd = extract_reply(br#"{"reply": "hi", "files": "a.png"}"#).unwrap();
        assert!(odd.files.is_empty());
        assert_eq!(odd.refused.len(), 1, "{odd:?}");
        assert_eq!(
            extract_reply(br#"{"reply": " ", "files": []}"#),
            Err(AgentError::Failed("empty reply".to_owned()))
        );
    }

    #[test]
    fn files_named_without_a_media_store_are_refused_under_the_text() {
        let agent = CommandAgent::new(vec!["x".into()], Duration::from_secs(1), 0);
        let answer = agent.answer(
            Output {
                text: "Here.".into(),
                files: vec!["a.png".into()],
                refused: Vec::new(),
            },
            None,
        );
        assert!(answer.files.is_empty());
        assert_eq!(
            answer.text,
            "Here.\n\n(Herald: files were named, but this gateway takes no files from its agent)"
        );
    }

    #[test]
    fn blank_replies_are_failures() {
        for blank in [&b""[..], b"\n", b"  \r\n", br#"{"reply": " "}"#] {
            assert_eq!(
                extract_reply(blank),
                Err(AgentError::Failed("empty reply".to_owned()))
            );
        }
    }

    #[test]
    fn invalid_utf8_is_replaced_not_an_error() {
        assert_eq!(
            extract_reply(b"ok \xff\xfe end\n").unwrap().text,
            "ok \u{fffd}\u{fffd} end"
        );
    }

    #[test]
    fn stderr_tail_keeps_the_last_non_blank_lines() {
        let stderr = b"one\ntwo\n\nthree\nfour\nfive\nsix  \n\n";
        assert_eq!(stderr_tail(stderr), "two | three | four | five | six");
        assert_eq!(stderr_tail(b""), "");
        assert_eq!(stderr_tail(b"bad \xff byte"), "bad \u{fffd} byte");
    }

    #[test]
    fn stderr_tail_is_bounded() {
        let long = "é".repeat(5000);
        let tail = stderr_tail(long.as_bytes());
        assert_eq!(tail.chars().count(), STDERR_TAIL_CHARS);
        assert!(tail.starts_with('…'));
    }

    #[tokio::test]
    async fn read_capped_stops_past_the_cap() {
        let data = [b'x'; 100];
        assert_eq!(read_capped(&data[..], 100, None).await.unwrap().len(), 100);
        assert!(matches!(
            read_capped(&data[..], 99, None).await,
            Err(Stop::Overflow)
        ));
    }

    #[tokio::test]
    async fn read_tail_keeps_the_end() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let tail = read_tail(&data[..], 1000).await.unwrap();
        assert_eq!(tail, &data[data.len() - 1000..]);
    }

    #[test]
    fn failed_exit_quotes_status_and_stderr() {
        #[cfg(unix)]
        let status = std::os::unix::process::ExitStatusExt::from_raw(3 << 8);
        #[cfg(windows)]
        let status = std::os::windows::process::ExitStatusExt::from_raw(3);
        let Err(AgentError::Failed(why)) = finish(status, b"ignored", b"warning\nfatal: boom\n") else {
            panic!("expected a failure");
        };
        assert!(why.contains('3'), "{why}");
        assert!(why.ends_with("warning | fatal: boom"), "{why}");
    }

    #[test]
    fn empty_command_is_misconfigured() {
        let agent = CommandAgent::new(Vec::new(), Duration::from_secs(1), 5);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt.block_on(agent.reply(&request(0))).unwrap_err();
        assert!(matches!(err, AgentError::Misconfigured(_)), "{err:?}");
        assert!(agent.wants_history());
        assert_eq!(agent.name(), "command");
    }
}
