//! The Startup-folder launcher (`Herald_Gateway[_PROFILE].cmd`), the fallback when registering a logon
//! task is refused, and a reader that decodes it the way cmd.exe does (for drift detection and tests).
//!
//! ```text
//! @echo off
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
//! that line, and a logon's console starts in the OEM code page. So a launcher that is pure ASCII is
//! written as it is; one with a non-ASCII path is written in the OEM code page when every character has
//! an exact form there (no best-fit substitutes: [`OemCodePage`]); only otherwise is it UTF-8, with a
//! second line, pure ASCII, that switches the launcher's own console to UTF-8 (`chcp 65001`) before any
//! non-ASCII line is read (the console is the launcher's own and closes right after). The OEM form comes
//! first because it needs nothing of cmd.exe beyond its defaults: some cmd.exe versions (Wine's before 9)
//! ignore `chcp 65001` for batch files. Never a BOM (it would corrupt the first command). Lines end in
//! CRLF (cmd.exe mis-parses labels and `goto` with bare LF).

use super::error::InstallError;
use super::spec::{Backend, Invocation, Scope, ServiceSpec, refuse_chars, require_absolute, text};
use super::task::windows_path_forbidden;
use super::winargs::{parse_windows_args, quote_windows_arg};

const B: Backend = Backend::Startup;

const START: &str = "start \"\" /b ";
const IF_MISSING: &str = "if not exist ";
const CHCP_UTF8: &str = "chcp 65001 >nul";

/// The OEM code page's conversions (an OS fact: [`SystemOemCodePage`]; tests pass their own).
pub trait OemCodePage {
    /// `text` in the OEM code page; `None` when a character has no exact form there (a best-fit
    /// substitute would name another path).
    fn encode(&self, text: &str) -> Option<Vec<u8>>;
    /// `bytes` read in the OEM code page; `None` when they are not valid there.
    fn decode(&self, bytes: &[u8]) -> Option<String>;
}

/// This machine's OEM code page (`GetOEMCP`) on Windows; elsewhere there is none, and every non-ASCII
/// launcher is UTF-8.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemOemCodePage;

impl OemCodePage for SystemOemCodePage {
    fn encode(&self, text: &str) -> Option<Vec<u8>> {
        super::os::oem_encode(text)
    }

    fn decode(&self, bytes: &[u8]) -> Option<String> {
        super::os::oem_decode(bytes)
    }
}

/// How a launcher's bytes encode its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LauncherEncoding {
    /// Pure ASCII: every code page reads it alike.
    Ascii,
    /// In the OEM code page, which a logon's console reads batch files in.
    Oem,
    /// UTF-8; `chcp_first`: `chcp 65001` comes before the first non-ASCII line (else cmd.exe misreads
    /// that line).
    Utf8 { chcp_first: bool },
}

/// The launcher file's bytes: ASCII as it is, else the OEM code page when it can carry every character,
/// else UTF-8 after `chcp 65001`. No BOM; CRLF line endings.
pub fn render_launcher(spec: &ServiceSpec, oem: &dyn OemCodePage) -> Result<Vec<u8>, InstallError> {
    let lines = launcher_lines(spec)?;
    let text = join_lines(&lines);
    if text.is_ascii() {
        return Ok(text.into_bytes());
    }
    if let Some(bytes) = oem.encode(&text) {
        return Ok(bytes);
    }
    Ok(utf8_text(lines).into_bytes())
}

/// The launcher as UTF-8 text (`chcp 65001` first when a line is not ASCII): the form written when the
/// OEM code page cannot carry the paths.
pub fn render_launcher_text(spec: &ServiceSpec) -> Result<String, InstallError> {
    Ok(utf8_text(launcher_lines(spec)?))
}

fn utf8_text(mut lines: Vec<String>) -> String {
    if lines.iter().any(|l| !l.is_ascii()) {
        lines.insert(1, CHCP_UTF8.to_owned());
    }
    join_lines(&lines)
}

fn join_lines(lines: &[String]) -> String {
    let mut out = lines.join("\r\n");
    out.push_str("\r\n");
    out
}

/// The launcher's lines, in no encoding yet.
fn launcher_lines(spec: &ServiceSpec) -> Result<Vec<String>, InstallError> {
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
    Ok(vec![
        "@echo off".to_owned(),
        "setlocal DisableDelayedExpansion".to_owned(),
        format!("{IF_MISSING}{target} exit /b 0"),
        format!("{START}{target} {}", args.join(" ")),
    ])
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
    pub encoding: LauncherEncoding,
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

/// Decodes a launcher as cmd.exe would for the lines Herald writes: a launcher with a `chcp 65001` line
/// is UTF-8; one without is read in the OEM code page, as cmd.exe at logon reads it (where no OEM code
/// page is known — not Windows — as UTF-8, the only other form Herald writes); then percent expansion (`%%` → `%`; a lone
/// `%` would expand a variable and is refused), then one quoted token for the program, then the tail as
/// the program's own `CommandLineToArgvW` would split it. Any cmd.exe operator outside quotes is refused:
/// it would start a second command.
pub fn parse_launcher(bytes: &[u8], oem: &dyn OemCodePage) -> Result<LauncherFacts, InstallError> {
    let switches_to_utf8 = bytes
        .split(|&b| b == b'\n')
        .any(|line| line.trim_ascii().eq_ignore_ascii_case(CHCP_UTF8.as_bytes()));
    let oem_text = (!bytes.is_ascii() && !switches_to_utf8)
        .then(|| oem.decode(bytes))
        .flatten();
    let from_oem = oem_text.is_some();
    let text = match oem_text {
        Some(text) => text,
        None => std::str::from_utf8(bytes)
            .map_err(|e| unparsable(format!("not UTF-8 ({e}) and not the OEM code page")))?
            .to_owned(),
    };
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
        if line.eq_ignore_ascii_case(CHCP_UTF8) {
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
    let encoding = if text.is_ascii() {
        LauncherEncoding::Ascii
    } else if from_oem {
        LauncherEncoding::Oem
    } else {
        LauncherEncoding::Utf8 {
            chcp_first: utf8_before_non_ascii,
        }
    };
    Ok(LauncherFacts {
        guard,
        program,
        args,
        delayed_expansion_off: off,
        encoding,
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
        let mut spec = ServiceSpec::for_home(
            &Home::at("/x"),
            r"C:\H\herald.exe",
            herald_home::StopBudget::new(30),
        );
        spec.home_root = root.into();
        spec.gui_executable = Some(heraldw.into());
        spec
    }

    /// An OEM code page for tests: Latin-1 (every `char` up to U+00FF is one byte).
    struct Latin1;

    impl OemCodePage for Latin1 {
        fn encode(&self, text: &str) -> Option<Vec<u8>> {
            text.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect()
        }

        fn decode(&self, bytes: &[u8]) -> Option<String> {
            Some(bytes.iter().map(|&b| char::from(b)).collect())
        }
    }

    /// No OEM code page (not Windows).
    struct NoOem;

    impl OemCodePage for NoOem {
        fn encode(&self, _: &str) -> Option<Vec<u8>> {
            None
        }

        fn decode(&self, _: &[u8]) -> Option<String> {
            None
        }
    }

    #[test]
    fn an_ascii_launcher_is_written_as_it_is() {
        let s = spec(r"C:\Users\a b\50% (x)", r"C:\H\heraldw.exe");
        let bytes = render_launcher(&s, &Latin1).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(!text.contains("chcp"), "{text}");
        assert_eq!(text, render_launcher_text(&s).unwrap());
        let facts = parse_launcher(&bytes, &NoOem).unwrap();
        assert_eq!(facts.encoding, LauncherEncoding::Ascii);
        assert_eq!(facts.invocation(), s.invocation(B).unwrap());
    }

    #[test]
    fn a_non_ascii_launcher_is_in_the_oem_code_page_when_it_carries_every_character() {
        let s = spec(r"C:\Users\Zoë\é 50%", r"C:\Programme\Müller\heraldw.exe");
        let bytes = render_launcher(&s, &Latin1).unwrap();
        assert!(std::str::from_utf8(&bytes).is_err(), "OEM bytes, not UTF-8");
        assert!(!bytes.windows(4).any(|w| w == b"chcp"), "no code page switch");
        assert!(bytes.windows(3).any(|w| w == b"Zo\xeb"), "ë as one Latin-1 byte");
        let facts = parse_launcher(&bytes, &Latin1).unwrap();
        assert_eq!(facts.encoding, LauncherEncoding::Oem);
        assert_eq!(facts.invocation(), s.invocation(B).unwrap());
    }

    #[test]
    fn a_launcher_the_oem_code_page_cannot_carry_is_utf8_after_chcp() {
        let s = spec(r"C:\Users\中文 Zoë", r"C:\H\heraldw.exe");
        for oem in [&Latin1 as &dyn OemCodePage, &NoOem] {
            let bytes = render_launcher(&s, oem).unwrap();
            let text = std::str::from_utf8(&bytes).unwrap();
            assert!(text.starts_with("@echo off\r\nchcp 65001 >nul\r\n"), "{text}");
            // Read back with an OEM code page at hand: the chcp line says UTF-8.
            let facts = parse_launcher(&bytes, &Latin1).unwrap();
            assert_eq!(facts.encoding, LauncherEncoding::Utf8 { chcp_first: true });
            assert_eq!(facts.invocation(), s.invocation(B).unwrap());
        }
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
        let facts = parse_launcher(text.as_bytes(), &NoOem).unwrap();
        assert_eq!(facts.invocation(), s.invocation(B).unwrap());
        assert_eq!(facts.guard, facts.program);
        assert!(facts.delayed_expansion_off);
        assert_eq!(facts.encoding, LauncherEncoding::Utf8 { chcp_first: true });
        assert_eq!(facts.args.last().unwrap(), "run");
    }

    #[test]
    fn quotes_and_control_characters_are_refused() {
        let s = spec("C:\\a\"b", r"C:\H\heraldw.exe");
        assert!(matches!(
            render_launcher(&s, &NoOem).unwrap_err(),
            InstallError::Unrepresentable { ch: '"', .. }
        ));
        let s = spec("C:\\a\nb", r"C:\H\heraldw.exe");
        assert!(matches!(
            render_launcher(&s, &NoOem).unwrap_err(),
            InstallError::Unrepresentable { .. }
        ));
        let s = spec(r"C:\a", r"relative\heraldw.exe");
        assert!(matches!(
            render_launcher(&s, &NoOem).unwrap_err(),
            InstallError::NotAbsolute { .. }
        ));
    }

    #[test]
    fn the_decoder_refuses_what_cmd_would_misread() {
        let ok = "@echo off\r\nif not exist \"C:\\h.exe\" exit /b 0\r\nstart \"\" /b \"C:\\h.exe\" run\r\n";
        assert_eq!(parse_launcher(ok.as_bytes(), &NoOem).unwrap().args, ["run"]);
        for bad in [
            ok.replace("run", "a & b"),
            ok.replace("run", "50%x"),
            ok.replace("run", "\"open"),
            format!("\u{feff}{ok}"),
        ] {
            assert!(parse_launcher(bad.as_bytes(), &NoOem).is_err(), "{bad}");
        }
    }
}
