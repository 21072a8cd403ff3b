//! A plan: every file `herald install`/`uninstall` would write or remove and every command it would run,
//! in order, computed before anything changes.
//!
//! **Invariant:** a plan is data. It is computed by the pure planners in [`super::manage`] from the spec
//! and what is installed now, printed as it is by `--dry-run`, and carried out step by step by
//! [`super::execute`]; so what `--dry-run` shows is exactly what an install does. An empty plan means the
//! registration is already what we would write — a second install changes nothing.
//!
//! Steps whose outcome decides what comes next (a `launchctl bootstrap` that may need retries, a
//! `schtasks /Create` that may be refused and fall back to the Startup folder) carry that decision as an
//! [`Expect`], itself data, so the branch is visible in the plan and testable without running anything.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::scm::ScmOp;
use super::spec::Backend;
use super::startup::RunValueOp;

/// One program invocation. `program` is a bare name (`systemctl`, `launchctl`, `schtasks`) looked up on
/// `PATH` when run, so tests can put recording fakes first on `PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    pub program: String,
    pub args: Vec<String>,
}

impl Cmd {
    pub fn new<I, S>(program: &str, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Cmd {
            program: program.to_owned(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }
}

impl fmt::Display for Cmd {
    /// Shell-like text for people (words with spaces or quotes are single-quoted); never re-parsed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.program)?;
        for arg in &self.args {
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_alphanumeric() || "-_./:@=,+%\\".contains(c));
            if plain {
                write!(f, " {arg}")?;
            } else {
                write!(f, " '{}'", arg.replace('\'', r"'\''"))?;
            }
        }
        Ok(())
    }
}

/// How a command's result is judged, and what follows from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Exit 0, else the plan stops with an error.
    Success,
    /// Best effort (stopping a unit that may not run, disabling one that may not be enabled).
    AnyExit,
    /// Exit 0, else the plan goes on and `advice` (the exact command to run by hand) is reported.
    Advise { advice: String },
    /// `launchctl bootstrap`: 5 (EIO, the previous job still exiting) is retried until `retry_for`
    /// passes; 37 (already in progress) is success when `check` (`launchctl print …`) exits 0; 125 means
    /// there is no GUI login session for the domain.
    LaunchdBootstrap { check: Cmd, retry_for: Duration },
    /// `launchctl bootout`: 3 (ESRCH) and 113 (not loaded) mean the job was not running: success.
    LaunchdBootout,
    /// `schtasks /Create`: exit 0 with output — or, when it prints nothing (Wine), with the task present
    /// in the task store at `verify` — is registration (then `on_success`); a refusal (a non-zero exit
    /// code or HRESULT), a timeout or an unconfirmed silence is not (then `fallback`).
    TaskRegistration {
        on_success: Vec<Step>,
        fallback: Vec<Step>,
        verify: Option<PathBuf>,
    },
}

/// One thing the install does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write `bytes` to `path` atomically (temp file + rename), creating the directory, with Unix `mode`.
    Write {
        path: PathBuf,
        bytes: Vec<u8>,
        /// What `--dry-run` shows (the bytes as text; UTF-16 files decoded).
        text: String,
        mode: u32,
        why: String,
    },
    /// Remove `path` (already gone is fine).
    Remove { path: PathBuf, why: String },
    /// Run a command.
    Run { cmd: Cmd, expect: Expect },
    /// Stop a gateway that runs on this home outside the service manager (started by `herald start` or
    /// by hand), so the manager's gateway is not refused as "already running".
    StopUnmanaged,
    /// Start the gateway detached and supervised, as `herald start` does (the backends that only
    /// autostart at logon: the task and the Run value).
    StartDetached,
    /// Wait until no gateway holds this home's instance lock (after a `bootout`), up to `timeout`.
    WaitStopped { lock: PathBuf, timeout: Duration },
    /// A change through the Windows Service Control Manager's API (create, reconfigure, start, stop,
    /// delete), every parameter in the data.
    Scm(ScmOp),
    /// A change to this user's `Run` value (the Startup fallback): set or delete, every parameter in the
    /// data.
    RunValue { op: RunValueOp, why: String },
}

/// What one install, uninstall or service command does, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// The backend the plan is for (`None`: nothing registered, nothing to do).
    pub backend: Option<Backend>,
    /// What is registered now and why each step is there, for people.
    pub notes: Vec<String>,
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn new(backend: Backend) -> Plan {
        Plan {
            backend: Some(backend),
            ..Plan::default()
        }
    }

    /// Whether carrying it out would change nothing.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    pub fn run(&mut self, cmd: Cmd, expect: Expect) {
        self.steps.push(Step::Run { cmd, expect });
    }

    /// The plan as `--dry-run` prints it: one line per step, file contents indented below a write.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for note in &self.notes {
            out.push_str(&format!("# {note}\n"));
        }
        if self.steps.is_empty() {
            out.push_str("nothing to do: the registration is up to date\n");
        }
        describe_steps(&self.steps, "", &mut out);
        out
    }
}

fn describe_steps(steps: &[Step], indent: &str, out: &mut String) {
    for step in steps {
        match step {
            Step::Write {
                path,
                text,
                mode,
                why,
                bytes,
            } => {
                out.push_str(&format!(
                    "{indent}write {} (mode {mode:04o}, {} bytes): {why}\n",
                    path.display(),
                    bytes.len()
                ));
                for line in text.lines() {
                    out.push_str(&format!("{indent}  | {line}\n"));
                }
            }
            Step::Remove { path, why } => {
                out.push_str(&format!("{indent}remove {}: {why}\n", path.display()));
            }
            Step::Run { cmd, expect } => {
                out.push_str(&format!("{indent}run {cmd}\n"));
                match expect {
                    Expect::Advise { advice } => {
                        out.push_str(&format!("{indent}  (if it fails: run `{advice}`)\n"));
                    }
                    Expect::TaskRegistration {
                        on_success, fallback, ..
                    } => {
                        out.push_str(&format!("{indent}  if registered:\n"));
                        describe_steps(on_success, &format!("{indent}    "), out);
                        out.push_str(&format!(
                            "{indent}  if refused (exit code/HRESULT), timed out or silent:\n"
                        ));
                        describe_steps(fallback, &format!("{indent}    "), out);
                    }
                    _ => {}
                }
            }
            Step::StopUnmanaged => out.push_str(&format!(
                "{indent}stop the gateway running outside the service manager (planned stop)\n"
            )),
            Step::StartDetached => out.push_str(&format!(
                "{indent}start the gateway now, detached and supervised (as `herald start`)\n"
            )),
            Step::WaitStopped { lock, timeout } => out.push_str(&format!(
                "{indent}wait up to {}s for the gateway to exit (lock {})\n",
                timeout.as_secs(),
                lock.display()
            )),
            Step::Scm(op) => {
                for line in op.to_string().lines() {
                    out.push_str(&format!("{indent}{line}\n"));
                }
            }
            Step::RunValue { op, why } => out.push_str(&format!("{indent}{op}: {why}\n")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_display_readably() {
        let cmd = Cmd::new("systemctl", ["--user", "start", "herald.service"]);
        assert_eq!(cmd.to_string(), "systemctl --user start herald.service");
        let cmd = Cmd::new("x", ["a b", "it's", ""]);
        assert_eq!(cmd.to_string(), r"x 'a b' 'it'\''s' ''");
    }

    #[test]
    fn an_empty_plan_says_so() {
        assert!(Plan::new(Backend::Systemd).describe().contains("nothing to do"));
    }
}
