//! `herald upgrade`: replace the installed executable with a candidate, restart the gateway on it through
//! whatever manages the home, and keep it only if it proves healthy — else put the previous version back
//! by itself.
//!
//! The steps ([`plan::Step`]): check the candidate ([`candidate`]) → back up what the new version may
//! migrate (a `VACUUM INTO` snapshot of the journal, the access records) → swap the executables
//! ([`swap`]) → planned stop and start through the manager or a detached start ([`crate::restart`]) → the
//! health gate ([`gate`]) → done, or roll back: stop it, restore the executables, the journal when the
//! new version migrated it past what the old one reads, the access records, start the old version and
//! check it the same way.
//!
//! A journal on a database server (PostgreSQL) is shared by every replica: no snapshot of it could be put
//! back without undoing the others' writes, so an upgrade never changes its schema — a candidate that
//! would migrate it is refused ([`BuildInfo::shared_journal_refusals`]), and a rollback has nothing of it
//! to restore.
//!
//! **Architecture Invariant:** the plan on disk ([`plan::UpgradePlan`]) is written before every step that
//! changes something, and every step is idempotent — so an upgrade killed at any moment leaves a home
//! that `status` explains and that `--resume` finishes or `--rollback` undoes. Service registrations are
//! never touched: they name the installed path, which stays the same.
//!
//! **Architecture Invariant:** this module never links the journal (this crate links neither the gateway
//! nor the daemon): what it does to the journal goes through [`JournalFiles`], which the binary provides.

pub mod candidate;
pub mod gate;
pub mod plan;
pub mod swap;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use herald_home::ExitCode;
use herald_home::atomic::{RecordRead, read_record, write_record};
use herald_home::build_info::BuildInfo;
use herald_home::lifecycle::{EventKind, LifecycleEvent, LifecycleLog, read_events};
use herald_home::lock::InstanceLock;
use herald_home::time::now_ms;

use crate::direct::StopRequest;
use crate::error::LifecycleError;
use crate::target::Target;
use candidate::Refusal;
use plan::{Step, UpgradePlan};

/// For testing recovery: the upgrade process exits at once after the named step's work (before the plan
/// names the next), as a `kill -9` there would leave it. Read only by [`halt_after`].
pub const HALT_AFTER_VARIABLE: &str = "HERALD_UPGRADE_HALT_AFTER";
/// The exit code of such a halt.
pub const HALT_CODE: i32 = 86;
/// Backups of earlier upgrades kept besides the current one.
const KEEP_BACKUPS: usize = 2;

/// What the journal's own crate does for an upgrade (the binary implements it over `herald-journal`).
pub trait JournalFiles {
    /// The journal's schema version; `None` without a journal.
    fn schema_version(&self, path: &Path) -> Result<Option<u32>, String>;
    /// A consistent copy of the journal at `dest`; `false` without a journal.
    fn snapshot(&self, path: &Path, dest: &Path) -> Result<bool, String>;
    /// Puts a snapshot back (no gateway running).
    fn restore(&self, snapshot: &Path, path: &Path) -> Result<(), String>;
    /// The journal the home's config names on a database server (PostgreSQL), read without changing
    /// anything; `None` when the journal is the home's own file.
    fn on_server(&self) -> Result<Option<ServerJournal>, String>;
}

/// A journal on a database server, shared by every replica: see [`BuildInfo::shared_journal_refusals`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerJournal {
    /// Where it is, for people (host, port, database; never the password).
    pub target: String,
    /// Its schema version; `None` when it has no tables yet.
    pub schema: Option<u32>,
}

/// What the caller asks.
#[derive(Debug, Clone)]
pub struct Options {
    /// The new `herald` executable (`heraldw` is taken from beside it).
    pub candidate: PathBuf,
    /// How long the new gateway has to pass the health gate once started.
    pub health_timeout: Duration,
    /// How long a start may take to reach readiness.
    pub start_timeout: Duration,
}

/// What a finished upgrade did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub from: String,
    pub to: String,
    /// The new gateway's pid (`None` when no gateway runs: none ran before, and it was stopped again
    /// after the check).
    pub pid: Option<u32>,
    pub was_running: bool,
    /// The whole upgrade.
    pub took: Duration,
    /// From the stop of the old gateway to the new one's readiness.
    pub restart_took: Option<Duration>,
    /// The health gate.
    pub gate_took: Option<Duration>,
    /// Probes that do not decide the gate but did not pass (agent, adapters, service manager).
    pub warnings: Vec<String>,
    pub previous: PathBuf,
    pub backup_dir: PathBuf,
}

/// What a rollback did: the previous version is back (and serving, when a gateway ran before).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolledBack {
    /// The version taken away, and the one put back.
    pub removed: String,
    pub restored: String,
    /// The step that failed (or was current when the rollback was asked for), and why.
    pub step: String,
    pub why: String,
    /// What the rollback did, in words.
    pub outcome: String,
    /// What the new gateway wrote and its lifecycle events.
    pub evidence: String,
}

/// Why an upgrade did not end with the candidate serving.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("the candidate {} was refused; nothing was changed:\n{}", .0.candidate.display(), bullets(&.0.reasons))]
    Refused(Refusal),
    #[error(
        "an upgrade from {from} to {to} was left unfinished at step {}: run `herald upgrade --resume` to \
         finish it or `herald upgrade --rollback` to undo it",
        .step.as_str()
    )]
    Unfinished { from: String, to: String, step: Step },
    #[error("there is no unfinished upgrade to {0}")]
    NothingTo(&'static str),
    #[error("another `herald upgrade` is running on this home (it holds {0}); wait for it to end")]
    Busy(PathBuf),
    #[error(
        "the upgrade plan {path} cannot be read ({reason}); check the installation by hand, then remove it"
    )]
    BadPlan { path: PathBuf, reason: String },
    #[error("the upgrade failed at {step} before anything was swapped: {why}")]
    Failed { step: &'static str, why: String },
    #[error("the upgrade to {to} failed at {step}: {why}\nrolled back: {outcome}")]
    RolledBack {
        to: String,
        step: String,
        why: String,
        outcome: String,
        /// What the new gateway wrote and its lifecycle events, for the report.
        evidence: String,
    },
    #[error(
        "the upgrade to {to} failed at {step} ({why}), and the rollback failed too: {rollback}\nthe plan \
         is kept: fix the cause, then run `herald upgrade --rollback` again"
    )]
    RollbackFailed {
        to: String,
        step: String,
        why: String,
        rollback: String,
        evidence: String,
    },
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
}

fn bullets(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| format!("  - {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl UpgradeError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            UpgradeError::Unfinished { .. } | UpgradeError::NothingTo(_) | UpgradeError::Busy(_) => {
                ExitCode::Usage
            }
            UpgradeError::Lifecycle(e) => e.exit_code(),
            _ => ExitCode::Failure,
        }
    }

    /// The new gateway's last output and events, when it got that far.
    pub fn evidence(&self) -> Option<&str> {
        match self {
            UpgradeError::RolledBack { evidence, .. } | UpgradeError::RollbackFailed { evidence, .. } => {
                Some(evidence).filter(|e| !e.is_empty()).map(String::as_str)
            }
            _ => None,
        }
    }
}

/// The plan of an upgrade that did not end, if there is one.
pub fn unfinished(home: &herald_home::Home) -> Option<UpgradePlan> {
    read_record::<UpgradePlan>(&home.upgrade_plan())
        .present()
        .filter(|p| !p.step.is_final())
}

/// `status`'s sentence for an upgrade that did not end (one file read; nothing when there is none).
pub fn describe_unfinished(home: &herald_home::Home) -> Option<String> {
    let plan = unfinished(home)?;
    Some(format!(
        "an upgrade from herald {} to {} was cut short at step {} (begun {}): `herald upgrade --resume` \
         finishes it, `herald upgrade --rollback` undoes it",
        plan.from_version,
        plan.to_version,
        plan.step.as_str(),
        herald_home::time::rfc3339_ms(plan.id)
    ))
}

/// Exits the process here when the test hook names `step` (see [`HALT_AFTER_VARIABLE`]).
fn halt_after(step: Step) {
    if std::env::var(HALT_AFTER_VARIABLE).is_ok_and(|v| v == step.as_str()) {
        std::process::exit(HALT_CODE);
    }
}

/// One upgrade (or its resumption, or its rollback) of one home.
pub struct Upgrade<'a> {
    target: Target,
    journal: &'a dyn JournalFiles,
    log: LifecycleLog,
    began: Instant,
    restart_took: Option<Duration>,
    /// Held from the first step to the last: one upgrade of a home at a time.
    lock: Option<InstanceLock>,
}

impl std::fmt::Debug for Upgrade<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgrade")
            .field("home", &self.target.home().root())
            .field("executable", &self.target.executable().ok())
            .finish_non_exhaustive()
    }
}

impl<'a> Upgrade<'a> {
    /// `installed` is the `herald` executable to replace (the caller's own, resolved); starts run it.
    pub fn new(target: Target, installed: PathBuf, journal: &'a dyn JournalFiles) -> Upgrade<'a> {
        let log = LifecycleLog::new(target.home().lifecycle_log());
        Upgrade {
            target: target.with_executable(installed),
            journal,
            log,
            began: Instant::now(),
            restart_took: None,
            lock: None,
        }
    }

    /// Takes `upgrade/upgrade.lock` (the OS lock the instance lock uses, on a file of its own) for the
    /// rest of this upgrade: a second `herald upgrade` of the home — a watcher left by `--after-exit`
    /// and a hand-typed one, say — is refused instead of interleaving its steps with this one's.
    fn lock(&mut self) -> Result<(), UpgradeError> {
        let home = self.target.home();
        home.ensure().map_err(LifecycleError::from)?;
        home.ensure_private_dir(&home.upgrade_dir())
            .map_err(LifecycleError::from)?;
        let path = home.upgrade_dir().join("upgrade.lock");
        match InstanceLock::try_acquire(&path) {
            Ok(lock) => {
                self.lock = Some(lock);
                Ok(())
            }
            Err(herald_home::lock::LockError::Held(path)) => Err(UpgradeError::Busy(path)),
            Err(e) => Err(UpgradeError::Failed {
                step: "locking the upgrade",
                why: e.to_string(),
            }),
        }
    }

    fn event(&self, kind: EventKind) -> LifecycleEvent {
        LifecycleEvent::new(kind, std::process::id())
    }

    fn save(&self, plan: &UpgradePlan) -> Result<(), UpgradeError> {
        write_record(&self.target.home().upgrade_plan(), plan).map_err(|e| UpgradeError::Failed {
            step: "writing the plan",
            why: e.to_string(),
        })
    }

    fn read_plan(&self) -> Result<Option<UpgradePlan>, UpgradeError> {
        let path = self.target.home().upgrade_plan();
        match read_record::<UpgradePlan>(&path) {
            RecordRead::Present(plan) => Ok(Some(plan)),
            RecordRead::Missing => Ok(None),
            RecordRead::Invalid { reason } => Err(UpgradeError::BadPlan { path, reason }),
        }
    }

    fn installed(&self) -> Result<PathBuf, UpgradeError> {
        Ok(self.target.executable()?)
    }

    /// `herald upgrade --from CANDIDATE`: checks it against `this` build and the home, then runs every
    /// step.
    pub fn run(mut self, this: &BuildInfo, options: &Options) -> Result<Report, UpgradeError> {
        self.lock()?;
        if let Some(plan) = self.read_plan()?.filter(|p| !p.step.is_final()) {
            return Err(UpgradeError::Unfinished {
                from: plan.from_version,
                to: plan.to_version,
                step: plan.step,
            });
        }
        let home = self.target.home().clone();
        let installed = self.installed()?;
        let refused = |reasons: Vec<String>| Refusal {
            candidate: options.candidate.clone(),
            reasons,
        };
        let reading = |why| UpgradeError::Failed {
            step: "reading the journal's schema",
            why,
        };
        let home_schema = self
            .journal
            .schema_version(&home.journal_file())
            .map_err(reading)
            .and_then(|schema| Ok((schema, self.journal.on_server().map_err(reading)?)));
        let checked = home_schema.and_then(|(schema, server)| {
            let info = candidate::probe(&options.candidate, this).map_err(UpgradeError::Refused)?;
            let mut reasons = this.refusals(&info, schema);
            if let Some(server) = &server {
                reasons.extend(this.shared_journal_refusals(&info, &server.target, server.schema));
            }
            let same =
                std::fs::canonicalize(&options.candidate).ok() == std::fs::canonicalize(&installed).ok();
            if same {
                reasons.push("it is the installed executable itself".into());
            }
            if let Some(why) = runs_elsewhere(&home, &installed) {
                reasons.push(why);
            }
            let programs = swap::programs(&installed, &options.candidate)
                .map_err(|why| reasons.push(why))
                .unwrap_or_default();
            if reasons.is_empty() {
                Ok((info, programs))
            } else {
                Err(UpgradeError::Refused(refused(reasons)))
            }
        });
        let (info, programs) = match checked {
            Ok(checked) => checked,
            Err(e) => {
                if let UpgradeError::Refused(refusal) = &e {
                    let _ = self.log.append(
                        &self
                            .event(EventKind::UpgradeRefused)
                            .with("candidate", options.candidate.display().to_string())
                            .with("reasons", refusal.reasons.clone()),
                    );
                }
                return Err(e);
            }
        };
        prune_backups(&home.upgrade_dir(), KEEP_BACKUPS);
        let id = now_ms();
        let plan = UpgradePlan {
            version: 1,
            id,
            step: Step::Validated,
            from_version: this.version.clone(),
            to_version: info.version.clone(),
            from_journal_schema: this.journal_schema,
            programs,
            backup_dir: home.upgrade_dir().join(id.to_string()),
            was_running: InstanceLock::is_held(&home.lock_file()).unwrap_or(false),
            log_offset: std::fs::metadata(home.stdio_log()).map_or(0, |m| m.len()),
            rollback_reason: None,
        };
        self.save(&plan)?;
        let _ = self.log.append(
            &self
                .event(EventKind::UpgradeBegin)
                .with("from_version", plan.from_version.as_str())
                .with("to_version", plan.to_version.as_str())
                .with("candidate", options.candidate.display().to_string())
                .with("executable", installed.display().to_string())
                .with("was_running", plan.was_running),
        );
        halt_after(Step::Validated);
        self.drive(plan, options)
    }

    /// `herald upgrade --resume`: goes on from the step the plan names.
    pub fn resume(mut self, options: &Options) -> Result<Report, UpgradeError> {
        self.lock()?;
        let plan = self
            .read_plan()?
            .filter(|p| !p.step.is_final())
            .ok_or(UpgradeError::NothingTo("resume"))?;
        let _ = self.log.append(
            &self
                .event(EventKind::UpgradeBegin)
                .with("from_version", plan.from_version.as_str())
                .with("to_version", plan.to_version.as_str())
                .with("resumed_at", plan.step.as_str()),
        );
        self.drive(plan, options)
    }

    /// `herald upgrade --rollback`: undoes an unfinished upgrade, or the last one that finished.
    pub fn rollback(mut self, options: &Options) -> Result<RolledBack, UpgradeError> {
        self.lock()?;
        let plan = self
            .read_plan()?
            .filter(|p| p.step != Step::RolledBack)
            .ok_or(UpgradeError::NothingTo("roll back"))?;
        let why = plan
            .rollback_reason
            .clone()
            .unwrap_or_else(|| "asked for (herald upgrade --rollback)".into());
        let step = plan.step.as_str().to_owned();
        self.roll_back(plan, &step, why, options)
    }

    /// A rollback after a failed step, as the error the upgrade ends with.
    fn failed_at(&mut self, plan: UpgradePlan, step: &str, why: String, options: &Options) -> UpgradeError {
        match self.roll_back(plan, step, why, options) {
            Ok(done) => UpgradeError::RolledBack {
                to: done.removed,
                step: done.step,
                why: done.why,
                outcome: done.outcome,
                evidence: done.evidence,
            },
            Err(e) => e,
        }
    }

    fn drive(&mut self, mut plan: UpgradePlan, options: &Options) -> Result<Report, UpgradeError> {
        loop {
            match plan.step {
                Step::Validated | Step::BackingUp => {
                    plan.step = Step::BackingUp;
                    self.save(&plan)?;
                    if let Err(why) = self.back_up(&plan) {
                        plan.step = Step::RolledBack;
                        plan.rollback_reason = Some(format!("backup: {why}"));
                        self.save(&plan)?;
                        return Err(UpgradeError::Failed { step: "backup", why });
                    }
                    halt_after(Step::BackingUp);
                    plan.step = Step::BackedUp;
                    self.save(&plan)?;
                    halt_after(Step::BackedUp);
                }
                Step::BackedUp | Step::Swapping => {
                    plan.step = Step::Swapping;
                    self.save(&plan)?;
                    if let Err(why) = self.swap_in(&plan) {
                        return Err(self.failed_at(plan, "swap", why, options));
                    }
                    halt_after(Step::Swapping);
                    plan.step = Step::Swapped;
                    self.save(&plan)?;
                    let _ = self.log.append(
                        &self
                            .event(EventKind::UpgradeSwap)
                            .with("from_version", plan.from_version.as_str())
                            .with("to_version", plan.to_version.as_str())
                            .with("executable", plan.herald().installed.display().to_string())
                            .with("previous", plan.herald().previous.display().to_string()),
                    );
                    halt_after(Step::Swapped);
                }
                Step::Swapped => {
                    let began = Instant::now();
                    let restarted = if plan.was_running {
                        crate::restart::restart(&self.target, options.start_timeout).map(|_| ())
                    } else {
                        crate::start::start(&self.target, options.start_timeout).map(|_| ())
                    };
                    if let Err(e) = restarted {
                        if let LifecycleError::NotReady { pid, .. } = &e {
                            // It "keeps starting in the background": were it ever ready, it would
                            // fight the restored version for the home.
                            end_unready(*pid, &plan.herald().installed);
                        }
                        return Err(self.failed_at(plan, "restart", e.to_string(), options));
                    }
                    self.restart_took = Some(began.elapsed());
                    plan.step = Step::Restarted;
                    self.save(&plan)?;
                    halt_after(Step::Restarted);
                }
                Step::Restarted => {
                    let healthy =
                        match gate::wait_healthy(&self.target, &plan.to_version, options.health_timeout) {
                            Ok(healthy) => healthy,
                            Err(why) => return Err(self.failed_at(plan, "health gate", why, options)),
                        };
                    plan.step = Step::Healthy;
                    self.save(&plan)?;
                    let _ = self.log.append(
                        &self
                            .event(EventKind::UpgradeHealthy)
                            .with("from_version", plan.from_version.as_str())
                            .with("to_version", plan.to_version.as_str())
                            .with("gateway_pid", healthy.pid)
                            .with("gate_ms", healthy.after.as_millis() as u64)
                            .with("warnings", healthy.warnings.clone()),
                    );
                    let mut pid = Some(healthy.pid);
                    if !plan.was_running {
                        // It was started only to be checked: leave the home as it was found.
                        crate::stop::stop(&self.target, &StopRequest::planned("herald upgrade"))?;
                        pid = None;
                    }
                    for program in &plan.programs {
                        let _ = herald_home::atomic::remove_if_exists(&program.staged);
                    }
                    return Ok(Report {
                        from: plan.from_version.clone(),
                        to: plan.to_version.clone(),
                        pid,
                        was_running: plan.was_running,
                        took: self.began.elapsed(),
                        restart_took: self.restart_took,
                        gate_took: Some(healthy.after),
                        warnings: healthy.warnings,
                        previous: plan.herald().previous.clone(),
                        backup_dir: plan.backup_dir.clone(),
                    });
                }
                Step::RollingBack => {
                    let why = plan
                        .rollback_reason
                        .clone()
                        .unwrap_or_else(|| "an earlier rollback was cut short".into());
                    return Err(self.failed_at(plan, "rollback", why, options));
                }
                Step::Healthy | Step::RolledBack => return Err(UpgradeError::NothingTo("resume")),
            }
        }
    }

    /// A snapshot of the journal and a copy of the access records in the plan's backup folder.
    fn back_up(&self, plan: &UpgradePlan) -> Result<(), String> {
        let home = self.target.home();
        let dir = &plan.backup_dir;
        home.ensure_private_dir(dir).map_err(|e| e.to_string())?;
        let journal = dir.join("state.db");
        herald_home::atomic::remove_if_exists(&journal).map_err(|e| e.to_string())?;
        self.journal.snapshot(&home.journal_file(), &journal)?;
        let access = home.access_dir();
        if access.is_dir() {
            let copy = dir.join("access");
            home.ensure_private_dir(&copy).map_err(|e| e.to_string())?;
            copy_files(&access, &copy).map_err(|e| format!("cannot copy {}: {e}", access.display()))?;
        }
        Ok(())
    }

    /// Stages and swaps every program; a program already holding the candidate is left alone (a swap
    /// that was done before a kill).
    fn swap_in(&self, plan: &UpgradePlan) -> Result<(), String> {
        for program in &plan.programs {
            if swap::same_content(&program.installed, &program.candidate).unwrap_or(false) {
                continue;
            }
            swap::stage(program).map_err(|e| {
                format!(
                    "cannot copy the candidate beside {}: {e}",
                    program.installed.display()
                )
            })?;
            swap::swap(program)
                .map_err(|e| format!("cannot replace {}: {e}", program.installed.display()))?;
        }
        Ok(())
    }

    /// Puts the previous version back and starts it when a gateway ran before (and checks it);
    /// [`UpgradeError::RollbackFailed`] when that could not be done.
    fn roll_back(
        &mut self,
        mut plan: UpgradePlan,
        step: &str,
        why: String,
        options: &Options,
    ) -> Result<RolledBack, UpgradeError> {
        let evidence = self.evidence(&plan);
        plan.step = Step::RollingBack;
        plan.rollback_reason = Some(format!("{step}: {why}"));
        let failed = |rollback: String, plan: &UpgradePlan| UpgradeError::RollbackFailed {
            to: plan.to_version.clone(),
            step: step.to_owned(),
            why: why.clone(),
            rollback,
            evidence: evidence.clone(),
        };
        if let Err(e) = self.save(&plan) {
            return Err(failed(e.to_string(), &plan));
        }
        let home = self.target.home().clone();
        // 1. Nothing of the new version may run while its files are put back.
        if InstanceLock::is_held(&home.lock_file()).unwrap_or(false)
            && let Err(e) =
                crate::stop::stop(&self.target, &StopRequest::planned("herald upgrade (rollback)"))
        {
            return Err(failed(format!("cannot stop the new gateway: {e}"), &plan));
        }
        if InstanceLock::is_held(&home.lock_file()).unwrap_or(false) {
            return Err(failed(
                "a gateway still holds the home after the stop".into(),
                &plan,
            ));
        }
        // 2. The executables: only where the candidate is (or nothing is) at the installed path — a
        //    `.prev` beside an executable that was never swapped is an earlier upgrade's.
        let mut restored = Vec::new();
        for program in &plan.programs {
            let swapped = !program.installed.exists()
                || swap::same_content(&program.installed, &program.candidate).unwrap_or(false);
            if swapped {
                match swap::restore(program) {
                    Ok(true) => restored.push(program.installed.display().to_string()),
                    Ok(false) => {}
                    Err(e) => {
                        return Err(failed(
                            format!("cannot put {} back: {e}", program.previous.display()),
                            &plan,
                        ));
                    }
                }
            }
            let _ = herald_home::atomic::remove_if_exists(&program.staged);
        }
        // 3. The journal, when the new version left it where the old one cannot read it.
        let journal = home.journal_file();
        let snapshot = plan.backup_dir.join("state.db");
        let journal_word = match self.journal.schema_version(&journal) {
            Ok(schema) if schema.unwrap_or(0) <= plan.from_journal_schema => {
                "the journal was kept (the previous version reads it)".to_owned()
            }
            found if snapshot.is_file() => {
                let why = match found {
                    Ok(schema) => format!("schema {}", schema.unwrap_or(0)),
                    Err(e) => e,
                };
                if let Err(e) = self.journal.restore(&snapshot, &journal) {
                    return Err(failed(format!("cannot restore the journal: {e}"), &plan));
                }
                format!("the journal was restored from the backup (the new version left it at {why})")
            }
            _ => "the journal could not be checked and there is no backup of it".to_owned(),
        };
        // 4. The access records as they were.
        let access_copy = plan.backup_dir.join("access");
        if access_copy.is_dir()
            && let Err(e) = replace_files(&access_copy, &home.access_dir())
        {
            return Err(failed(format!("cannot restore the access records: {e}"), &plan));
        }
        // 5. The previous version serving again, checked like the new one was.
        let serving = if plan.was_running {
            match crate::start::start(&self.target, options.start_timeout) {
                Err(e) => Err(format!("the previous version does not start: {e}")),
                Ok(_) => gate::wait_healthy(&self.target, &plan.from_version, options.health_timeout)
                    .map(|h| format!("herald {} serves again (pid {})", plan.from_version, h.pid)),
            }
        } else {
            Ok(format!(
                "herald {} is installed again (no gateway was running)",
                plan.from_version
            ))
        };
        let outcome = match &serving {
            Ok(words) => format!("{words}; {journal_word}"),
            Err(e) => format!("the previous version was put back, but {e}; {journal_word}"),
        };
        let _ = self.log.append(
            &self
                .event(EventKind::UpgradeRollback)
                .with("from_version", plan.from_version.as_str())
                .with("to_version", plan.to_version.as_str())
                .with("failed_step", step)
                .with("why", why.as_str())
                .with("restored", restored)
                .with("outcome", outcome.as_str()),
        );
        if let Err(e) = serving {
            return Err(failed(e, &plan));
        }
        plan.step = Step::RolledBack;
        if let Err(e) = self.save(&plan) {
            return Err(failed(e.to_string(), &plan));
        }
        Ok(RolledBack {
            removed: plan.to_version.clone(),
            restored: plan.from_version.clone(),
            step: step.to_owned(),
            why,
            outcome,
            evidence,
        })
    }

    /// What the new gateway wrote since the upgrade began, and the lifecycle events after the swap.
    fn evidence(&self, plan: &UpgradePlan) -> String {
        let home = self.target.home();
        let mut out = String::new();
        let tail = crate::direct::log_tail(&home.stdio_log(), plan.log_offset);
        if !tail.is_empty() {
            out.push_str("the gateway's last output:\n");
            out.push_str(&tail);
        }
        let events = read_events(&home.lifecycle_log())
            .map(|(events, _)| events)
            .unwrap_or_default();
        let since_swap = events
            .iter()
            .rposition(|e| e.event == EventKind::UpgradeSwap.as_str())
            .map_or(&[][..], |at| &events[at + 1..]);
        let shown = &since_swap[since_swap.len().saturating_sub(8)..];
        if !shown.is_empty() {
            out.push_str("lifecycle events since the swap:\n");
            for event in shown {
                let fields = serde_json::Value::Object(event.fields.clone());
                out.push_str(&format!(
                    "  | {} {} pid {} {fields}\n",
                    event.ts, event.event, event.pid
                ));
            }
        }
        out
    }
}

/// Why this upgrade would replace the wrong executable: the running gateway was started from another
/// folder than the `installed` herald's (another copy of herald manages this home).
fn runs_elsewhere(home: &herald_home::Home, installed: &Path) -> Option<String> {
    if !InstanceLock::is_held(&home.lock_file()).unwrap_or(false) {
        return None;
    }
    let record = read_record::<herald_home::records::PidRecord>(&home.pid_record()).present()?;
    let running = PathBuf::from(record.exe?.trim_end_matches(" (deleted)"));
    let folder = |p: &Path| p.parent().and_then(|d| std::fs::canonicalize(d).ok());
    let (theirs, ours) = (folder(&running)?, folder(installed)?);
    (theirs != ours).then(|| {
        format!(
            "the gateway of this home runs {}, not the herald in {}: run the `herald upgrade` of the \
             installation it runs from",
            running.display(),
            ours.display()
        )
    })
}

/// Ends the process a start spawned that never became ready — only while it still is that process
/// (its start time) and runs the installed executable (its command line names it).
fn end_unready(pid: u32, installed: &Path) {
    let herald_process::ProcessProbe::Alive(info) = herald_process::probe(pid) else {
        return;
    };
    let installed = installed.to_string_lossy();
    if !info.cmd.iter().any(|arg| arg.as_str() == installed) {
        return;
    }
    let exe = info.exe.as_ref().map(|p| p.to_string_lossy().into_owned());
    let _ = herald_process::terminate::force_kill_verified(info.key, &info.cmd, exe.as_deref());
}

/// Copies the regular files of `from` (not links, not folders) into `to`, private.
fn copy_files(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            let dest = to.join(entry.file_name());
            herald_home::atomic::remove_if_exists(&dest)?;
            let mut out = herald_home::atomic::private_create(&dest)?;
            std::io::copy(&mut std::fs::File::open(entry.path())?, &mut out)?;
        }
    }
    Ok(())
}

/// Makes the regular files of `to` those of `from`: the others are removed, these copied.
fn replace_files(from: &Path, to: &Path) -> std::io::Result<()> {
    if to.is_dir() {
        for entry in std::fs::read_dir(to)? {
            let entry = entry?;
            if entry.file_type()?.is_file() && !from.join(entry.file_name()).exists() {
                std::fs::remove_file(entry.path())?;
            }
        }
    } else {
        std::fs::create_dir_all(to)?;
    }
    copy_files(from, to)
}

/// Removes the oldest backup folders of `upgrade/` but the newest `keep`.
fn prune_backups(dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut ids: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
        .collect();
    ids.sort();
    let excess = ids.len().saturating_sub(keep);
    for (_, path) in ids.into_iter().take(excess) {
        let _ = std::fs::remove_dir_all(path);
    }
}

/// The longest an `--after-exit` watcher waits for the awaited process.
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// `herald upgrade --after-exit PID`: leaves a detached watcher — outside the caller's job object, so a
/// closing GUI or package manager does not take it along — that runs the upgrade once that exact
/// process (pid and start time) has exited. `None` when it is not running: the caller upgrades now.
pub fn watch_after_exit(target: &Target, pid: u32, options: &Options) -> Result<Option<u32>, LifecycleError> {
    let key = match herald_process::probe(pid) {
        herald_process::ProcessProbe::Alive(info) => info.key,
        _ => return Ok(None),
    };
    let exe = crate::direct::prepare_detached_spawn(target)?;
    let home = target.home();
    let args: Vec<std::ffi::OsString> = vec![
        "--home".into(),
        home.root().into(),
        "upgrade".into(),
        "--from".into(),
        options.candidate.clone().into(),
        "--wait-for".into(),
        format!("{}:{}", key.pid, key.start_time).into(),
        "--health-timeout".into(),
        options.health_timeout.as_secs().to_string().into(),
        "--timeout".into(),
        options.start_timeout.as_secs().to_string().into(),
    ];
    let watcher = herald_process::spawn::spawn_detached(&exe, &args, &home.stdio_log())
        .map_err(LifecycleError::SpawnWatcher)?;
    let watcher_pid = watcher.child.id();
    crate::direct::log_detached_spawn(
        target,
        "watcher_pid",
        watcher_pid,
        watcher.broke_away,
        &[("waits_for_pid", pid)],
    );
    Ok(Some(watcher_pid))
}

/// The watcher's wait: whether the awaited process exited (within a day). When it did not, the
/// refusal is in the lifecycle log (the watcher has no terminal).
pub fn wait_for_exit(target: &Target, key: herald_home::records::ProcessKey) -> bool {
    if herald_process::wait::wait_for_exit(key, MAX_WAIT) {
        return true;
    }
    let _ = LifecycleLog::new(target.home().lifecycle_log()).append(
        &LifecycleEvent::new(EventKind::UpgradeRefused, std::process::id())
            .with("waited_for_pid", key.pid)
            .with(
                "reasons",
                vec![format!("pid {} did not exit within a day", key.pid)],
            ),
    );
    false
}
