//! Putting the candidate in place of the installed executables, and the previous ones back.
//!
//! **Invariant:** the installed path never names a half-written file: the candidate is first copied
//! *beside* it (`herald.new`, same folder, so the same file system) and synced, then renamed over it.
//! The previous executable is kept as `herald.prev` before that rename — on Unix as a hard link (a copy
//! where links are refused), so the installed path is replaced in one atomic rename and never missing; on
//! Windows by renaming the running `.exe` aside (allowed while it runs, unlike replacing it), which
//! leaves the path empty for the instant between two renames. Each function is idempotent, so a step cut
//! short by a kill is simply done again.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::plan::Program;

/// `herald` → `herald.prev`, `herald.exe` → `herald.prev.exe` (still runnable on Windows).
fn beside(installed: &Path, tag: &str) -> PathBuf {
    let name = installed
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let suffix = std::env::consts::EXE_SUFFIX;
    let renamed = match name.strip_suffix(suffix).filter(|_| !suffix.is_empty()) {
        Some(stem) => format!("{stem}.{tag}{suffix}"),
        None => format!("{name}.{tag}"),
    };
    installed.with_file_name(renamed)
}

/// The programs an upgrade replaces: `herald` itself, and `heraldw` when one is installed beside it —
/// then the candidate must bring its own (else the two would run different versions).
pub fn programs(installed: &Path, candidate: &Path) -> Result<Vec<Program>, String> {
    let program = |installed: &Path, candidate: &Path| Program {
        installed: installed.to_path_buf(),
        previous: beside(installed, "prev"),
        staged: beside(installed, "new"),
        candidate: candidate.to_path_buf(),
    };
    let mut out = vec![program(installed, candidate)];
    let gui = format!("heraldw{}", std::env::consts::EXE_SUFFIX);
    let installed_gui = installed.with_file_name(&gui);
    if installed_gui.is_file() {
        let candidate_gui = candidate.with_file_name(&gui);
        if !candidate_gui.is_file() {
            return Err(format!(
                "{} is installed, and the candidate has no {gui} beside it ({})",
                installed_gui.display(),
                candidate_gui.display()
            ));
        }
        out.push(program(&installed_gui, &candidate_gui));
    }
    Ok(out)
}

/// Whether two files have the same bytes.
pub fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    let (ma, mb) = (fs::metadata(a)?, fs::metadata(b)?);
    if ma.len() != mb.len() {
        return Ok(false);
    }
    Ok(fs::read(a)? == fs::read(b)?)
}

/// Copies the candidate to its staged name beside the installed file, executable and synced. An `.old`
/// an earlier rollback on Windows could not remove (it still ran then) goes now, if nothing runs it.
pub fn stage(program: &Program) -> io::Result<()> {
    let _ = fs::remove_file(beside(&program.installed, "old"));
    herald_home::atomic::remove_if_exists(&program.staged)?;
    fs::copy(&program.candidate, &program.staged)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&program.staged, fs::Permissions::from_mode(0o755))?;
    }
    fs::OpenOptions::new()
        .write(true)
        .open(&program.staged)?
        .sync_all()
}

/// Keeps the installed executable as the previous one (replacing an older `.prev`), then renames the
/// staged candidate over the installed path. When the installed path is already gone (a Windows swap
/// cut between its two renames), the previous one is already kept.
pub fn swap(program: &Program) -> io::Result<()> {
    if program.installed.exists() {
        herald_home::atomic::remove_if_exists(&program.previous)?;
        keep_previous(&program.installed, &program.previous)?;
    }
    fs::rename(&program.staged, &program.installed)?;
    sync_dir(&program.installed);
    Ok(())
}

#[cfg(unix)]
fn keep_previous(installed: &Path, previous: &Path) -> io::Result<()> {
    match fs::hard_link(installed, previous) {
        Ok(()) => Ok(()),
        // Some file systems refuse links: a copy keeps the same bytes.
        Err(_) => fs::copy(installed, previous).map(|_| ()),
    }
}

#[cfg(windows)]
fn keep_previous(installed: &Path, previous: &Path) -> io::Result<()> {
    // A running .exe cannot be replaced or deleted, but it can be renamed.
    fs::rename(installed, previous)
}

/// Puts the previous executable back at the installed path, when there is one. Returns whether it did.
/// The installed file may be running — it is the `herald upgrade --rollback` doing this, when that was
/// started from the new build.
pub fn restore(program: &Program) -> io::Result<bool> {
    if !program.previous.exists() {
        return Ok(false);
    }
    replace(&program.previous, &program.installed)?;
    sync_dir(&program.installed);
    herald_home::atomic::remove_if_exists(&program.staged).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot remove {}: {e}", program.staged.display()),
        )
    })?;
    Ok(true)
}

/// Renames `from` over `to`: one atomic rename on Unix, running or not.
#[cfg(unix)]
fn replace(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)
}

/// Renames `from` over `to`. Windows will not replace a running `.exe`, but will rename it: so `to`
/// is first renamed aside (`.old`), then removed when nothing runs it any more — else left for the
/// next upgrade to remove.
#[cfg(windows)]
fn replace(from: &Path, to: &Path) -> io::Result<()> {
    if to.exists() {
        let mut aside = beside(to, "old");
        if herald_home::atomic::remove_if_exists(&aside).is_err() {
            // An earlier `.old` still runs: another name.
            aside = beside(to, &format!("old-{}", herald_home::time::now_ms()));
        }
        fs::rename(to, &aside)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot rename {} aside: {e}", to.display())))?;
        let _ = fs::remove_file(&aside);
    }
    fs::rename(from, to).map_err(|e| io::Error::new(e.kind(), format!("cannot rename it in: {e}")))
}

/// Makes a rename in `path`'s folder durable (Unix; Windows commits renames with the file system's own
/// journal).
fn sync_dir(path: &Path) {
    #[cfg(unix)]
    if let Some(dir) = path.parent()
        && let Ok(dir) = fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        fs::write(path, text).unwrap();
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap()
    }

    #[test]
    fn a_swap_keeps_the_previous_and_a_restore_puts_it_back_each_one_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let exe = format!("herald{}", std::env::consts::EXE_SUFFIX);
        let installed = dir.path().join(&exe);
        let candidate_dir = tempfile::tempdir().unwrap();
        let candidate = candidate_dir.path().join(&exe);
        write(&installed, "old");
        write(&candidate, "new");
        let programs = programs(&installed, &candidate).unwrap();
        assert_eq!(programs.len(), 1);
        let program = &programs[0];
        assert!(program.previous.to_string_lossy().contains("herald.prev"));

        stage(program).unwrap();
        stage(program).unwrap();
        swap(program).unwrap();
        assert_eq!(read(&installed), "new");
        assert_eq!(read(&program.previous), "old");
        assert!(!program.staged.exists());
        assert!(same_content(&installed, &candidate).unwrap());

        assert!(restore(program).unwrap());
        assert_eq!(read(&installed), "old");
        assert!(!restore(program).unwrap(), "nothing left to restore");
        assert_eq!(read(&installed), "old");
    }

    #[test]
    fn a_swap_cut_between_its_renames_is_finished_by_doing_it_again() {
        let dir = tempfile::tempdir().unwrap();
        let installed = dir.path().join("herald");
        let candidate = dir.path().join("candidate");
        write(&installed, "old");
        write(&candidate, "new");
        let program = &programs(&installed, &candidate).unwrap()[0];
        stage(program).unwrap();
        // As Windows leaves it when killed after renaming the running executable aside.
        fs::rename(&installed, &program.previous).unwrap();
        swap(program).unwrap();
        assert_eq!(read(&installed), "new");
        assert_eq!(read(&program.previous), "old");
    }

    #[test]
    fn an_installed_heraldw_needs_one_beside_the_candidate() {
        let dir = tempfile::tempdir().unwrap();
        let suffix = std::env::consts::EXE_SUFFIX;
        let installed = dir.path().join(format!("herald{suffix}"));
        write(&installed, "old");
        write(&dir.path().join(format!("heraldw{suffix}")), "old gui");
        let candidate_dir = tempfile::tempdir().unwrap();
        let candidate = candidate_dir.path().join(format!("herald{suffix}"));
        write(&candidate, "new");
        let why = programs(&installed, &candidate).unwrap_err();
        assert!(why.contains("has no heraldw"), "{why}");
        write(&candidate_dir.path().join(format!("heraldw{suffix}")), "new gui");
        assert_eq!(programs(&installed, &candidate).unwrap().len(), 2);
    }
}
