//! The Startup-folder launcher (`Herald_Gateway[_PROFILE].cmd`), the fallback when registering a logon
//! task is refused, and a reader that decodes it the way cmd.exe does (for drift detection and tests).
//!
//! ```text
//! @echo off
//! chcp 65001 >nul
//! setlocal DisableDelayedExpansion
//! if not exist "C:\…\heraldw.exe" exit /b 0
//! start "" /b "C:\…\heraldw.exe" --home "C:\…" run
//! ```
//!
//! **Invariant:** the launcher does nothing when its target is gone (tests and uninstalled copies must
//! never leave a login that flashes a failing console), and it starts the windowless `heraldw.exe` with
//! `start`, so the launcher's own console closes at once. It runs the supervised `run`.
//!
//! Quoting for cmd.exe: every path is inside double quotes, where `^ & | < > ( ) , ; =` and spaces are
//! literal; `%` is doubled (batch files expand `%…%` even inside quotes); `!` is literal because delayed
//! expansion is switched off explicitly; a `"` cannot occur in a Windows path and is refused with a typed
//! error, as are control characters. Arguments are quoted by the `CommandLineToArgvW` rules on top
//! ([`super::winargs`]), since `start` hands them to the program's own parser.
//!
//! Encoding: cmd.exe decodes each line of a batch file in the console code page in force when it reads
//! that line, so the file is UTF-8 without a BOM (a BOM would corrupt the first command) and its second
//! line, pure ASCII, switches the launcher's own console to UTF-8 (`chcp 65001`) before any line with a
//! non-ASCII path is read. The console is the launcher's own and closes right after, so nothing else
//! sees the changed code page. Lines end in CRLF (cmd.exe mis-parses labels and `goto` with bare LF).

use super::error::InstallError;
use super::spec::{Backend, Invocation, Scope, ServiceSpec, refuse_chars, require_absolute, text};
use super::task::windows_path_forbidden;
use super::winargs::{parse_windows_args, quote_windows_arg};

const B: Backend = Backend::Startup;

const START: &str = "start \"\" /b ";
const IF_MISSING: &str = "if not exist ";

/// The launcher file's bytes: UTF-8 without a BOM, CRLF line endings.
pub fn render_launcher(spec: &ServiceSpec) -> Result<Vec<u8>, InstallError> {
    Ok(render_launcher_text(spec)?.into_bytes())
}

/// The launcher as text.
pub fn render_launcher_text(spec: &ServiceSpec) -> Result<String, InstallError> {
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
        refuse_chars(B, "argument", arg, |c| c == '"' || c.is_control())?;
    }
    let target = batch_escape(&format!("\"{}\"", invocation.program));
    let args: Vec<String> = invocation
        .args
        .iter()
        .map(|a| batch_escape(&quote_windows_arg(a)))
        .collect();
    let lines = [
        "@echo off".to_owned(),
        "chcp 65001 >nul".to_owned(),
        "setlocal DisableDelayedExpansion".to_owned(),
        format!("{IF_MISSING}{target} exit /b 0"),
        format!("{START}{target} {}", args.join(" ")),
    ];
    let mut out = lines.join("\r\n");
    out.push_str("\r\n");
    Ok(out)
}

/// `%` → `%%`: the one character batch files expand inside double quotes.
fn batch_escape(s: &str) -> String {
    s.replace('%', "%%")
}

/// What an existing launcher starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LauncherFacts {
    /// The path tested by `if not exist`.
    pub guard: String,
    pub program: String,
    pub args: Vec<String>,
    /// Whether `setlocal DisableDelayedExpansion` precedes the `start` line.
    pub delayed_expansion_off: bool,
    /// Whether `chcp 65001` precedes the first non-ASCII line.
    pub utf8_before_non_ascii: bool,
}

impl LauncherFacts {
    pub fn invocation(&self) -> Invocation {
        Invocation {
            program: self.program.clone(),
            args: self.args.clone(),
            herald_home: None,
        }
    }
}

fn unparsable(reason: impl Into<String>) -> InstallError {
    InstallError::Unparsable {
        backend: B,
        reason: reason.into(),
    }
}

/// Decodes a launcher as cmd.exe would for the lines Herald writes: percent expansion (`%%` → `%`; a lone
/// `%` would expand a variable and is refused), then one quoted token for the program, then the tail as
/// the program's own `CommandLineToArgvW` would split it. Any cmd.exe operator outside quotes is refused:
/// it would start a second command.
pub fn parse_launcher(bytes: &[u8]) -> Result<LauncherFacts, InstallError> {
    let text = std::str::from_utf8(bytes).map_err(|e| unparsable(e.to_string()))?;
    if text.starts_with('\u{feff}') {
        return Err(unparsable("a BOM would corrupt the first command"));
    }
    let mut guard = None;
    let mut start = None;
    let mut delayed_expansion_off = false;
    let mut utf8 = false;
    let mut utf8_before_non_ascii = true;
    for line in text.split("\r\n") {
        if !line.is_ascii() && !utf8 {
            utf8_before_non_ascii = false;
        }
        if line.contains('\n') || line.contains('\r') {
            return Err(unparsable("a bare LF or CR line ending"));
        }
        let line = percent_expand(line)?;
        if line.eq_ignore_ascii_case("chcp 65001 >nul") {
            utf8 = true;
        } else if line.eq_ignore_ascii_case("setlocal DisableDelayedExpansion") {
            delayed_expansion_off = true;
        } else if let Some(rest) = line.strip_prefix(IF_MISSING) {
            let (path, rest) = quoted_token(rest)?;
            if rest != " exit /b 0" {
                return Err(unparsable(format!("unexpected guard tail {rest:?}")));
            }
            guard = Some(path);
        } else if let Some(rest) = line.strip_prefix(START) {
            let (program, tail) = quoted_token(rest)?;
            check_operators(tail)?;
            start = Some((program, parse_windows_args(tail), delayed_expansion_off));
        }
    }
    let guard = guard.ok_or_else(|| unparsable("no `if not exist` guard"))?;
    let (program, args, off) = start.ok_or_else(|| unparsable("no `start` line"))?;
    Ok(LauncherFacts {
        guard,
        program,
        args,
        delayed_expansion_off: off,
        utf8_before_non_ascii,
    })
}

fn percent_expand(line: &str) -> Result<String, InstallError> {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '%' && chars.next() != Some('%') {
            return Err(unparsable(format!("a lone % expands a variable: {line:?}")));
        }
        out.push(c);
    }
    Ok(out)
}

/// `"…"` at the start of `s`: the content and the rest.
fn quoted_token(s: &str) -> Result<(String, &str), InstallError> {
    let body = s
        .strip_prefix('"')
        .ok_or_else(|| unparsable(format!("expected a quoted path in {s:?}")))?;
    let end = body.find('"').ok_or_else(|| unparsable("unterminated quote"))?;
    Ok((body[..end].to_owned(), &body[end + 1..]))
}

/// Refuses cmd.exe operators and escapes outside double quotes, and unbalanced quotes.
fn check_operators(tail: &str) -> Result<(), InstallError> {
    let mut quoted = false;
    for c in tail.chars() {
        match c {
            '"' => quoted = !quoted,
            '&' | '|' | '<' | '>' | '(' | ')' | '^' if !quoted => {
                return Err(unparsable(format!(
                    "cmd.exe operator {c:?} outside quotes in {tail:?}"
                )));
            }
            _ => {}
        }
    }
    if quoted {
        return Err(unparsable("unbalanced quotes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_home::Home;

    fn spec(root: &str, heraldw: &str) -> ServiceSpec {
        let mut spec = ServiceSpec::for_home(&Home::at("/x"), r"C:\H\herald.exe", 30);
        spec.home_root = root.into();
        spec.gui_executable = Some(heraldw.into());
        spec
    }

    #[test]
    fn the_launcher_is_guarded_and_round_trips() {
        let s = spec(
            r"C:\Users\Zoë\100% (x) & y ^ ! ;=,\",
            r"C:\Program Files\50% & Co\heraldw.exe",
        );
        let text = render_launcher_text(&s).unwrap();
        assert!(text.starts_with("@echo off\r\nchcp 65001 >nul\r\nsetlocal DisableDelayedExpansion\r\n"));
        assert!(text.contains(r#"if not exist "C:\Program Files\50%% & Co\heraldw.exe" exit /b 0"#));
        assert!(text.contains(r#"start "" /b "C:\Program Files\50%% & Co\heraldw.exe" --home "#));
        let facts = parse_launcher(text.as_bytes()).unwrap();
        assert_eq!(facts.invocation(), s.invocation(B).unwrap());
        assert_eq!(facts.guard, facts.program);
        assert!(facts.delayed_expansion_off && facts.utf8_before_non_ascii);
        assert_eq!(facts.args.last().unwrap(), "run");
    }

    #[test]
    fn quotes_and_control_characters_are_refused() {
        let s = spec("C:\\a\"b", r"C:\H\heraldw.exe");
        assert!(matches!(
            render_launcher(&s).unwrap_err(),
            InstallError::Unrepresentable { ch: '"', .. }
        ));
        let s = spec("C:\\a\nb", r"C:\H\heraldw.exe");
        assert!(matches!(
            render_launcher(&s).unwrap_err(),
            InstallError::Unrepresentable { .. }
        ));
        let s = spec(r"C:\a", r"relative\heraldw.exe");
        assert!(matches!(
            render_launcher(&s).unwrap_err(),
            InstallError::NotAbsolute { .. }
        ));
    }

    #[test]
    fn the_decoder_refuses_what_cmd_would_misread() {
        let ok = "@echo off\r\nif not exist \"C:\\h.exe\" exit /b 0\r\nstart \"\" /b \"C:\\h.exe\" run\r\n";
        assert_eq!(parse_launcher(ok.as_bytes()).unwrap().args, ["run"]);
        for bad in [
            ok.replace("run", "a & b"),
            ok.replace("run", "50%x"),
            ok.replace("run", "\"open"),
            format!("\u{feff}{ok}"),
        ] {
            assert!(parse_launcher(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
