//! The Startup fallback: a per-user `Run` value (`HKCU\Software\Microsoft\Windows\CurrentVersion\Run`,
//! value `Herald_Gateway[_PROFILE]`) whose data is the command line of the windowless `heraldw.exe`, the
//! fallback when registering a logon task is refused; a reader that splits it the way Explorer's
//! `CreateProcess` and the program's own `CommandLineToArgvW` do (drift detection, status, tests); and
//! the [`RunKey`] through which planners read and the executor writes it.
//!
//! ```text
//! "C:\…\heraldw.exe" --home "C:\…" [--profile P] run
//! ```
//!
//! **Invariant:** nothing visible ever happens at logon because of this entry. Explorer starts a `Run`
//! value itself, as a process of the program it names — `heraldw.exe`, a GUI-subsystem program, so no
//! console window is created (the `.cmd` launcher this replaces ran cmd.exe, a console program, and a
//! console flashed at every logon before `start /b` handed over). It runs the supervised `run`.
//!
//! Why a `Run` value and not a Startup-folder shortcut (`.lnk` through `IShellLinkW`), judged by what
//! each does when its target is gone (an uninstalled copy, a test's temp dir — the `.cmd` launcher
//! guarded that with `if not exist … exit /b 0`): for a `Run` value whose program is missing, Explorer's
//! process creation fails and the entry is skipped with nothing shown (Wine's `wineboot`, which runs
//! the same key, does the same: `CreateProcessW`, a log line on failure); a shortcut is resolved by the
//! shell when it is opened, and a missing target makes the shell search for it and can bring up its
//! "Problem with Shortcut" dialog — visible, at every logon. The `Run` value is also plain data: read
//! back and compared as a string, with no COM and no binary `.lnk` format to parse. The stale-target
//! guard therefore is the OS's own behaviour, and `install`/`uninstall` remove the value.
//!
//! Quoting: the program is always inside double quotes (it cannot contain one) — Explorer passes the
//! line to `CreateProcessW` with no application name, which takes the quoted first token as the
//! program; the arguments are quoted by the `CommandLineToArgvW` rules ([`super::winargs`]), which
//! `heraldw.exe` uses to read them. Explorer expands `%NAME%` environment references in `Run` values
//! and there is no escape for `%`, so a line with two `%` (where a reference could form) is refused
//! with a typed error, as is a line longer than the 260 characters Microsoft documents for `Run` values;
//! the logon task has neither limit.

use std::fmt;

#[cfg(not(windows))]
#[path = "startup_os/other.rs"]
mod os;
#[cfg(windows)]
#[path = "startup_os/windows.rs"]
mod os;

use super::error::InstallError;
use super::spec::{Backend, Invocation, Scope, ServiceSpec, refuse_chars, require_absolute, text};
use super::task::windows_path_forbidden;
use super::winargs::{join_windows_args, parse_windows_args};

const B: Backend = Backend::Startup;

/// The per-user `Run` key, under `HKEY_CURRENT_USER`.
pub const RUN_KEY: &str = r"Software\Microsoft\Windows\CurrentVersion\Run";
/// The longest command line a `Run` value may hold (Microsoft's "Run and RunOnce Registry Keys").
pub const MAX_RUN_COMMAND: usize = 260;

/// The command line the `Run` value holds: `"<heraldw.exe>" --home <root> [--profile P] run`.
pub fn render_run_command(spec: &ServiceSpec) -> Result<String, InstallError> {
    if spec.scope == Scope::System {
        return Err(InstallError::NoSystemScope { backend: B });
    }
    let invocation = spec.invocation(B)?;
    let home = text(B, "home", &spec.home_root)?;
    for (what, value) in [("heraldw", &invocation.program), ("home", &home)] {
        require_absolute(B, what, value)?;
        refuse_chars(B, what, value, windows_path_forbidden)?;
    }
    for arg in &invocation.args {
        refuse_chars(B, "argument", arg, char::is_control)?;
    }
    let line = format!(
        "\"{}\" {}",
        invocation.program,
        join_windows_args(&invocation.args)
    );
    check_line(&line)?;
    Ok(line)
}

/// What Explorer would not start as written: a `%` pair (environment expansion) or too long a line.
fn check_line(line: &str) -> Result<(), InstallError> {
    if line.matches('%').count() >= 2 {
        return Err(InstallError::Unrepresentable {
            backend: B,
            what: "command line (Explorer expands %NAME% in it)",
            value: line.to_owned(),
            ch: '%',
        });
    }
    let len = line.encode_utf16().count();
    if len > MAX_RUN_COMMAND {
        return Err(InstallError::TooLong {
            backend: B,
            len,
            max: MAX_RUN_COMMAND,
        });
    }
    Ok(())
}

fn unparsable(reason: impl Into<String>) -> InstallError {
    InstallError::Unparsable {
        backend: B,
        reason: reason.into(),
    }
}

/// Splits a `Run` value the way it is started: the program is the first token (`"…"` up to the next
/// quote, else up to the first space or tab: how `CreateProcessW` with no application name reads it),
/// the rest as the program's `CommandLineToArgvW` splits it. A line Explorer would expand (two `%`) is
/// refused: it would not start what it says.
pub fn parse_run_command(line: &str) -> Result<Invocation, InstallError> {
    if line.matches('%').count() >= 2 {
        return Err(unparsable(format!("Explorer would expand %…% in {line:?}")));
    }
    let line = line.trim_start_matches([' ', '\t']);
    let (program, tail) = match line.strip_prefix('"') {
        Some(body) => {
            let end = body.find('"').ok_or_else(|| unparsable("unterminated quote"))?;
            (&body[..end], &body[end + 1..])
        }
        None => line.split_at(line.find([' ', '\t']).unwrap_or(line.len())),
    };
    if program.is_empty() {
        return Err(unparsable("no program"));
    }
    Ok(Invocation {
        program: program.to_owned(),
        args: parse_windows_args(tail),
        herald_home: None,
    })
}

/// Why a `Run` value could not be read or changed. Codes are Win32 error codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunKeyError {
    #[error("there is no Windows registry on this OS")]
    Unsupported,
    #[error("cannot {what} HKCU\\{key}\\{name}: Win32 error {code}")]
    Os {
        what: &'static str,
        key: String,
        name: String,
        code: u32,
    },
    #[error("HKCU\\{key}\\{name} is not a string value")]
    NotText { key: String, name: String },
}

/// The per-user `Run` values: read by planners, written by the executor. `key` is the subkey of
/// `HKEY_CURRENT_USER` ([`RUN_KEY`], or `HERALD_RUN_KEY` in tests).
pub trait RunKey {
    /// The value's command line; `None` when there is no such value (or no such key).
    fn read(&self, key: &str, name: &str) -> Result<Option<String>, RunKeyError>;
    /// Sets the value (a `REG_SZ`), creating the key if needed.
    fn set(&mut self, key: &str, name: &str, command: &str) -> Result<(), RunKeyError>;
    /// Deletes the value; already gone is fine.
    fn delete(&mut self, key: &str, name: &str) -> Result<(), RunKeyError>;
}

/// This user's registry (Windows); elsewhere every call is [`RunKeyError::Unsupported`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemRunKey;

impl RunKey for SystemRunKey {
    fn read(&self, key: &str, name: &str) -> Result<Option<String>, RunKeyError> {
        os::read(key, name)
    }

    fn set(&mut self, key: &str, name: &str, command: &str) -> Result<(), RunKeyError> {
        os::set(key, name, command)
    }

    fn delete(&mut self, key: &str, name: &str) -> Result<(), RunKeyError> {
        os::delete(key, name)
    }
}

/// One change to a `Run` value, as a plan step carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunValueOp {
    Set {
        key: String,
        name: String,
        command: String,
    },
    Delete {
        key: String,
        name: String,
    },
}

impl RunValueOp {
    /// Carries the change out through `run_key`.
    pub fn apply(&self, run_key: &mut dyn RunKey) -> Result<(), RunKeyError> {
        match self {
            RunValueOp::Set { key, name, command } => run_key.set(key, name, command),
            RunValueOp::Delete { key, name } => run_key.delete(key, name),
        }
    }
}

impl fmt::Display for RunValueOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunValueOp::Set { key, name, command } => {
                write!(f, "set the Run value HKCU\\{key}\\{name} = {command}")
            }
            RunValueOp::Delete { key, name } => write!(f, "delete the Run value HKCU\\{key}\\{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_home::Home;

    fn spec(root: &str, heraldw: &str) -> ServiceSpec {
        let mut spec = ServiceSpec::for_home(
            &Home::at("/x"),
            r"C:\H\herald.exe",
            herald_home::StopBudget::new(30),
        );
        spec.home_root = root.into();
        spec.gui_executable = Some(heraldw.into());
        spec
    }

    #[test]
    fn the_run_value_starts_heraldw_directly_and_round_trips() {
        for (root, heraldw) in [
            (
                r"C:\Users\a b\50% (x) & y ^ ! ;=,\",
                r"C:\Program Files\Herald\heraldw.exe",
            ),
            (r"C:\Users\Zoë\中文 é", r"C:\Programme\Müller & Co\heraldw.exe"),
            (r"C:\h", r"C:\h\heraldw.exe"),
        ] {
            let s = spec(root, heraldw);
            let line = render_run_command(&s).unwrap();
            assert!(line.starts_with(&format!("\"{heraldw}\" --home ")), "{line}");
            assert!(!line.to_lowercase().contains("cmd"), "no cmd.exe: {line}");
            assert_eq!(parse_run_command(&line).unwrap(), s.invocation(B).unwrap());
        }
    }

    #[test]
    fn what_explorer_would_change_is_refused() {
        let two_percent = spec(r"C:\Users\%USERNAME%\h", r"C:\H\heraldw.exe");
        assert!(matches!(
            render_run_command(&two_percent).unwrap_err(),
            InstallError::Unrepresentable { ch: '%', .. }
        ));
        let long = spec(&format!(r"C:\{}", "a".repeat(240)), r"C:\H\heraldw.exe");
        assert!(matches!(
            render_run_command(&long).unwrap_err(),
            InstallError::TooLong { max: 260, .. }
        ));
        let quote = spec("C:\\a\"b", r"C:\H\heraldw.exe");
        assert!(matches!(
            render_run_command(&quote).unwrap_err(),
            InstallError::Unrepresentable { ch: '"', .. }
        ));
        let relative = spec(r"C:\a", r"relative\heraldw.exe");
        assert!(matches!(
            render_run_command(&relative).unwrap_err(),
            InstallError::NotAbsolute { .. }
        ));
    }

    #[test]
    fn the_reader_splits_like_create_process() {
        let inv = parse_run_command(r#""C:\a b\heraldw.exe" --home "C:\x y\\" run"#).unwrap();
        assert_eq!(inv.program, r"C:\a b\heraldw.exe");
        assert_eq!(inv.args, [r"--home", r"C:\x y\", "run"]);
        let bare = parse_run_command(r"C:\h\heraldw.exe run").unwrap();
        assert_eq!(
            (bare.program.as_str(), bare.args.as_slice()),
            (r"C:\h\heraldw.exe", &["run".to_owned()][..])
        );
        for bad in [r#""C:\h.exe run"#, "", r#""C:\%a%\h.exe" run"#] {
            assert!(parse_run_command(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ops_display_for_dry_run() {
        let op = RunValueOp::Set {
            key: RUN_KEY.into(),
            name: "Herald_Gateway".into(),
            command: r#""C:\h\heraldw.exe" run"#.into(),
        };
        assert_eq!(
            op.to_string(),
            r#"set the Run value HKCU\Software\Microsoft\Windows\CurrentVersion\Run\Herald_Gateway = "C:\h\heraldw.exe" run"#
        );
    }
}
