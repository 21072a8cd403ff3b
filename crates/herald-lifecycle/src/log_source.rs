//! Where a home's gateway output went, and how to read it back from there.
//!
//! A gateway started by `herald start`, a Windows logon task, the Startup entry, the Windows Service or
//! launchd writes to `logs/stdio.log`; one run by systemd writes to its stderr, which systemd hands to
//! journald — `stdio.log` then holds only what an earlier, unmanaged gateway wrote. So `herald logs`
//! reads the journal for a home registered with systemd and the file otherwise, and says which.
//!
//! The journal is read through `journalctl -o json` rather than the sd-journal C API: that keeps
//! libsystemd out of the build (and out of the Windows and macOS builds), and `journalctl` is what knows
//! the journal's file format versions, rotation, the split between system and user journals and who may
//! read which; its JSON output is a documented, stable interface. Each entry becomes one line in the
//! gateway log's own shape (`TIME  LEVEL message`) by [`journal_line`], so `--json`, `--since` and the
//! rest treat both sources alike.
//!
//! **Invariant:** the source is decided from the registration on disk (the unit file naming this home),
//! never from whether a gateway runs now: the logs of a stopped or crashed unit are in the journal too.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_install::Scope;
use herald_install::context::{Context, TargetOs};
use herald_install::manage::{self, Registered};
use herald_install::names;
use herald_install::runner::SystemRunner;

use crate::error::LifecycleError;
use crate::route::{machine, service_spec};
use crate::target::Target;

/// Where the gateway's output is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSource {
    /// `logs/stdio.log` in the home.
    File(PathBuf),
    /// The journal of a systemd unit.
    Journal(JournalQuery),
}

/// One unit's entries in the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalQuery {
    pub unit: String,
    pub scope: Scope,
}

/// What to ask `journalctl` for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JournalRead {
    /// The last N entries (all of them when `None`).
    pub lines: Option<usize>,
    /// Entries from this second on (`journalctl` knows no finer cutoff: the reader drops the rest).
    pub since: Option<SystemTime>,
    pub follow: bool,
}

impl JournalQuery {
    /// `the journal of herald.service (systemd user unit)`.
    pub fn describe(&self) -> String {
        let scope = match self.scope {
            Scope::User => "user",
            Scope::System => "system",
        };
        format!("the journal of {} (systemd {scope} unit)", self.unit)
    }

    /// The `journalctl` arguments that read `read` of this unit as JSON, one entry per line.
    pub fn journalctl_args(&self, read: JournalRead) -> Vec<String> {
        let mut args = vec!["--no-pager".to_owned(), "--output=json".to_owned()];
        // `--user-unit` matches the unit's own output and the user manager's messages about it.
        args.push(match self.scope {
            Scope::User => format!("--user-unit={}", self.unit),
            Scope::System => format!("--unit={}", self.unit),
        });
        args.push(match read.lines {
            Some(n) => format!("--lines={n}"),
            None => "--lines=all".to_owned(),
        });
        if let Some(since) = read.since {
            // journalctl takes whole seconds since the epoch: this is the second the cutoff falls in,
            // and the reader drops the entries before the cutoff itself.
            let secs = since
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_secs();
            args.push(format!("--since=@{secs}"));
        }
        if read.follow {
            args.push("--follow".to_owned());
        }
        args
    }
}

/// Where this home's gateway output is: the journal when a systemd unit names this home.
pub fn log_source(target: &Target) -> Result<LogSource, LifecycleError> {
    let file = LogSource::File(target.home().stdio_log());
    let ctx = Context::current();
    if ctx.os != TargetOs::Linux {
        // Only systemd sends the output elsewhere (and asking the SCM would cost a round trip).
        return Ok(file);
    }
    let spec = service_spec(target)?;
    let mut runner = SystemRunner::default();
    let machine = machine(target.home(), &ctx, &mut runner);
    Ok(match manage::detect(&spec, &machine)? {
        Some(Registered::Systemd { scope }) => LogSource::Journal(JournalQuery {
            unit: names::systemd_unit(spec.profile.as_ref()),
            scope,
        }),
        _ => file,
    })
}

/// One `journalctl -o json` entry as a gateway log line. The gateway's own lines carry tracing's time and
/// level already and pass as they are; any other entry (systemd's "Started …", a panic's lines, output
/// before logging started) gets the journal's time, a level from its priority and who wrote it.
/// `None` for a line that is not a journal entry.
pub fn journal_line(entry: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(entry).ok()?;
    let message = match value.get("MESSAGE") {
        Some(serde_json::Value::String(text)) => text.clone(),
        // A message that is not UTF-8 comes as an array of bytes.
        Some(serde_json::Value::Array(bytes)) => {
            let bytes: Vec<u8> = bytes
                .iter()
                .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => String::new(),
    };
    let message = message.trim_end();
    let (first, _) = message.split_once(' ').unwrap_or((message, ""));
    if humantime::parse_rfc3339(first).is_ok() {
        return Some(message.to_owned());
    }
    let micros: u64 = value
        .get("__REALTIME_TIMESTAMP")
        .and_then(|t| t.as_str())
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let time = UNIX_EPOCH + Duration::from_micros(micros);
    let level = match value.get("PRIORITY").and_then(|p| p.as_str()) {
        Some("0" | "1" | "2" | "3") => "ERROR",
        Some("4") => "WARN",
        Some("7") => "DEBUG",
        _ => "INFO",
    };
    let who = value
        .get("SYSLOG_IDENTIFIER")
        .and_then(|w| w.as_str())
        .unwrap_or("journal");
    Some(format!(
        "{}  {level} {who}: {message}",
        humantime::format_rfc3339_micros(time)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateways_own_lines_pass_as_they_are() {
        let entry = r#"{"__REALTIME_TIMESTAMP":"1764181200000000","PRIORITY":"6","SYSLOG_IDENTIFIER":"herald","MESSAGE":"2026-11-26T18:20:25.123456Z  INFO turn ended session=a"}"#;
        assert_eq!(
            journal_line(entry).as_deref(),
            Some("2026-11-26T18:20:25.123456Z  INFO turn ended session=a")
        );
    }

    #[test]
    fn other_entries_get_the_journals_time_a_level_and_who_wrote_them() {
        let started = r#"{"__REALTIME_TIMESTAMP":"1764181200000001","PRIORITY":"6","SYSLOG_IDENTIFIER":"systemd","MESSAGE":"Started herald.service - Herald gateway."}"#;
        assert_eq!(
            journal_line(started).as_deref(),
            Some("2025-11-26T18:20:00.000001Z  INFO systemd: Started herald.service - Herald gateway.")
        );
        // Not UTF-8: an array of bytes, read lossily; priority 3 is an error.
        let binary = r#"{"__REALTIME_TIMESTAMP":"1764181200000000","PRIORITY":"3","SYSLOG_IDENTIFIER":"herald","MESSAGE":[104,105,255]}"#;
        assert_eq!(
            journal_line(binary).as_deref(),
            Some("2025-11-26T18:20:00.000000Z  ERROR herald: hi\u{fffd}")
        );
        assert_eq!(journal_line("-- No entries --"), None);
    }

    #[test]
    fn journalctl_is_asked_for_exactly_the_units_entries() {
        let user = JournalQuery {
            unit: "herald-work.service".into(),
            scope: Scope::User,
        };
        assert_eq!(
            user.journalctl_args(JournalRead {
                lines: Some(50),
                since: None,
                follow: true
            }),
            [
                "--no-pager",
                "--output=json",
                "--user-unit=herald-work.service",
                "--lines=50",
                "--follow"
            ]
        );
        let system = JournalQuery {
            unit: "herald.service".into(),
            scope: Scope::System,
        };
        assert_eq!(
            system.journalctl_args(JournalRead {
                lines: None,
                since: Some(UNIX_EPOCH + Duration::from_micros(1_764_181_200_000_042)),
                follow: false
            }),
            [
                "--no-pager",
                "--output=json",
                "--unit=herald.service",
                "--lines=all",
                "--since=@1764181200"
            ]
        );
        assert_eq!(
            user.describe(),
            "the journal of herald-work.service (systemd user unit)"
        );
    }
}
