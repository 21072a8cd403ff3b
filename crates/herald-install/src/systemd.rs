//! The systemd unit for a home, its quoting, and a reader for existing units (drift detection).
//!
//! **Invariant:** what systemd executes is exactly [`ServiceSpec::invocation`]. Every word of `ExecStart=`
//! is written in double quotes with systemd's escapes — `\\`, `\"`, C escapes for control characters,
//! `%%` for `%` (specifiers) and `$$` for `$` (environment substitution) — because field reports show
//! units built by joining words with spaces breaking on paths with spaces, `%` or `$`. The executable
//! path itself is not `$`-substituted by systemd, only `argv[0]` is, so a path with a `$` is written in the
//! `@path argv0` form. systemd itself refuses an executable path with a quote, a backslash or a control
//! character; so does [`render_unit`], with a typed error. The same rules are implemented backwards by [`split_words`] and [`parse_unit`], and
//! a property test checks the round trip; `tests/install_systemd.rs` checks that `systemd-analyze verify`
//! accepts every generated unit without a warning.
//!
//! The exit-code contract (0 planned stop, 1 failure, 75 restart requested, 78 fatal configuration) is
//! encoded here: `SuccessExitStatus=75` (a requested restart is not a failure), `RestartForceExitStatus=75`,
//! `RestartPreventExitStatus=78` (a broken config is not retried in a loop). `TimeoutStopSec` is the drain
//! budget plus a margin, so systemd never SIGKILLs a gateway in the middle of a drain. The gateway runs
//! with `run --no-supervise`: systemd restarts it, and two supervisors would fight.
//!
//! `Type=notify` with `NotifyAccess=main` and `WatchdogSec=`: the gateway reports `READY=1` once it serves,
//! pings `WATCHDOG=1` at half the interval, and sends `STOPPING=1` when it starts draining. Output goes to
//! the journal (systemd's own, rotated log), not to `logs/stdio.log`.

use super::error::InstallError;
use super::spec::{Backend, Invocation, Scope, ServiceSpec, refuse_chars, require_absolute};
use herald_home::paths::HOME_ENV;

const B: Backend = Backend::Systemd;

/// `RestartSec=`: the pause before systemd restarts the gateway (≥ 1 s, so a crash cannot spin).
pub const RESTART_SEC: u64 = 2;
/// `StartLimitBurst=` starts within `StartLimitIntervalSec=` before systemd gives up (the unit fails),
/// the same shape as the monitor's crash-loop breaker.
pub const START_LIMIT_BURST: u32 = 5;
pub const START_LIMIT_INTERVAL_SEC: u64 = 300;
/// `WatchdogSec=`: the gateway pings at half of it; a wedged event loop is killed and restarted.
pub const WATCHDOG_SEC: u64 = 60;
/// `TimeoutAbortSec=`: how long a gateway the watchdog aborted has before SIGKILL.
pub const TIMEOUT_ABORT_SEC: u64 = 10;

/// The unit file text for `spec` (write it as `names::systemd_unit(profile)`).
pub fn render_unit(spec: &ServiceSpec) -> Result<String, InstallError> {
    let invocation = spec.invocation(B)?;
    validate_executable(&invocation.program)?;
    let home = invocation.herald_home.clone().unwrap_or_default();
    require_absolute(B, "home", &home)?;
    // `WorkingDirectory=` takes the rest of its line as it is (no quoting, trailing blanks trimmed): a
    // line break or a trailing blank cannot be written there.
    refuse_chars(B, "home", &home, |c| matches!(c, '\0' | '\n' | '\r'))?;
    if let Some(blank) = home.chars().last().filter(|c| matches!(c, ' ' | '\t')) {
        return Err(InstallError::Unrepresentable {
            backend: B,
            what: "home (at its end)",
            value: home.clone(),
            ch: blank,
        });
    }
    for arg in &invocation.args {
        refuse_chars(B, "argument", arg, |c| c == '\0')?;
    }
    let user = match spec.scope {
        Scope::User => None,
        Scope::System => {
            let user = spec
                .run_as
                .as_deref()
                .ok_or(InstallError::MissingRunAs { backend: B })?;
            validate_user(user)?;
            Some(user)
        }
    };
    let description = match &spec.profile {
        Some(p) => format!("Herald gateway (profile {p})"),
        None => "Herald gateway".to_owned(),
    };

    let mut unit = String::new();
    let mut line = |s: &str| {
        unit.push_str(s);
        unit.push('\n');
    };
    line("# Written by `herald install`; `herald install` repairs any drift from this content.");
    line("[Unit]");
    line(&format!("Description={description}"));
    line(&format!("StartLimitIntervalSec={START_LIMIT_INTERVAL_SEC}"));
    line(&format!("StartLimitBurst={START_LIMIT_BURST}"));
    if user.is_some() {
        line("Wants=network-online.target");
        line("After=network-online.target");
    }
    line("");
    line("[Service]");
    line("Type=notify");
    line("NotifyAccess=main");
    line(&format!("WatchdogSec={WATCHDOG_SEC}"));
    line(&format!(
        "ExecStart={}",
        exec_line(&invocation.program, &invocation.args)
    ));
    // `systemctl reload`: the gateway re-reads herald.toml and the secrets (`herald reload`, which
    // fails — and so fails the reload — when the gateway refuses the new config).
    let reload_args: Vec<String> = invocation
        .args
        .iter()
        .take_while(|arg| *arg != "run")
        .cloned()
        .chain(std::iter::once("reload".to_owned()))
        .collect();
    line(&format!(
        "ExecReload={}",
        exec_line(&invocation.program, &reload_args)
    ));
    line(&format!(
        "Environment={}",
        quote_env_word(&format!("{HOME_ENV}={home}"))
    ));
    line(&format!("WorkingDirectory={}", home.replace('%', "%%")));
    if let Some(user) = user {
        line(&format!("User={user}"));
        // The gateway writes only to its home; everything else stays read-only to it (and to the
        // command agent it runs, which inherits this sandbox: see the README).
        line("NoNewPrivileges=yes");
        line("ProtectSystem=strict");
        line("ProtectHome=read-only");
        line(&format!("ReadWritePaths={}", quote_path_word(&home)));
        if !under_shared_tmp(&home) {
            // A private /tmp would hide a home that lives in the shared one.
            line("PrivateTmp=yes");
        }
    }
    line("UMask=0077");
    // `on-failure`, not `always`: a gateway that drained after a plain SIGTERM exits 0 and stays stopped.
    // Exit 75 is declared a success but forced to restart; 78 is never restarted.
    line("Restart=on-failure");
    line(&format!("RestartSec={RESTART_SEC}"));
    line("SuccessExitStatus=75");
    line("RestartForceExitStatus=75");
    line("RestartPreventExitStatus=78");
    line("KillMode=mixed");
    line(&format!("TimeoutStopSec={}", spec.stop_timeout_secs()));
    // After a watchdog timeout (SIGABRT) there is no drain to wait for: a gateway that does not die of
    // it (stopped, or stuck in the kernel) is killed after this, not after the drain budget.
    line(&format!("TimeoutAbortSec={TIMEOUT_ABORT_SEC}"));
    line("");
    line("[Install]");
    line(match spec.scope {
        Scope::User => "WantedBy=default.target",
        Scope::System => "WantedBy=multi-user.target",
    });
    Ok(unit)
}

/// The `ExecStart=` value for `program args…`.
pub fn exec_line(program: &str, args: &[String]) -> String {
    let mut words = Vec::with_capacity(args.len() + 2);
    if program.contains('$') {
        // The path is not `$`-substituted but argv[0] is: give both explicitly.
        words.push(format!("@{}", quote_word(program, false)));
        words.push(quote_exec_word(program));
    } else {
        words.push(quote_word(program, false));
    }
    words.extend(args.iter().map(|a| quote_exec_word(a)));
    words.join(" ")
}

/// One `ExecStart=` argument, quoted so systemd passes exactly `word` (`%`→`%%`, `$`→`$$`, C escapes).
pub fn quote_exec_word(word: &str) -> String {
    quote_word(word, true)
}

/// One `Environment=` assignment, quoted (`%`→`%%`; no `$` substitution happens there).
pub fn quote_env_word(word: &str) -> String {
    quote_word(word, false)
}

/// One path in a list such as `ReadWritePaths=`: systemd unquotes it but applies no C escapes there, so
/// only `\\`, `\"` and `%%` are written (a control character stands as it is).
fn quote_path_word(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 2);
    out.push('"');
    for c in path.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether `path` is in the machine-wide `/tmp` or `/var/tmp`, which `PrivateTmp=yes` would hide.
fn under_shared_tmp(path: &str) -> bool {
    let path = std::path::Path::new(path);
    path.starts_with("/tmp") || path.starts_with("/var/tmp")
}

fn quote_word(word: &str, dollars: bool) -> String {
    let mut out = String::with_capacity(word.len() + 2);
    out.push('"');
    for c in word.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' if dollars => out.push_str("$$"),
            '\n' => out.push_str(r"\n"),
            '\t' => out.push_str(r"\t"),
            '\r' => out.push_str(r"\r"),
            c if c.is_control() && c.is_ascii() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Splits a value into words the way systemd's `extract_first_word(UNQUOTE|CUNESCAPE)` does, then
/// resolves the `%%` specifier (any other specifier is refused: Herald never writes one). `$$` is left
/// alone: see [`parse_exec_start`].
pub fn split_words(value: &str) -> Result<Vec<String>, InstallError> {
    let mut words = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.next_if(|c| is_space(*c)).is_some() {}
        if chars.peek().is_none() {
            return Ok(words);
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match (quote, c) {
                (None, c) if is_space(c) => break,
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (_, '\\') => word.push(unescape_one(&mut chars)?),
                (_, c) => word.push(c),
            }
        }
        if quote.is_some() {
            return Err(unparsable(format!("unterminated quote in {value:?}")));
        }
        words.push(resolve_specifiers(&word)?);
    }
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn unparsable(reason: String) -> InstallError {
    InstallError::Unparsable { backend: B, reason }
}

/// One C escape after a backslash, as systemd's `cunescape_one` reads it.
fn unescape_one(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<char, InstallError> {
    let Some(c) = chars.next() else {
        return Err(unparsable("a backslash ends the value".to_owned()));
    };
    Ok(match c {
        'a' => '\x07',
        'b' => '\x08',
        'f' => '\x0c',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\x0b',
        's' => ' ',
        '\\' | '"' | '\'' => c,
        'x' => unescape_hex(chars, 2)?,
        'u' => unescape_hex(chars, 4)?,
        'U' => unescape_hex(chars, 8)?,
        '0'..='7' => {
            let mut digits = String::from(c);
            digits.extend((0..2).filter_map(|_| chars.next()));
            u32::from_str_radix(&digits, 8)
                .ok()
                .filter(|&v| digits.len() == 3 && v != 0 && v < 256)
                .and_then(char::from_u32)
                .ok_or_else(|| unparsable(format!("bad octal escape \\{digits}")))?
        }
        other => return Err(unparsable(format!("unknown escape \\{other}"))),
    })
}

fn unescape_hex(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    n: usize,
) -> Result<char, InstallError> {
    let digits: String = (0..n).filter_map(|_| chars.next()).collect();
    u32::from_str_radix(&digits, 16)
        .ok()
        .filter(|_| digits.len() == n)
        .and_then(char::from_u32)
        .filter(|&c| c != '\0')
        .ok_or_else(|| unparsable(format!("bad escape \\…{digits}")))
}

fn resolve_specifiers(word: &str) -> Result<String, InstallError> {
    let mut out = String::with_capacity(word.len());
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some('%') => out.push('%'),
                other => {
                    return Err(unparsable(format!(
                        "unsupported specifier %{}",
                        other.unwrap_or(' ')
                    )));
                }
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// `$$` → `$` in one argument, as systemd does when it runs the command (a `${VAR}` or `$VAR` would be
/// substituted; Herald never writes one, so it is refused).
fn resolve_dollars(word: &str) -> Result<String, InstallError> {
    let mut out = String::with_capacity(word.len());
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        if c == '$' {
            match chars.next() {
                Some('$') => out.push('$'),
                Some('{') => return Err(unparsable(format!("environment substitution in {word:?}"))),
                Some(other) => {
                    out.push('$');
                    out.push(other);
                }
                None => out.push('$'),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// The program and argv (without argv\[0\]) an `ExecStart=` value runs. Prefixes (`-`, `:`, `+`, `!`,
/// `@`) are accepted; `@` takes the next word as argv\[0\] (which this ignores).
pub fn parse_exec_start(value: &str) -> Result<(String, Vec<String>), InstallError> {
    let mut words = split_words(value)?.into_iter();
    let first = words
        .next()
        .ok_or_else(|| unparsable("empty ExecStart=".to_owned()))?;
    let program = first.trim_start_matches(['-', ':', '+', '!', '@']);
    let at = first[..first.len() - program.len()].contains('@');
    let program = program.trim_start_matches(['-', ':', '+', '!', '@']).to_owned();
    if at {
        words.next();
    }
    let args = words.map(|w| resolve_dollars(&w)).collect::<Result<_, _>>()?;
    Ok((program, args))
}

/// What an existing unit says, for drift detection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnitFacts {
    /// `(section, key, value)` of every assignment, continuation lines joined, in file order.
    pub assignments: Vec<(String, String, String)>,
}

impl UnitFacts {
    /// The effective value of a single-valued key (the last assignment wins; an empty one resets).
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.assignments
            .iter()
            .rev()
            .find(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// The `Environment=` assignments in effect, in order (an empty `Environment=` resets the list).
    pub fn environment(&self) -> Result<Vec<(String, String)>, InstallError> {
        let mut env = Vec::new();
        for (s, k, v) in &self.assignments {
            if s != "Service" || k != "Environment" {
                continue;
            }
            if v.is_empty() {
                env.clear();
            }
            for word in split_words(v)? {
                let (name, value) = word
                    .split_once('=')
                    .ok_or_else(|| unparsable(format!("Environment= word without '=': {word:?}")))?;
                env.retain(|(n, _)| n != name);
                env.push((name.to_owned(), value.to_owned()));
            }
        }
        Ok(env)
    }

    /// The invocation the unit runs: `ExecStart=` and `HERALD_HOME` from `Environment=`.
    pub fn invocation(&self) -> Result<Invocation, InstallError> {
        let exec = self
            .get("Service", "ExecStart")
            .ok_or_else(|| unparsable("no ExecStart=".to_owned()))?;
        let (program, args) = parse_exec_start(exec)?;
        let herald_home = self
            .environment()?
            .into_iter()
            .find(|(n, _)| n == HOME_ENV)
            .map(|(_, v)| v);
        Ok(Invocation {
            program,
            args,
            herald_home,
        })
    }
}

/// Reads a unit file: sections, `Key=Value` assignments, comments and backslash continuations.
pub fn parse_unit(text: &str) -> Result<UnitFacts, InstallError> {
    let mut facts = UnitFacts::default();
    let mut section = String::new();
    let mut pending: Option<String> = None;
    for raw in text.lines() {
        let raw = raw.trim_end_matches('\r');
        let line = match pending.take() {
            Some(mut joined) => {
                if raw.trim_start().starts_with(['#', ';']) {
                    pending = Some(joined);
                    continue;
                }
                joined.push(' ');
                joined.push_str(raw);
                joined
            }
            None => raw.to_owned(),
        };
        if let Some(head) = line.strip_suffix('\\') {
            pending = Some(head.to_owned());
            continue;
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| unparsable(format!("not an assignment: {line:?}")))?;
        facts
            .assignments
            .push((section.clone(), key.trim().to_owned(), value.trim().to_owned()));
    }
    Ok(facts)
}

/// systemd requires an absolute, normalized executable path without quotes, backslashes or control
/// characters.
fn validate_executable(path: &str) -> Result<(), InstallError> {
    require_absolute(B, "executable", path)?;
    // systemd refuses ("Executable name contains special characters") what `string_is_safe` rejects.
    refuse_chars(B, "executable", path, |c| {
        c.is_ascii_control() || matches!(c, '"' | '\'' | '\\')
    })?;
    let normalized = !path.ends_with('/')
        && !path.contains("//")
        && !path.split('/').any(|part| part == "." || part == "..");
    if normalized {
        Ok(())
    } else {
        Err(InstallError::NotNormalized {
            backend: B,
            what: "executable",
            value: path.to_owned(),
        })
    }
}

/// A user name systemd accepts in `User=` without quoting: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}`.
fn validate_user(name: &str) -> Result<(), InstallError> {
    let ok = name.len() <= 32
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(InstallError::InvalidUser {
            backend: B,
            name: name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(exe: &str, home: &str) -> ServiceSpec {
        crate::spec::unix_spec(exe, home, None, 30)
    }

    #[test]
    fn the_unit_encodes_the_exit_code_contract_and_timeouts() {
        let unit = render_unit(&spec("/usr/bin/herald", "/home/a/.herald")).unwrap();
        for line in [
            "Type=notify",
            "NotifyAccess=main",
            "Restart=on-failure",
            "WorkingDirectory=/home/a/.herald",
            "SuccessExitStatus=75",
            "RestartForceExitStatus=75",
            "RestartPreventExitStatus=78",
            "KillMode=mixed",
            "TimeoutStopSec=45",
            "WantedBy=default.target",
            "ExecStart=\"/usr/bin/herald\" \"--home\" \"/home/a/.herald\" \"run\" \"--no-supervise\"",
            "ExecReload=\"/usr/bin/herald\" \"--home\" \"/home/a/.herald\" \"reload\"",
            "Environment=\"HERALD_HOME=/home/a/.herald\"",
        ] {
            assert!(unit.lines().any(|l| l == line), "{line} missing from\n{unit}");
        }
        assert!(!unit.contains("User="));
        // The sandbox is for system units; a user manager cannot set most of it up unprivileged.
        assert!(!unit.contains("ProtectSystem"));
    }

    #[test]
    fn a_system_unit_runs_as_a_named_user() {
        let mut s = spec("/usr/bin/herald", "/home/a/.herald");
        s.scope = Scope::System;
        assert_eq!(
            render_unit(&s).unwrap_err(),
            InstallError::MissingRunAs { backend: B }
        );
        s.run_as = Some("al ice".into());
        assert!(matches!(
            render_unit(&s).unwrap_err(),
            InstallError::InvalidUser { .. }
        ));
        s.run_as = Some("alice".into());
        let unit = render_unit(&s).unwrap();
        assert!(unit.contains("\nUser=alice\n") && unit.contains("WantedBy=multi-user.target"));
        for line in [
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=read-only",
            "ReadWritePaths=\"/home/a/.herald\"",
            "PrivateTmp=yes",
        ] {
            assert!(unit.lines().any(|l| l == line), "{line} missing from\n{unit}");
        }
        // A home in the shared /tmp: a private /tmp would hide it.
        let mut in_tmp = spec("/usr/bin/herald", "/tmp/h 50% \"q\"");
        in_tmp.scope = Scope::System;
        in_tmp.run_as = Some("alice".into());
        let unit = render_unit(&in_tmp).unwrap();
        assert!(!unit.contains("PrivateTmp"), "{unit}");
        assert!(
            unit.contains("\nReadWritePaths=\"/tmp/h 50%% \\\"q\\\"\"\n"),
            "{unit}"
        );
        assert!(unit.contains("\nWorkingDirectory=/tmp/h 50%% \"q\"\n"), "{unit}");
    }

    #[test]
    fn a_home_that_cannot_be_a_working_directory_is_refused() {
        for home in ["/h\nx", "/h\r", "/h "] {
            assert!(
                matches!(
                    render_unit(&spec("/bin/herald", home)).unwrap_err(),
                    InstallError::Unrepresentable { .. }
                ),
                "{home:?}"
            );
        }
    }

    #[test]
    fn hostile_paths_round_trip_through_the_unit() {
        let s = crate::spec::unix_spec(
            "/opt/her ald$1/%h/herald",
            "/home/a b/50% \"q\" $HOME ${X} \\ é\t!&^",
            Some("w-1"),
            5,
        );
        let facts = parse_unit(&render_unit(&s).unwrap()).unwrap();
        assert_eq!(facts.invocation().unwrap(), s.invocation(B).unwrap());
        assert_eq!(facts.get("Service", "TimeoutStopSec"), Some("20"));
    }

    #[test]
    fn quoting_follows_systemd_rules() {
        assert_eq!(quote_exec_word("a b"), "\"a b\"");
        assert_eq!(quote_exec_word("50%$"), "\"50%%$$\"");
        assert_eq!(quote_exec_word("\\\"\x01\u{85}"), "\"\\\\\\\"\\x01\\u0085\"");
        assert_eq!(quote_env_word("$%"), "\"$%%\"");
        assert_eq!(
            split_words("a \"b c\"d 'e f' \\x41 %%").unwrap(),
            ["a", "b cd", "e f", "A", "%"]
        );
        assert!(split_words("\"open").is_err());
        assert!(split_words("%h").is_err());
    }

    #[test]
    fn paths_systemd_would_reject_are_refused() {
        for exe in [
            "herald",
            "/a/../herald",
            "/a//h",
            "/a/./h",
            "/a/",
            "/a\"b",
            "/a'b",
            "/a\\b",
            "/a\tb",
        ] {
            assert!(render_unit(&spec(exe, "/h")).is_err(), "{exe}");
        }
        let mut relative = spec("/bin/herald", "/h");
        relative.home_root = "rel".into();
        assert!(matches!(
            render_unit(&relative).unwrap_err(),
            InstallError::NotAbsolute { .. }
        ));
    }

    #[test]
    fn continuations_and_resets_are_understood() {
        let facts = parse_unit(
            "[Service]\nEnvironment=A=1\nEnvironment=\nExecStart=/bin/x \\\n  \"y z\"\nEnvironment=\"HERALD_HOME=/h\" B=2\n",
        )
        .unwrap();
        let inv = facts.invocation().unwrap();
        assert_eq!(inv.program, "/bin/x");
        assert_eq!(inv.args, ["y z"]);
        assert_eq!(inv.herald_home.as_deref(), Some("/h"));
        assert_eq!(facts.environment().unwrap().len(), 2);
    }
}
