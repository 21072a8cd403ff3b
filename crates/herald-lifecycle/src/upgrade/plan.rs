//! The upgrade plan (`<home>/upgrade/plan.json`): which executable is being replaced by what, where the
//! backup is, and the last step begun.
//!
//! **Invariant:** the plan is written (atomically) *before* each step that changes something, naming
//! that step — so whatever moment an upgrade is killed at, the plan on disk names a step whose effects
//! are either absent or partial, never a step that is behind what happened. `--resume` redoes that step
//! (every step is idempotent) and goes on; `--rollback` undoes what that step may have done.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use herald_home::atomic::Record;

/// An upgrade's steps, in order. `Healthy` and `RolledBack` are the two ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// The candidate was checked; nothing changed yet.
    Validated,
    /// The journal and records are being copied to the backup.
    BackingUp,
    /// The backup is complete.
    BackedUp,
    /// The executables are being swapped (may be half done: `--resume` and `--rollback` look).
    Swapping,
    /// The candidate is in place; the gateway is being restarted.
    Swapped,
    /// The new gateway was started; the health gate runs.
    Restarted,
    /// The new gateway passed the gate. Done.
    Healthy,
    /// The previous executable and data are being put back.
    RollingBack,
    /// The previous version was put back. Done.
    RolledBack,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Validated => "validated",
            Step::BackingUp => "backing_up",
            Step::BackedUp => "backed_up",
            Step::Swapping => "swapping",
            Step::Swapped => "swapped",
            Step::Restarted => "restarted",
            Step::Healthy => "healthy",
            Step::RollingBack => "rolling_back",
            Step::RolledBack => "rolled_back",
        }
    }

    /// Parses [`Self::as_str`]'s names (for the test hook that halts after a step).
    pub fn parse(name: &str) -> Option<Step> {
        [
            Step::Validated,
            Step::BackingUp,
            Step::BackedUp,
            Step::Swapping,
            Step::Swapped,
            Step::Restarted,
            Step::Healthy,
            Step::RollingBack,
            Step::RolledBack,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }

    /// An upgrade at this step is over (nothing to resume).
    pub fn is_final(self) -> bool {
        matches!(self, Step::Healthy | Step::RolledBack)
    }
}

/// One program of the installation: the path it is run from, the copy of the previous version kept
/// beside it, and the candidate's file that replaces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    pub installed: PathBuf,
    pub previous: PathBuf,
    pub staged: PathBuf,
    pub candidate: PathBuf,
}

/// `upgrade/plan.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradePlan {
    pub version: u32,
    /// When it began (ms since the epoch); also the backup folder's name.
    pub id: u64,
    pub step: Step,
    pub from_version: String,
    pub to_version: String,
    /// The journal schema the previous version reads: a journal the new one migrated past it is put
    /// back from the backup on rollback.
    pub from_journal_schema: u32,
    /// `herald` first, then `heraldw` when it is installed beside it.
    pub programs: Vec<Program>,
    pub backup_dir: PathBuf,
    /// Whether a gateway ran when the upgrade began (then one runs after it, whichever version).
    pub was_running: bool,
    /// The byte offset of the gateway's stdio log when the upgrade began: what the new gateway wrote
    /// is what follows.
    pub log_offset: u64,
    /// Why it is being (or was) rolled back.
    #[serde(default)]
    pub rollback_reason: Option<String>,
}

impl Record for UpgradePlan {
    const VERSION: u32 = 1;
    const KIND: &'static str = "upgrade plan";
}

impl UpgradePlan {
    /// The main program (`herald`).
    pub fn herald(&self) -> &Program {
        &self.programs[0]
    }
}
