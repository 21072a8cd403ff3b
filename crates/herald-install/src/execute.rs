//! Carrying out a [`Plan`]: files written atomically, commands run through a [`CommandRunner`], and the
//! outcome-dependent steps ([`Expect`]) judged by exit code.
//!
//! **Invariant:** steps run in order and the first failure stops the plan with a typed error naming the
//! step; nothing is printed here — what was done, and any advice for the user (the exact command to run
//! by hand), is returned in the [`Outcome`]. Files are written with temp file + rename, so a crash never
//! leaves a half-written unit for a service manager to load.

use std::path::Path;
use std::time::{Duration, Instant};

use herald_home::lock::InstanceLock;

pub use super::manage::HookError;
use super::manage::ManageError;
use super::plan::{Cmd, Expect, Plan, Step};
use super::runner::{CmdOutput, CommandRunner};
use super::scm::Scm;
use super::startup::RunKey;

/// Pause between `launchctl bootstrap` attempts that returned 5 (EIO).
const BOOTSTRAP_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// The steps that need the rest of Herald (a planned stop of a gateway running outside the manager, a
/// detached start); the lifecycle layer implements them.
pub trait Hooks {
    fn stop_unmanaged(&mut self) -> Result<(), HookError>;
    fn start_detached(&mut self) -> Result<(), HookError>;
}

/// What happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// One line per step carried out.
    pub done: Vec<String>,
    /// What the user should do by hand (a step that advised on failure).
    pub advice: Vec<String>,
    /// A task registration was refused and the Run value was used instead: why.
    pub fell_back: Option<String>,
}

/// What carries out the steps: commands, the SCM, this user's `Run` key, and the rest of Herald.
pub struct Actors<'a> {
    pub runner: &'a mut dyn CommandRunner,
    pub scm: &'a mut dyn Scm,
    pub run_key: &'a mut dyn RunKey,
    pub hooks: &'a mut dyn Hooks,
}

impl std::fmt::Debug for Actors<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actors").finish_non_exhaustive()
    }
}

/// Carries out `plan`.
pub fn execute(plan: &Plan, actors: &mut Actors<'_>) -> Result<Outcome, ManageError> {
    let mut outcome = Outcome::default();
    run_steps(&plan.steps, actors, &mut outcome)?;
    Ok(outcome)
}

fn run_steps(steps: &[Step], actors: &mut Actors<'_>, outcome: &mut Outcome) -> Result<(), ManageError> {
    for step in steps {
        match step {
            Step::Write {
                path, bytes, mode, ..
            } => {
                write_file(path, bytes, *mode)?;
                outcome.done.push(format!("wrote {}", path.display()));
            }
            Step::Remove { path, .. } => {
                herald_home::atomic::remove_if_exists(path).map_err(|source| ManageError::Remove {
                    path: path.clone(),
                    source,
                })?;
                outcome.done.push(format!("removed {}", path.display()));
            }
            Step::Run { cmd, expect } => run_one(cmd, expect, actors, outcome)?,
            Step::StopUnmanaged => {
                actors.hooks.stop_unmanaged().map_err(ManageError::Hook)?;
                outcome
                    .done
                    .push("stopped the gateway running outside the service manager".to_owned());
            }
            Step::StartDetached => {
                actors.hooks.start_detached().map_err(ManageError::Hook)?;
                outcome.done.push("started the gateway".to_owned());
            }
            Step::WaitStopped { lock, timeout } => {
                // Best effort: a gateway that outlives the wait makes the bootstrap retry on 5.
                let _ = InstanceLock::wait_released(lock, *timeout);
            }
            Step::Scm(op) => {
                let applied = actors.scm.apply(op).map_err(|source| ManageError::Scm {
                    op: op.to_string().lines().next().unwrap_or_default().to_owned(),
                    source,
                })?;
                outcome
                    .done
                    .push(op.to_string().lines().next().unwrap_or_default().to_owned());
                for setting in applied.unsupported {
                    outcome.advice.push(format!(
                        "this Service Control Manager does not support {setting}; it was not set"
                    ));
                }
            }
            Step::RunValue { op, .. } => {
                op.apply(actors.run_key).map_err(|source| ManageError::RunKey {
                    op: op.to_string(),
                    source,
                })?;
                outcome.done.push(op.to_string());
            }
        }
    }
    Ok(())
}

fn failed(cmd: &Cmd, out: &CmdOutput) -> ManageError {
    ManageError::Command {
        cmd: cmd.to_string(),
        summary: out.summary(),
    }
}

fn run_one(
    cmd: &Cmd,
    expect: &Expect,
    actors: &mut Actors<'_>,
    outcome: &mut Outcome,
) -> Result<(), ManageError> {
    let runner = &mut *actors.runner;
    let out = runner.run(cmd);
    outcome.done.push(format!("ran {cmd}"));
    match expect {
        Expect::Success if out.success() => Ok(()),
        Expect::Success => Err(failed(cmd, &out)),
        Expect::AnyExit => Ok(()),
        Expect::Advise { advice } => {
            if !out.success() {
                outcome.advice.push(format!(
                    "`{cmd}` failed ({}); run this yourself: {advice}",
                    out.summary()
                ));
            }
            Ok(())
        }
        Expect::LaunchdBootout => match launchd_bootout(&out) {
            true => Ok(()),
            false => Err(failed(cmd, &out)),
        },
        Expect::LaunchdBootstrap { check, retry_for } => {
            let deadline = Instant::now() + *retry_for;
            let mut out = out;
            loop {
                match launchd_bootstrap(&out) {
                    Bootstrap::Done => return Ok(()),
                    Bootstrap::Retry if Instant::now() < deadline => {
                        std::thread::sleep(BOOTSTRAP_RETRY_PAUSE);
                        out = runner.run(cmd);
                        outcome.done.push(format!("ran {cmd} (retry after exit 5)"));
                    }
                    Bootstrap::Retry => return Err(failed(cmd, &out)),
                    Bootstrap::InProgress => {
                        let shown = runner.run(check);
                        outcome.done.push(format!("ran {check}"));
                        return if shown.success() {
                            Ok(())
                        } else {
                            Err(failed(cmd, &out))
                        };
                    }
                    Bootstrap::NoGuiSession => {
                        return Err(ManageError::NoGuiSession { cmd: cmd.to_string() });
                    }
                    Bootstrap::Failed => return Err(failed(cmd, &out)),
                }
            }
        }
        Expect::TaskRegistration {
            on_success,
            fallback,
            verify,
        } => {
            let confirmed = task_registered(&out)
                || (out.success() && !out.timed_out && verify.as_deref().is_some_and(Path::exists));
            if confirmed {
                run_steps(on_success, actors, outcome)
            } else {
                outcome.fell_back = Some(out.summary());
                run_steps(fallback, actors, outcome)
            }
        }
    }
}

/// What a `launchctl bootstrap` exit code means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bootstrap {
    Done,
    /// 5 (EIO): the previous instance is still exiting.
    Retry,
    /// 37 (EALREADY): maybe already loaded; `launchctl print` decides.
    InProgress,
    /// 125: no GUI session for the domain.
    NoGuiSession,
    Failed,
}

pub fn launchd_bootstrap(out: &CmdOutput) -> Bootstrap {
    match out.code {
        Some(0) => Bootstrap::Done,
        Some(5) => Bootstrap::Retry,
        Some(37) => Bootstrap::InProgress,
        Some(125) => Bootstrap::NoGuiSession,
        _ => Bootstrap::Failed,
    }
}

/// `bootout` succeeded, or there was nothing to boot out (3 ESRCH, 113 "could not find service").
pub fn launchd_bootout(out: &CmdOutput) -> bool {
    matches!(out.code, Some(0 | 3 | 113))
}

/// `schtasks /Create` registered the task: exit 0 with some output. A refusal is a non-zero exit code
/// (`1`, or an HRESULT such as 0x80070005 E_ACCESSDENIED); a timeout or silence is not trusted either
/// (silence is confirmed through the task store by the caller).
pub fn task_registered(out: &CmdOutput) -> bool {
    out.success() && !out.timed_out && !(out.stdout.trim().is_empty() && out.stderr.trim().is_empty())
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ManageError> {
    let err = |source| ManageError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    herald_home::atomic::write_atomic(path, bytes).map_err(|e| err(e.source))?;
    super::os::set_mode(path, mode).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(code: i32) -> CmdOutput {
        CmdOutput {
            code: Some(code),
            ..CmdOutput::default()
        }
    }

    #[test]
    fn exit_codes_are_judged_not_messages() {
        assert_eq!(launchd_bootstrap(&code(5)), Bootstrap::Retry);
        assert_eq!(launchd_bootstrap(&code(37)), Bootstrap::InProgress);
        assert_eq!(launchd_bootstrap(&code(125)), Bootstrap::NoGuiSession);
        assert_eq!(launchd_bootstrap(&code(1)), Bootstrap::Failed);
        assert!(launchd_bootout(&code(113)) && !launchd_bootout(&code(1)));
        let mut ok = code(0);
        assert!(!task_registered(&ok), "silence is not a registration");
        ok.stdout = "ÉXITO: se creó la tarea".into();
        assert!(task_registered(&ok));
        let mut denied = code(0x8007_0005_u32 as i32);
        denied.stdout = "SUCCESS".into();
        assert!(!task_registered(&denied));
        let timed_out = CmdOutput {
            timed_out: true,
            ..CmdOutput::default()
        };
        assert!(!task_registered(&timed_out));
    }
}
