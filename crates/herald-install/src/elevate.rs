//! The UAC hand-off: `herald install --backend windows-service`, and the `uninstall` of a Windows
//! Service, run from a prompt that is not elevated relaunch the same executable elevated (`runas`), wait
//! for it, and show its outcome and exit code in the original console.
//!
//! **Invariant:** the elevated process does exactly what the user asked, and only that. Every choice
//! travels as an argument — the *resolved* home root and profile (an elevated process gets a fresh
//! environment, and over-the-shoulder elevation runs as another account whose `%LOCALAPPDATA%` is
//! another home), the backend and every flag in both polarities (`--start-now` or `--no-start-now`, so
//! a default can never differ) — built by the pure [`relaunch_args`] and quoted by the
//! `CommandLineToArgvW` rules ([`super::winargs`]), which round-trip. The elevated process carries
//! [`REPORT_FLAG`] and never decides to elevate again ([`should_relaunch`]).
//!
//! **Invariant:** whether to elevate is decided from the token (`TokenElevation`), before anything is
//! planned or changed, never by trying and failing: a refused prompt (`ERROR_CANCELLED`) leaves
//! nothing half-done. A dry run is never elevated: planning only reads the SCM, which needs no admin.
//!
//! **Invariant:** the outcome file is written only where the non-elevated parent chose: a directory it
//! created fresh (a new name, in its own temp directory, which only the user, SYSTEM and Administrators
//! may write), given to the child as [`REPORT_FLAG`]` PATH`. The elevated child creates the file new
//! (`create_new`: an existing file or link at that name is refused, never followed or truncated) and
//! refuses a directory that is a link or junction, so a file planted by another process of the same
//! user cannot turn the administrator's write into one elsewhere. The parent reads at most
//! [`REPORT_MAX`] bytes of it and deletes the directory.
//!
//! The OS calls (token query; `ShellExecuteExW` with `runas`, `SEE_MASK_NOCLOSEPROCESS`, a wait on the
//! process handle and `GetExitCodeProcess`) live in the Windows leaf `elevate_os/windows.rs`; elsewhere
//! a leaf of the same shape refuses.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

#[cfg(not(windows))]
#[path = "elevate_os/other.rs"]
mod os;
#[cfg(windows)]
#[path = "elevate_os/windows.rs"]
mod os;

use herald_home::ProfileName;

use super::spec::Backend;
use super::winargs::join_windows_args;

/// The hidden argument naming the file the elevated child writes its outcome to.
pub const REPORT_FLAG: &str = "--elevated-report";
/// A hidden test switch: set to `1`, the relaunch happens even when the token is already elevated
/// (Wine runs everything elevated), so the hand-off itself can be exercised.
pub const FORCE_ENV: &str = "HERALD_FORCE_ELEVATION";
/// The most of a report the parent reads.
pub const REPORT_MAX: u64 = 1 << 20;
/// `ERROR_CANCELLED`: the user said no at the UAC prompt.
pub const ERROR_CANCELLED: u32 = 1223;

/// Why the hand-off failed. Codes are Win32 error codes.
#[derive(Debug, thiserror::Error)]
pub enum ElevateError {
    #[error("elevation (UAC) exists only on Windows")]
    Unsupported,
    #[error("cannot tell whether this prompt is elevated: Win32 error {code}")]
    Token { code: u32 },
    #[error(
        "elevation was refused at the UAC prompt: nothing was changed. Run the command again and accept \
         the prompt, or run it from an elevated (administrator) prompt"
    )]
    Cancelled,
    #[error("cannot start the elevated herald: Win32 error {code}")]
    Launch { code: u32 },
    #[error("cannot wait for the elevated herald: Win32 error {code}")]
    Wait { code: u32 },
    #[error("the outcome file {path}: {reason}", path = path.display())]
    Report { path: PathBuf, reason: String },
}

/// What decides whether a command relaunches itself elevated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Situation {
    /// Windows (UAC exists).
    pub windows: bool,
    /// The command changes the SCM: an install with the Windows Service backend, or the uninstall of a
    /// registered service.
    pub changes_scm: bool,
    pub dry_run: bool,
    /// This process is the elevated child (it was given [`REPORT_FLAG`]).
    pub elevated_child: bool,
    /// The token check: this process is elevated.
    pub elevated: bool,
    /// [`FORCE_ENV`] is set: relaunch even so (tests).
    pub forced: bool,
}

/// Whether to relaunch elevated: only on Windows, only for a change to the SCM, never for a dry run,
/// never from the elevated child, and only when the token is not elevated (or a test forces it).
pub fn should_relaunch(s: Situation) -> bool {
    s.windows && s.changes_scm && !s.dry_run && !s.elevated_child && (!s.elevated || s.forced)
}

/// The command the elevated process runs, with every choice the user made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relaunch {
    Install {
        backend: Backend,
        system: bool,
        run_as: Option<String>,
        start_now: bool,
        start_on_login: bool,
        force: bool,
        dry_run: bool,
    },
    Uninstall {
        system: bool,
        dry_run: bool,
    },
}

/// The elevated child's arguments (after the program): `--home <root> [--profile P] <command> <every
/// choice> --elevated-report <report>`.
pub fn relaunch_args(
    home_root: &str,
    profile: Option<&ProfileName>,
    command: &Relaunch,
    report: &str,
) -> Vec<String> {
    let mut args = vec!["--home".to_owned(), home_root.to_owned()];
    if let Some(p) = profile {
        args.push("--profile".to_owned());
        args.push(p.as_str().to_owned());
    }
    let flag = |on: bool, yes: &str, no: &str| if on { yes.to_owned() } else { no.to_owned() };
    match command {
        Relaunch::Install {
            backend,
            system,
            run_as,
            start_now,
            start_on_login,
            force,
            dry_run,
        } => {
            args.extend([
                "install".to_owned(),
                "--backend".to_owned(),
                backend.as_str().to_owned(),
            ]);
            args.push(flag(*start_now, "--start-now", "--no-start-now"));
            args.push(flag(*start_on_login, "--start-on-login", "--no-start-on-login"));
            if *system {
                args.push("--system".to_owned());
            }
            if let Some(user) = run_as {
                args.push("--run-as-user".to_owned());
                args.push(user.clone());
            }
            if *force {
                args.push("--force".to_owned());
            }
            if *dry_run {
                args.push("--dry-run".to_owned());
            }
        }
        Relaunch::Uninstall { system, dry_run } => {
            args.push("uninstall".to_owned());
            if *system {
                args.push("--system".to_owned());
            }
            if *dry_run {
                args.push("--dry-run".to_owned());
            }
        }
    }
    args.push(REPORT_FLAG.to_owned());
    args.push(report.to_owned());
    args
}

/// The arguments as one command-line tail (`lpParameters`): what the child's `CommandLineToArgvW`
/// splits back into exactly `args`.
pub fn parameters(args: &[String]) -> String {
    join_windows_args(args)
}

/// What a failed `ShellExecuteExW` means: `ERROR_CANCELLED` is the user's "no" at the UAC prompt (or
/// a prompt that could not be shown); anything else is a failure to start.
pub fn launch_error(code: u32) -> ElevateError {
    match code {
        ERROR_CANCELLED => ElevateError::Cancelled,
        code => ElevateError::Launch { code },
    }
}

/// Whether this token is elevated (`GetTokenInformation(TokenElevation)`).
pub fn token_elevated() -> Result<bool, ElevateError> {
    os::token_elevated()
}

/// Starts `program` with `parameters` elevated (`ShellExecuteExW`, verb `runas`, its window hidden:
/// its outcome comes back through the report), waits for it and returns its exit code.
pub fn run_elevated(program: &Path, parameters: &str, directory: &Path) -> Result<u32, ElevateError> {
    os::run_elevated(program, parameters, directory)
}

/// The directory the parent creates for the child's outcome, deleted when dropped.
#[derive(Debug)]
pub struct ReportDir {
    dir: PathBuf,
}

impl ReportDir {
    /// A new directory under `parent` (the user's temp directory): a fresh name, never one that exists.
    pub fn create(parent: &Path) -> Result<ReportDir, ElevateError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = parent.join(format!("herald-elevated-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| ElevateError::Report {
            path: dir.clone(),
            reason: e.to_string(),
        })?;
        Ok(ReportDir { dir })
    }

    /// The file the child writes.
    pub fn path(&self) -> PathBuf {
        self.dir.join("report.txt")
    }

    /// What the child wrote (at most [`REPORT_MAX`] bytes); `None` when it wrote nothing.
    pub fn read(&self) -> Option<String> {
        let mut text = Vec::new();
        File::open(self.path())
            .ok()?
            .take(REPORT_MAX)
            .read_to_end(&mut text)
            .ok()?;
        Some(String::from_utf8_lossy(&text).into_owned())
    }
}

impl Drop for ReportDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The child's side: creates the report file at `path`, refusing anything the parent did not prepare
/// (a relative path, a directory that is a link or junction, a name that exists).
pub fn create_report(path: &Path) -> Result<File, ElevateError> {
    let refuse = |reason: &str| ElevateError::Report {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    if !path.is_absolute() {
        return Err(refuse("not an absolute path"));
    }
    let dir = path.parent().ok_or_else(|| refuse("no directory"))?;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| refuse(&e.to_string()))?;
    if meta.file_type().is_symlink() || !meta.is_dir() {
        return Err(refuse("its directory is a link or not a directory"));
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| refuse(&format!("cannot create it new: {e}")))
}

/// One line of a report: which stream it belongs to in the parent's console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportLine {
    Out(String),
    Err(String),
}

/// Encodes a line for the report (`1 ` for standard output, `2 ` for standard error).
pub fn encode_line(line: &ReportLine) -> String {
    match line {
        ReportLine::Out(text) => format!("1 {text}\n"),
        ReportLine::Err(text) => format!("2 {text}\n"),
    }
}

/// Decodes a report; a line without a known prefix is standard output as it is.
pub fn decode_report(text: &str) -> Vec<ReportLine> {
    text.lines()
        .map(|line| match (line.strip_prefix("1 "), line.strip_prefix("2 ")) {
            (Some(out), _) => ReportLine::Out(out.to_owned()),
            (_, Some(err)) => ReportLine::Err(err.to_owned()),
            _ => ReportLine::Out(line.to_owned()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::winargs::parse_windows_args;

    fn situation() -> Situation {
        Situation {
            windows: true,
            changes_scm: true,
            dry_run: false,
            elevated_child: false,
            elevated: false,
            forced: false,
        }
    }

    #[test]
    fn only_a_non_elevated_change_to_the_scm_relaunches() {
        assert!(should_relaunch(situation()));
        for s in [
            Situation {
                windows: false,
                ..situation()
            },
            Situation {
                changes_scm: false,
                ..situation()
            },
            Situation {
                dry_run: true,
                ..situation()
            },
            Situation {
                elevated: true,
                ..situation()
            },
            Situation {
                elevated_child: true,
                forced: true,
                ..situation()
            },
        ] {
            assert!(!should_relaunch(s), "{s:?}");
        }
        assert!(should_relaunch(Situation {
            elevated: true,
            forced: true,
            ..situation()
        }));
    }

    /// Hostile home roots, profiles and report paths survive the trip through one command line.
    #[test]
    fn every_choice_round_trips_through_the_command_line() {
        let roots = [
            r"C:\Users\Zoë\Her ald 50% & ^ ! (x)",
            r"C:\dir with trailing backslash\",
            r#"C:\a"b\"#,
            r"C:\中文\\\",
            r"\\server\share\h",
            "",
        ];
        let commands = [
            Relaunch::Install {
                backend: Backend::WindowsService,
                system: false,
                run_as: None,
                start_now: false,
                start_on_login: true,
                force: true,
                dry_run: false,
            },
            Relaunch::Install {
                backend: Backend::WindowsService,
                system: true,
                run_as: Some(r#"DOM\us "er"\"#.into()),
                start_now: true,
                start_on_login: false,
                force: false,
                dry_run: true,
            },
            Relaunch::Uninstall {
                system: false,
                dry_run: false,
            },
        ];
        let profile = ProfileName::new("work-1").unwrap();
        for root in roots {
            for command in &commands {
                for profile in [None, Some(&profile)] {
                    let report = format!(r"{root}\herald-elevated-1\report.txt");
                    let args = relaunch_args(root, profile, command, &report);
                    assert_eq!(
                        parse_windows_args(&parameters(&args)),
                        args,
                        "{root:?} {command:?}"
                    );
                    assert_eq!(args[..2], ["--home".to_owned(), root.to_owned()]);
                    assert_eq!(args[args.len() - 2..], [REPORT_FLAG.to_owned(), report]);
                }
            }
        }
        let args = relaunch_args(r"C:\h", None, &commands[0], r"C:\r");
        assert_eq!(
            args,
            [
                "--home",
                r"C:\h",
                "install",
                "--backend",
                "windows-service",
                "--no-start-now",
                "--start-on-login",
                "--force",
                REPORT_FLAG,
                r"C:\r"
            ]
        );
        let args = relaunch_args(r"C:\h", Some(&profile), &commands[2], r"C:\r");
        assert_eq!(args[2..5], ["--profile", "work-1", "uninstall"]);
    }

    #[test]
    fn a_refused_prompt_is_named_and_says_nothing_changed() {
        let refused = launch_error(ERROR_CANCELLED);
        assert!(matches!(refused, ElevateError::Cancelled));
        let text = refused.to_string();
        assert!(
            text.contains("refused at the UAC prompt") && text.contains("nothing was changed"),
            "{text}"
        );
        assert!(matches!(launch_error(2), ElevateError::Launch { code: 2 }));
    }

    #[test]
    fn the_report_keeps_each_lines_stream() {
        let lines = [
            ReportLine::Out("herald installed".into()),
            ReportLine::Err("herald: refused".into()),
            ReportLine::Out(String::new()),
        ];
        let text: String = lines.iter().map(encode_line).collect();
        assert_eq!(decode_report(&text), lines);
        assert_eq!(decode_report("plain"), [ReportLine::Out("plain".into())]);
    }

    #[test]
    fn the_child_creates_the_report_new_in_the_parents_directory_only() {
        let temp = tempfile::tempdir().unwrap();
        let dir = ReportDir::create(temp.path()).unwrap();
        assert!(ReportDir::create(temp.path()).is_ok(), "a fresh name each time");
        assert_eq!(dir.read(), None, "nothing written yet");
        let mut file = create_report(&dir.path()).unwrap();
        std::io::Write::write_all(&mut file, encode_line(&ReportLine::Out("ok".into())).as_bytes()).unwrap();
        drop(file);
        assert_eq!(dir.read().as_deref(), Some("1 ok\n"));
        assert!(
            create_report(&dir.path()).is_err(),
            "an existing file is never reused"
        );
        assert!(create_report(Path::new("relative.txt")).is_err());
        assert!(create_report(&temp.path().join("missing").join("r.txt")).is_err());
        let kept = dir.path();
        drop(dir);
        assert!(!kept.exists(), "the parent deletes the directory");
    }

    #[cfg(unix)]
    #[test]
    fn a_linked_directory_is_refused() {
        let temp = tempfile::tempdir().unwrap();
        let real = temp.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = temp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(create_report(&link.join("report.txt")).is_err());
        assert!(!real.join("report.txt").exists());
    }
}
