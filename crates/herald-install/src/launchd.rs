//! The launchd property list for a home, and a reader for existing ones (drift detection).
//!
//! **Invariant:** the plist is built as a `plist::Value` and serialized by the `plist` crate, never by
//! string formatting, so no path can break the XML; `ProgramArguments` is an array, so launchd needs no
//! quoting at all. Characters XML 1.0 cannot carry (control characters) are refused with a typed error
//! rather than written into a file launchd would reject or read differently.
//!
//! Keys, and why: `RunAtLoad` (start at login / bootstrap); `KeepAlive = {SuccessfulExit = false}` (come
//! back after a crash or an exit 75, but a planned stop's exit 0 stays stopped — a plain `KeepAlive=true`
//! respawned a clean exit in a loop); `ProgramArguments` ending in `run --no-supervise --launchd`
//! (`KeepAlive` cannot exempt exit 78, which would be respawned every `ThrottleInterval` forever, so the
//! job's gateway never exits 78: it waits, idle in `startup_failed`, for its config to be fixed); `ThrottleInterval` (the minimum pause between respawns);
//! `ExitTimeOut` = drain budget + margin (launchd's SIGKILL must not cut a drain); `StandardOutPath` /
//! `StandardErrorPath` = `logs/stdio.log`; `Umask` = 0o077 (the home holds secrets); `EnvironmentVariables`
//! with `HERALD_HOME`. No `ProcessType`: `Background` throttles CPU and I/O, which would delay replies; the
//! default suits a gateway. A system-wide job (LaunchDaemon) adds `UserName`.

use std::io::Cursor;

use plist::{Dictionary, Value};

use super::error::InstallError;
use super::names;
use super::spec::{Backend, Invocation, Scope, ServiceSpec, refuse_chars, require_absolute, text};
use herald_home::paths::HOME_ENV;

const B: Backend = Backend::Launchd;

/// `ThrottleInterval`: seconds between respawns.
pub const THROTTLE_INTERVAL_SECS: u64 = 10;
/// `Umask`, written as the integer launchd expects (0o077 = 63).
pub const UMASK: u64 = 0o077;

/// The plist bytes (XML) for `spec`; write them as `names::launchd_plist_file(profile)`, mode 0644.
pub fn render_plist(spec: &ServiceSpec) -> Result<Vec<u8>, InstallError> {
    let invocation = spec.invocation(B)?;
    let home = invocation.herald_home.clone().unwrap_or_default();
    let log = text(B, "log", &spec.stdio_log)?;
    for (what, path) in [
        ("executable", &invocation.program),
        ("home", &home),
        ("log", &log),
    ] {
        require_absolute(B, what, path)?;
    }
    for value in [&invocation.program, &home, &log]
        .into_iter()
        .chain(&invocation.args)
    {
        refuse_chars(B, "path", value, char::is_control)?;
    }

    let mut dict = Dictionary::new();
    dict.insert("Label".into(), names::launchd_label(spec.profile.as_ref()).into());
    let argv: Vec<Value> = std::iter::once(&invocation.program)
        .chain(&invocation.args)
        .map(|a| Value::String(a.clone()))
        .collect();
    dict.insert("ProgramArguments".into(), Value::Array(argv));
    dict.insert("RunAtLoad".into(), true.into());
    let mut keep_alive = Dictionary::new();
    keep_alive.insert("SuccessfulExit".into(), false.into());
    dict.insert("KeepAlive".into(), keep_alive.into());
    dict.insert("ThrottleInterval".into(), THROTTLE_INTERVAL_SECS.into());
    dict.insert("ExitTimeOut".into(), spec.stop_timeout_secs().into());
    dict.insert("StandardOutPath".into(), log.clone().into());
    dict.insert("StandardErrorPath".into(), log.into());
    dict.insert("Umask".into(), UMASK.into());
    let mut env = Dictionary::new();
    env.insert(HOME_ENV.into(), home.into());
    dict.insert("EnvironmentVariables".into(), env.into());
    if spec.scope == Scope::System {
        let user = spec
            .run_as
            .as_deref()
            .ok_or(InstallError::MissingRunAs { backend: B })?;
        refuse_chars(B, "user", user, char::is_control)?;
        dict.insert("UserName".into(), user.into());
    }

    let mut out = Vec::new();
    Value::Dictionary(dict)
        .to_writer_xml(&mut out)
        .map_err(|e| InstallError::Unparsable {
            backend: B,
            reason: format!("cannot serialize the plist: {e}"),
        })?;
    out.push(b'\n');
    Ok(out)
}

/// What an existing plist says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlistFacts {
    pub label: Option<String>,
    pub program_arguments: Vec<String>,
    pub herald_home: Option<String>,
    pub stdout_path: Option<String>,
    pub stderr_path: Option<String>,
    pub exit_timeout: Option<u64>,
    pub throttle_interval: Option<u64>,
    pub umask: Option<u64>,
    pub run_at_load: Option<bool>,
    /// `KeepAlive.SuccessfulExit`, when `KeepAlive` is a dictionary.
    pub keep_alive_successful_exit: Option<bool>,
    pub user_name: Option<String>,
}

impl PlistFacts {
    /// The invocation the job runs (`ProgramArguments[0]` is the program).
    pub fn invocation(&self) -> Result<Invocation, InstallError> {
        let (program, args) = self
            .program_arguments
            .split_first()
            .ok_or(InstallError::Unparsable {
                backend: B,
                reason: "no ProgramArguments".to_owned(),
            })?;
        Ok(Invocation {
            program: program.clone(),
            args: args.to_vec(),
            herald_home: self.herald_home.clone(),
        })
    }
}

/// Reads a plist (XML or binary) back into the facts drift detection compares.
pub fn parse_plist(bytes: &[u8]) -> Result<PlistFacts, InstallError> {
    let value = Value::from_reader(Cursor::new(bytes)).map_err(|e| InstallError::Unparsable {
        backend: B,
        reason: e.to_string(),
    })?;
    let dict = value.as_dictionary().ok_or(InstallError::Unparsable {
        backend: B,
        reason: "the plist is not a dictionary".to_owned(),
    })?;
    let string = |key: &str| dict.get(key).and_then(Value::as_string).map(str::to_owned);
    let uint = |key: &str| dict.get(key).and_then(Value::as_unsigned_integer);
    Ok(PlistFacts {
        label: string("Label"),
        program_arguments: dict
            .get("ProgramArguments")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_string).map(str::to_owned).collect())
            .unwrap_or_default(),
        herald_home: dict
            .get("EnvironmentVariables")
            .and_then(Value::as_dictionary)
            .and_then(|env| env.get(HOME_ENV))
            .and_then(Value::as_string)
            .map(str::to_owned),
        stdout_path: string("StandardOutPath"),
        stderr_path: string("StandardErrorPath"),
        exit_timeout: uint("ExitTimeOut"),
        throttle_interval: uint("ThrottleInterval"),
        umask: uint("Umask"),
        run_at_load: dict.get("RunAtLoad").and_then(Value::as_boolean),
        keep_alive_successful_exit: dict
            .get("KeepAlive")
            .and_then(Value::as_dictionary)
            .and_then(|k| k.get("SuccessfulExit"))
            .and_then(Value::as_boolean),
        user_name: string("UserName"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::unix_spec;

    #[test]
    fn the_plist_round_trips_with_every_key() {
        let spec = unix_spec(
            "/Applications/Her ald.app/herald",
            "/Users/a b/50% \"q\" $X & <y> é!^",
            Some("work"),
            30,
        );
        let bytes = render_plist(&spec).unwrap();
        let facts = parse_plist(&bytes).unwrap();
        assert_eq!(facts.invocation().unwrap(), spec.invocation(B).unwrap());
        assert_eq!(facts.label.as_deref(), Some("dev.herald.gateway.work"));
        assert_eq!(facts.exit_timeout, Some(45));
        assert_eq!(facts.umask, Some(63));
        assert_eq!(facts.throttle_interval, Some(THROTTLE_INTERVAL_SECS));
        assert_eq!(facts.run_at_load, Some(true));
        assert_eq!(facts.keep_alive_successful_exit, Some(false));
        assert_eq!(facts.stdout_path.as_deref(), spec.stdio_log.to_str());
        assert_eq!(facts.stderr_path, facts.stdout_path);
        assert_eq!(facts.user_name, None);
        assert!(
            String::from_utf8(bytes)
                .unwrap()
                .contains("<integer>63</integer>")
        );
    }

    #[test]
    fn a_launch_daemon_names_its_user() {
        let mut spec = unix_spec("/usr/local/bin/herald", "/h", None, 0);
        spec.scope = Scope::System;
        assert_eq!(
            render_plist(&spec).unwrap_err(),
            InstallError::MissingRunAs { backend: B }
        );
        spec.run_as = Some("alice".into());
        let facts = parse_plist(&render_plist(&spec).unwrap()).unwrap();
        assert_eq!(facts.user_name.as_deref(), Some("alice"));
        assert_eq!(facts.exit_timeout, Some(15));
    }

    #[test]
    fn control_characters_and_relative_paths_are_refused() {
        let spec = unix_spec("/usr/local/bin/herald", "/h\u{1}x", None, 0);
        assert!(matches!(
            render_plist(&spec).unwrap_err(),
            InstallError::Unrepresentable { ch: '\u{1}', .. }
        ));
        let spec = unix_spec("herald", "/h", None, 0);
        assert!(matches!(
            render_plist(&spec).unwrap_err(),
            InstallError::NotAbsolute { .. }
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_plist(b"not a plist").is_err());
        assert!(parse_plist(b"<?xml version=\"1.0\"?><plist><array/></plist>").is_err());
    }
}
