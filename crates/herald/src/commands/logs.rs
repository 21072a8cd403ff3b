//! `herald logs [-f] [-n N] [--since WHEN] [--json] [--lifecycle]`.
//!
//! The gateway's output is read where it went (`herald_lifecycle::log_source`): journald for a home
//! registered with systemd (through `journalctl`, each entry turned into a gateway log line), else
//! `logs/stdio.log`. Which one is said on stderr.
//!
//! The gateway log (`logs/stdio.log`) holds tracing's lines — `2026-11-26T18:20:25.123456Z  INFO message
//! key=value` — and whatever else the process wrote (a panic, a multi-line message); the lifecycle log
//! holds one JSON event per line with its `ts`. `--since` keeps the lines whose own time is at or after
//! the cutoff; a line without a time of its own is a continuation and goes with the line before it. With
//! `--json`, a gateway line and its continuations are one object `{time, level, message}` (`time` and
//! `level` null when the log gave none); a lifecycle event is printed as the JSON it is.
//!
//! Following is event-driven (file notifications on the logs directory, with a 1 s safety net) and
//! survives rotation: when the file at the path is no longer the one being read (it shrank, or on Unix
//! its inode changed), the new file is read from its start. `-f` says on stderr what it follows and why
//! it may stay quiet, since a gateway run in the foreground writes to its terminal, not to this file.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use herald_home::atomic::read_record;
use herald_home::lifecycle::{LifecycleEvent, parse_events};
use herald_home::lock::InstanceLock;
use herald_home::records::PidRecord;
use herald_home::{ExitCode, Home};
use herald_lifecycle::Target;
use herald_lifecycle::log_source::{JournalQuery, JournalRead, LogSource, journal_line, log_source};
use notify::{RecursiveMode, Watcher};
use serde_json::{Value, json};

use crate::cli::LogsArgs;

/// How many lines are printed first when neither `-n` nor `--since` says.
const DEFAULT_LINES: usize = 50;

pub fn logs(target: &Target, args: &LogsArgs) -> ExitCode {
    let home = target.home();
    if let Some(missing) = super::missing_home(home) {
        eprintln!("herald: {missing}");
        return ExitCode::Failure;
    }
    if !args.lifecycle {
        match log_source(target) {
            Ok(LogSource::Journal(query)) => return journal(&query, args),
            Ok(LogSource::File(_)) => {}
            // Cannot tell (no executable path, unreadable unit): the file is still worth showing.
            Err(e) => eprintln!(
                "herald: cannot tell whether a service manager keeps the log ({e}); reading the file"
            ),
        }
    }
    let path = if args.lifecycle {
        home.lifecycle_log()
    } else {
        home.stdio_log()
    };
    if !path.exists() && !args.follow {
        println!(
            "no log yet at {}{}",
            path.display(),
            if args.lifecycle {
                ""
            } else {
                " (a gateway run in the foreground logs to its terminal; one started by `herald start`, a Windows \
                 logon task, Run value or Windows Service logs here)"
            }
        );
        return ExitCode::Ok;
    }
    let kind = if args.lifecycle {
        LogKind::Lifecycle
    } else {
        LogKind::Gateway
    };
    let mut printer = Printer::new(kind, args.json);
    let mut offset = 0;
    if let Ok(bytes) = std::fs::read(&path) {
        let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
        let mut chosen = match args.since {
            Some(cutoff) => since(&lines, kind, cutoff),
            None => lines,
        };
        let limit = args.lines.unwrap_or(if args.since.is_some() {
            usize::MAX
        } else {
            DEFAULT_LINES
        });
        let chosen = chosen.split_off(chosen.len().saturating_sub(limit));
        let mut out = io::stdout().lock();
        let printed = chosen
            .iter()
            .try_for_each(|line| printer.line(line, &mut out))
            .and_then(|()| printer.flush(&mut out))
            .and_then(|()| out.flush());
        if printed.is_err() {
            return ExitCode::Ok;
        }
        offset = bytes.len() as u64;
    }
    if !args.follow {
        return ExitCode::Ok;
    }
    eprintln!("{}", follow_notice(home, &path, kind));
    match follow(&path, offset, &mut printer) {
        Ok(()) => ExitCode::Ok,
        Err(e) => {
            eprintln!("herald: cannot follow {}: {e}", path.display());
            ExitCode::Failure
        }
    }
}

/// The gateway's output from journald: `journalctl -o json` for the unit, each entry turned into a
/// gateway log line and printed as a line of `stdio.log` would be.
fn journal(query: &JournalQuery, args: &LogsArgs) -> ExitCode {
    let read = JournalRead {
        lines: args.lines.or(if args.since.is_some() {
            None
        } else {
            Some(DEFAULT_LINES)
        }),
        since: args.since,
        follow: args.follow,
    };
    eprintln!(
        "herald: {} {} (systemd keeps this gateway's output there, not in logs/stdio.log)",
        if args.follow { "following" } else { "reading" },
        query.describe()
    );
    let child = std::process::Command::new("journalctl")
        .args(query.journalctl_args(read))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            eprintln!("herald: cannot run journalctl to read {}: {e}", query.describe());
            return ExitCode::Failure;
        }
    };
    let mut printer = Printer::new(LogKind::Gateway, args.json);
    let entries = BufReader::new(child.stdout.take().expect("piped stdout"));
    for entry in entries.split(b'\n') {
        let Ok(entry) = entry else { break };
        let Some(line) = journal_line(&String::from_utf8_lossy(&entry)) else {
            continue;
        };
        // journalctl cuts at whole seconds; the cutoff itself is finer.
        if let Some(cutoff) = args.since
            && line_time(LogKind::Gateway, line.as_bytes()).is_some_and(|time| time < cutoff)
        {
            continue;
        }
        let mut out = io::stdout().lock();
        let printed = printer.line(line.as_bytes(), &mut out).and_then(|()| {
            // Following, every entry is shown as it comes.
            if args.follow {
                printer.flush(&mut out).and_then(|()| out.flush())
            } else {
                Ok(())
            }
        });
        if printed.is_err() {
            // The reader went away (a closed pipe): stop journalctl too.
            let _ = child.kill();
            let _ = child.wait();
            return ExitCode::Ok;
        }
    }
    let mut out = io::stdout().lock();
    let _ = printer.flush(&mut out).and_then(|()| out.flush());
    match child.wait() {
        Ok(status) if status.success() => ExitCode::Ok,
        Ok(status) => {
            eprintln!(
                "herald: journalctl failed ({status}) reading {}",
                query.describe()
            );
            ExitCode::Failure
        }
        Err(e) => {
            eprintln!("herald: journalctl: {e}");
            ExitCode::Failure
        }
    }
}

/// `--since`'s value: a duration ago (`30s`, `10m`, `2h`, `1d`, `1h30m`) or a UTC time in RFC 3339
/// (`2026-11-26T18:00:00Z`; the `Z` may be left out, and a space may stand for the `T`).
pub fn parse_since(text: &str) -> Result<SystemTime, String> {
    parse_since_at(text, SystemTime::now())
}

fn parse_since_at(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    let text = text.trim();
    if let Ok(ago) = humantime::parse_duration(text) {
        return now
            .checked_sub(ago)
            .ok_or_else(|| format!("{text} ago is before the clock's epoch"));
    }
    humantime::parse_rfc3339_weak(text).map_err(|_| {
        format!("{text:?} is neither a duration (30s, 10m, 2h, 1d) nor a UTC time (2026-11-26T18:00:00Z)")
    })
}

/// Which log is read: what its lines look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogKind {
    Gateway,
    Lifecycle,
}

/// The time a line carries: tracing's timestamp first on a gateway line, `ts` of a lifecycle event.
/// `None` for a line without one (a continuation).
fn line_time(kind: LogKind, line: &[u8]) -> Option<SystemTime> {
    match kind {
        LogKind::Gateway => GatewayLine::parse(&String::from_utf8_lossy(line)).time,
        LogKind::Lifecycle => parse_events(line)
            .0
            .first()
            .and_then(|event| humantime::parse_rfc3339_weak(&event.ts).ok()),
    }
}

/// The lines at or after `cutoff`; a line without a time goes with the line before it (so nothing
/// before the first timed line).
fn since<'a>(lines: &[&'a [u8]], kind: LogKind, cutoff: SystemTime) -> Vec<&'a [u8]> {
    let mut keep = false;
    lines
        .iter()
        .filter(|line| {
            if let Some(time) = line_time(kind, line) {
                keep = time >= cutoff;
            }
            keep
        })
        .copied()
        .collect()
}

/// A gateway log line taken apart: `TIME LEVEL message`, where either may be missing.
#[derive(Debug, PartialEq)]
struct GatewayLine<'a> {
    stamp: Option<&'a str>,
    time: Option<SystemTime>,
    level: Option<&'a str>,
    message: &'a str,
}

impl<'a> GatewayLine<'a> {
    fn parse(line: &'a str) -> GatewayLine<'a> {
        let line = line.trim_end();
        let untimed = GatewayLine {
            stamp: None,
            time: None,
            level: None,
            message: line,
        };
        let (first, rest) = line.split_once(' ').unwrap_or((line, ""));
        let Ok(time) = humantime::parse_rfc3339(first) else {
            return untimed;
        };
        let rest = rest.trim_start();
        let (word, after) = rest.split_once(' ').unwrap_or((rest, ""));
        let level = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
            .contains(&word)
            .then_some(word);
        GatewayLine {
            stamp: Some(first),
            time: Some(time),
            level,
            message: if level.is_some() { after.trim_start() } else { rest },
        }
    }
}

/// Prints lines as asked. A gateway line in JSON is held until the next timed line (or [`Printer::flush`])
/// so its continuations join its message.
struct Printer {
    kind: LogKind,
    json: bool,
    pending: Option<Value>,
}

impl Printer {
    fn new(kind: LogKind, json: bool) -> Printer {
        Printer {
            kind,
            json,
            pending: None,
        }
    }

    fn line(&mut self, line: &[u8], out: &mut impl Write) -> io::Result<()> {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end();
        match (self.kind, self.json) {
            (LogKind::Gateway, false) => writeln!(out, "{text}"),
            (LogKind::Lifecycle, false) => writeln!(out, "{}", render_event_line(line)),
            (LogKind::Lifecycle, true) => {
                let value = match parse_events(line).0.into_iter().next() {
                    Some(event) => serde_json::to_value(&event).unwrap_or(Value::Null),
                    None => json!({ "unreadable": text }),
                };
                writeln!(out, "{value}")
            }
            (LogKind::Gateway, true) => {
                let parsed = GatewayLine::parse(text);
                match (&mut self.pending, parsed.stamp) {
                    (Some(pending), None) => {
                        if let Some(Value::String(message)) = pending.get_mut("message") {
                            message.push('\n');
                            message.push_str(parsed.message);
                        }
                        Ok(())
                    }
                    _ => {
                        self.flush(out)?;
                        self.pending = Some(json!({
                            "time": parsed.stamp,
                            "level": parsed.level.map(str::to_ascii_lowercase),
                            "message": parsed.message,
                        }));
                        Ok(())
                    }
                }
            }
        }
    }

    /// Prints a held JSON object.
    fn flush(&mut self, out: &mut impl Write) -> io::Result<()> {
        match self.pending.take() {
            Some(value) => writeln!(out, "{value}"),
            None => Ok(()),
        }
    }
}

/// One lifecycle event as one human line: time, event, pid and role, then the other fields.
fn render_event_line(line: &[u8]) -> String {
    let (events, _) = parse_events(line);
    match events.into_iter().next() {
        Some(event) => render_event(&event),
        None => format!("(unreadable line) {}", String::from_utf8_lossy(line).trim_end()),
    }
}

fn render_event(event: &LifecycleEvent) -> String {
    let role = event
        .field("role")
        .and_then(Value::as_str)
        .map(|r| format!(" {r}"))
        .unwrap_or_default();
    let mut text = format!("{}  {:<18} pid {}{role}", event.ts, event.event, event.pid);
    for (key, value) in &event.fields {
        if key == "role" {
            continue;
        }
        let value = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        text.push_str(&format!("  {key}={value}"));
    }
    text
}

/// What `-f` follows and why it may stay quiet, for stderr.
fn follow_notice(home: &Home, path: &Path, kind: LogKind) -> String {
    let path = path.display();
    if kind == LogKind::Lifecycle {
        return format!(
            "following {path}: one line per lifecycle event (start, stop, restart, exit); quiet while nothing \
             happens. Ctrl+C ends."
        );
    }
    let running = InstanceLock::is_held(&home.lock_file()).unwrap_or(false);
    let pid = read_record::<PidRecord>(&home.pid_record())
        .present()
        .map(|r| r.pid);
    match (running, pid) {
        (false, _) => format!(
            "following {path}: no gateway runs on this home now; lines appear once one is started with \
             `herald start` (a gateway run in the foreground by `herald run` writes to its terminal instead). \
             Ctrl+C ends."
        ),
        (true, Some(pid)) if !started_detached(home, pid) => format!(
            "following {path}: the running gateway (pid {pid}) was not started by `herald start`, so it may \
             write to its terminal (`herald run`) or its service manager's log instead, and nothing may \
             appear here. Ctrl+C ends."
        ),
        (true, _) => format!(
            "following {path}: the output of the gateway started detached; quiet while it has nothing to \
             say. Ctrl+C ends."
        ),
    }
}

/// Whether the lifecycle log records a detached start (`herald start`, `restart`) of gateway `pid`.
fn started_detached(home: &Home, pid: u32) -> bool {
    let Ok(file) = File::open(home.lifecycle_log()) else {
        return false;
    };
    parse_events(BufReader::new(file)).0.iter().any(|event| {
        event.event == "detached_spawn"
            && event.field("gateway_pid").and_then(Value::as_u64) == Some(u64::from(pid))
    })
}

/// Identity of the file currently at a path: its inode on Unix (rotation replaces it), else nothing.
fn file_id(file: &File) -> Option<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        file.metadata().ok().map(|m| m.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        None
    }
}

fn path_id(path: &Path) -> Option<u64> {
    File::open(path).ok().as_ref().and_then(file_id)
}

fn follow(path: &Path, mut offset: u64, printer: &mut Printer) -> io::Result<()> {
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir)?;
    let (tx, rx) = mpsc::channel::<()>();
    let mut watcher = notify::recommended_watcher(move |_| {
        let _ = tx.send(());
    })
    .map_err(io::Error::other)?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(io::Error::other)?;

    let mut current: Option<(BufReader<File>, Option<u64>)> = None;
    let mut pending = Vec::new();
    loop {
        if current.is_none()
            && let Ok(file) = File::open(path)
        {
            let id = file_id(&file);
            let mut reader = BufReader::new(file);
            reader.seek(SeekFrom::Start(offset))?;
            current = Some((reader, id));
        }
        if let Some((reader, id)) = current.as_mut() {
            // Read every complete line now available.
            let mut out = io::stdout().lock();
            loop {
                let mut chunk = Vec::new();
                let n = reader.by_ref().take(1 << 20).read_until(b'\n', &mut chunk)?;
                if n == 0 {
                    break;
                }
                offset += n as u64;
                pending.extend_from_slice(&chunk);
                if pending.ends_with(b"\n") {
                    if printer.line(&pending, &mut out).is_err() {
                        return Ok(());
                    }
                    pending.clear();
                }
            }
            if printer.flush(&mut out).and_then(|()| out.flush()).is_err() {
                return Ok(());
            }
            drop(out);
            // Rotated (a new file at the path) or truncated: start over on the new file.
            let len_now = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            let rotated = path_id(path).is_some_and(|now| Some(now) != *id) || len_now < offset;
            if rotated {
                current = None;
                offset = 0;
                pending.clear();
                continue;
            }
        }
        let _ = rx.recv_timeout(Duration::from_secs(1));
        while rx.try_recv().is_ok() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn since_takes_a_duration_ago_or_a_utc_time() {
        let now = at("2026-11-26T18:00:00Z");
        assert_eq!(parse_since_at("10m", now), Ok(at("2026-11-26T17:50:00Z")));
        assert_eq!(parse_since_at("2h", now), Ok(at("2026-11-26T16:00:00Z")));
        assert_eq!(parse_since_at("1d", now), Ok(at("2026-11-25T18:00:00Z")));
        assert_eq!(
            parse_since_at("2026-11-26T17:00:00Z", now),
            Ok(at("2026-11-26T17:00:00Z"))
        );
        assert_eq!(
            parse_since_at("2026-11-26 17:00:00", now),
            Ok(at("2026-11-26T17:00:00Z"))
        );
        let error = parse_since_at("yesterday", now).unwrap_err();
        assert!(error.contains("neither a duration"), "{error}");
    }

    #[test]
    fn gateway_lines_come_apart_into_time_level_and_message() {
        let line = GatewayLine::parse("2026-11-26T18:20:25.123456Z  INFO herald gateway running pid=7\n");
        assert_eq!(line.stamp, Some("2026-11-26T18:20:25.123456Z"));
        assert_eq!(line.time, Some(at("2026-11-26T18:20:25.123456Z")));
        assert_eq!(line.level, Some("INFO"));
        assert_eq!(line.message, "herald gateway running pid=7");
        let line = GatewayLine::parse("2026-11-26T18:20:25Z something else");
        assert_eq!((line.level, line.message), (None, "something else"));
        let line = GatewayLine::parse("   at src/main.rs:3");
        assert_eq!((line.time, line.message), (None, "   at src/main.rs:3"));
    }

    #[test]
    fn continuations_follow_the_line_before_them() {
        let lines: Vec<&[u8]> = vec![
            b"  orphan continuation",
            b"2026-11-26T17:00:00.000001Z  INFO old",
            b"  old detail",
            b"2026-11-26T17:55:00.000001Z  WARN new",
            b"  new detail",
        ];
        let kept = since(&lines, LogKind::Gateway, at("2026-11-26T17:50:00Z"));
        assert_eq!(kept, [lines[3], lines[4]]);
    }

    #[test]
    fn json_joins_continuations_into_one_object() {
        let mut printer = Printer::new(LogKind::Gateway, true);
        let mut out = Vec::new();
        for line in [
            &b"panic before any timestamp"[..],
            b"2026-11-26T17:55:00.000001Z ERROR it broke",
            b"  because",
        ] {
            printer.line(line, &mut out).unwrap();
        }
        printer.flush(&mut out).unwrap();
        let objects: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            objects,
            [
                json!({"time": null, "level": null, "message": "panic before any timestamp"}),
                json!({"time": "2026-11-26T17:55:00.000001Z", "level": "error", "message": "it broke\n  because"}),
            ]
        );
    }
}
