//! `herald logs [-f] [-n N] [--lifecycle]`.
//!
//! Following is event-driven (file notifications on the logs directory, with a 1 s safety net) and
//! survives rotation: when the file at the path is no longer the one being read (it shrank, or on Unix
//! its inode changed), the new file is read from its start.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use herald_home::lifecycle::{LifecycleEvent, parse_events};
use herald_home::{ExitCode, Home};
use notify::{RecursiveMode, Watcher};
use serde_json::Value;

use crate::cli::LogsArgs;

pub fn logs(home: &Home, args: &LogsArgs) -> ExitCode {
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
                 logon task, Startup launcher or Windows Service logs here)"
            }
        );
        return ExitCode::Ok;
    }
    let render = |line: &[u8]| -> String {
        if args.lifecycle {
            render_event_line(line)
        } else {
            String::from_utf8_lossy(line).trim_end().to_owned()
        }
    };
    let mut out = io::stdout().lock();
    let mut offset = 0;
    if let Ok(bytes) = std::fs::read(&path) {
        let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
        for line in &lines[lines.len().saturating_sub(args.lines)..] {
            if writeln!(out, "{}", render(line)).is_err() {
                return ExitCode::Ok;
            }
        }
        offset = bytes.len() as u64;
    }
    let _ = out.flush();
    drop(out);
    if !args.follow {
        return ExitCode::Ok;
    }
    match follow(&path, offset, &render) {
        Ok(()) => ExitCode::Ok,
        Err(e) => {
            eprintln!("herald: cannot follow {}: {e}", path.display());
            ExitCode::Failure
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

fn follow(path: &Path, mut offset: u64, render: &dyn Fn(&[u8]) -> String) -> io::Result<()> {
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
            loop {
                let mut chunk = Vec::new();
                let n = reader.by_ref().take(1 << 20).read_until(b'\n', &mut chunk)?;
                if n == 0 {
                    break;
                }
                offset += n as u64;
                pending.extend_from_slice(&chunk);
                if pending.ends_with(b"\n") {
                    let mut out = io::stdout().lock();
                    if writeln!(out, "{}", render(&pending))
                        .and_then(|()| out.flush())
                        .is_err()
                    {
                        return Ok(());
                    }
                    pending.clear();
                }
            }
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
