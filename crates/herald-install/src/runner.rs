//! Running service-manager commands (`systemctl`, `loginctl`, `launchctl`, `schtasks`): the one place the
//! install code starts a process.
//!
//! **Invariant:** a command's result is its exit code and its output decoded *lossily* (UTF-8 where that
//! is the convention, the console code page on Windows): a localized or garbled output is never a decode
//! error, and no decision is ever taken on localized text — only on exit codes, HRESULTs and the
//! machine-readable `key=value` output of `systemctl`/`loginctl`. Every command has a timeout, after which
//! it is killed and reported as timed out (a wedged `schtasks` must not hang `install`).
//!
//! The program is looked up on `PATH` by this module (with `PATHEXT` on Windows) rather than by the OS,
//! because Windows searches `System32` before `PATH`: tests put recording fakes first on `PATH` and must be
//! the ones that run.

use herald_home::sync::MutexExt;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::plan::Cmd;

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CmdOutput {
    /// The exit code (`None`: killed by a signal, timed out, or could not be started).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    /// The program was not found or could not be started (`stderr` says why).
    pub not_started: bool,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// A one-line summary for error messages: the exit code and the first line of output.
    pub fn summary(&self) -> String {
        let status = if self.timed_out {
            "timed out".to_owned()
        } else if self.not_started {
            "could not be started".to_owned()
        } else {
            match self.code {
                Some(code) => format!("exit code {code} (0x{:08X})", code as u32),
                None => "killed by a signal".to_owned(),
            }
        };
        let first = self
            .stderr
            .lines()
            .chain(self.stdout.lines())
            .map(str::trim)
            .find(|l| !l.is_empty());
        match first {
            Some(line) => format!("{status}: {line}"),
            None => status,
        }
    }
}

/// Runs commands. The real one spawns processes; tests may record instead.
pub trait CommandRunner {
    fn run(&mut self, cmd: &Cmd) -> CmdOutput;
}

/// Spawns the real programs, each with a timeout.
#[derive(Debug, Clone)]
pub struct SystemRunner {
    pub timeout: Duration,
}

impl Default for SystemRunner {
    fn default() -> Self {
        SystemRunner {
            timeout: Duration::from_secs(60),
        }
    }
}

impl CommandRunner for SystemRunner {
    fn run(&mut self, cmd: &Cmd) -> CmdOutput {
        let program = find_program(&cmd.program).unwrap_or_else(|| PathBuf::from(&cmd.program));
        let mut command = Command::new(&program);
        command
            .args(&cmd.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        super::os::no_window(&mut command);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                return CmdOutput {
                    stderr: format!("cannot run {}: {e}", program.display()),
                    not_started: true,
                    ..CmdOutput::default()
                };
            }
        };
        let out = child.stdout.take().map(drain);
        let err = child.stderr.take().map(drain);
        // A bounded wait by `try_wait` steps: the child stays ours (never reaped behind our back), so the
        // kill on timeout can only reach it. Install commands are not on the gateway's paths.
        let deadline = std::time::Instant::now() + self.timeout;
        let (status, timed_out) = loop {
            match child.try_wait() {
                Ok(Some(status)) => break (Some(status), false),
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break (None, true);
                }
                Err(_) => break (None, false),
            }
        };
        // A grandchild may inherit the pipes and outlive the command (under Wine, the console host of a
        // console program does): after the exit, output is collected until the pipes close or a short
        // grace passes, never until EOF at any cost. After a timeout, nothing is waited for.
        let grace = std::time::Instant::now() + if timed_out { Duration::ZERO } else { OUTPUT_GRACE };
        let collect = |reader: Option<Reader>| {
            reader
                .map(|r| r.collect(grace))
                .map(|b| super::os::decode_output(&b))
                .unwrap_or_default()
        };
        CmdOutput {
            code: status.and_then(|s| s.code()),
            stdout: collect(out),
            stderr: collect(err),
            timed_out,
            not_started: false,
        }
    }
}

/// How long output is still read after the command exited, while something else holds its pipes.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// A pipe read on its own thread into a shared buffer, so what arrived can be taken at any moment.
struct Reader {
    bytes: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Reader {
    /// What was read once the pipe closed, or at `deadline` if it is still open then.
    fn collect(self, deadline: std::time::Instant) -> Vec<u8> {
        while !self.thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::mem::take(&mut *self.bytes.lock_unpoisoned())
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> Reader {
    let bytes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&bytes);
    let thread = std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => sink.lock_unpoisoned().extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    });
    Reader { bytes, thread }
}

/// The first `name` (with each `PATHEXT` extension on Windows) in a directory of `PATH`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    if Path::new(name).components().count() > 1 {
        return Some(PathBuf::from(name));
    }
    let path = std::env::var_os("PATH")?;
    let extensions: Vec<OsString> = if cfg!(windows) {
        std::env::var("PATHEXT")
            .unwrap_or_else(|_| ".COM;.EXE;.BAT;.CMD".to_owned())
            .split(';')
            .filter(|e| !e.is_empty())
            .map(|e| e.to_ascii_lowercase().into())
            .collect()
    } else {
        vec![OsString::new()]
    };
    std::env::split_paths(&path).find_map(|dir| {
        extensions.iter().find_map(|ext| {
            let mut file = OsString::from(name);
            file.push(ext);
            let candidate = dir.join(file);
            candidate.is_file().then_some(candidate)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_name_the_code_and_the_first_line() {
        let out = CmdOutput {
            code: Some(-2147024891),
            stderr: "\n  ERROR: Zugriff verweigert\n".into(),
            ..CmdOutput::default()
        };
        assert_eq!(
            out.summary(),
            "exit code -2147024891 (0x80070005): ERROR: Zugriff verweigert"
        );
        assert!(!out.success());
    }

    #[cfg(unix)]
    #[test]
    fn the_real_runner_decodes_lossily_and_times_out() {
        let mut runner = SystemRunner::default();
        let out = runner.run(&Cmd::new("sh", ["-c", "printf 'a\\377b'; exit 3"]));
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout, "a\u{fffd}b");
        runner.timeout = Duration::from_millis(200);
        let out = runner.run(&Cmd::new("sh", ["-c", "sleep 30"]));
        assert!(out.timed_out && out.code.is_none());
        let out = runner.run(&Cmd::new("herald-no-such-program", Vec::<String>::new()));
        assert!(out.not_started);
    }

    /// A command that exits while a process it started keeps its stdout and stderr open (Wine's console
    /// host does this to `schtasks`): its output and code come back after the grace, not when the
    /// grandchild finally exits.
    #[cfg(unix)]
    #[test]
    fn a_grandchild_holding_the_pipes_does_not_hold_up_the_result() {
        let mut runner = SystemRunner::default();
        let started = std::time::Instant::now();
        let out = runner.run(&Cmd::new("sh", ["-c", "echo registered; sleep 20 & exit 4"]));
        let took = started.elapsed();
        assert_eq!(out.code, Some(4));
        assert_eq!(out.stdout.trim(), "registered");
        assert!(!out.timed_out);
        assert!(
            took < OUTPUT_GRACE + Duration::from_secs(3),
            "waited {took:?} for a grandchild's pipes"
        );
    }
}
