//! Stamps `herald --version` with the commit it was built from and that commit's date:
//! `HERALD_BUILD_COMMIT` (short hash) and `HERALD_BUILD_DATE` (YYYY-MM-DD), both `unknown` outside a git
//! checkout (`cargo install` from a published package) or without git.
//!
//! It also sets `HERALD_VERSION`: `HERALD_BUILD_VERSION` when that is set (as `herald_home::VERSION`
//! reads it), else the package version — so `--version` and every other report agree.
//!
//! Invariant: the stamp is reproducible and cheap. The date is the commit's (not the clock's), so two
//! builds of one commit print the same version; and the script reruns only when HEAD moves (the files
//! `HEAD`, the branch's ref and `packed-refs` are watched), not on every build. A dirty tree is not
//! marked: telling would mean watching every source file. Packagers can set both variables themselves.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for name in ["HERALD_BUILD_COMMIT", "HERALD_BUILD_DATE", "HERALD_BUILD_VERSION"] {
        println!("cargo:rerun-if-env-changed={name}");
    }
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    // Only Herald's own checkout: a package unpacked inside someone else's repository is not stamped
    // with their commit (its files are not tracked there).
    let ours = git(&manifest_dir, &["ls-files", "--error-unmatch", "build.rs"]).is_some();
    let from_git = |args: &[&str]| if ours { git(&manifest_dir, args) } else { None };
    let commit = std::env::var("HERALD_BUILD_COMMIT")
        .ok()
        .or_else(|| from_git(&["rev-parse", "--short", "HEAD"]));
    let date = std::env::var("HERALD_BUILD_DATE")
        .ok()
        .or_else(|| from_git(&["log", "-1", "--date=short", "--format=%cd", "HEAD"]));
    println!(
        "cargo:rustc-env=HERALD_BUILD_COMMIT={}",
        commit.unwrap_or_else(|| "unknown".into())
    );
    println!(
        "cargo:rustc-env=HERALD_BUILD_DATE={}",
        date.unwrap_or_else(|| "unknown".into())
    );
    let version = std::env::var("HERALD_BUILD_VERSION")
        .ok()
        .or_else(|| std::env::var("CARGO_PKG_VERSION").ok())
        .unwrap_or_default();
    println!("cargo:rustc-env=HERALD_VERSION={version}");
    if ours {
        watch_head(&manifest_dir);
    }
}

/// The trimmed output of a successful `git ARGS` run in `dir`; `None` if git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// Reruns this script when HEAD moves: a checkout changes `HEAD` (in a worktree, the worktree's own git
/// dir, since `.git` there is a file), a commit changes the branch's ref or `packed-refs` (in the common
/// git dir). Only existing files are named: cargo treats a missing one as always changed.
fn watch_head(dir: &Path) {
    let Some(git_dir) = git(dir, &["rev-parse", "--absolute-git-dir"]).map(PathBuf::from) else {
        return;
    };
    let common_dir = git(dir, &["rev-parse", "--git-common-dir"])
        .map(|p| absolute(dir, PathBuf::from(p)))
        .unwrap_or_else(|| git_dir.clone());
    let head = git_dir.join("HEAD");
    let mut watched = vec![head.clone(), common_dir.join("packed-refs")];
    if let Ok(text) = std::fs::read_to_string(&head)
        && let Some(reference) = text.trim().strip_prefix("ref: ")
    {
        watched.push(git_dir.join(reference));
        watched.push(common_dir.join(reference));
    }
    for path in watched.into_iter().filter(|p| p.is_file()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// `git rev-parse --git-common-dir` may answer relative to the directory it ran in.
fn absolute(base: &Path, path: PathBuf) -> PathBuf {
    if path.is_absolute() { path } else { base.join(path) }
}
