//! Process identity: is the pid in a record still *that* process?
//!
//! A pid alone proves nothing: it is recycled, and on Unix a dead child stays in the table as a zombie
//! until reaped. A process counts as the one a record names only when it is alive (not a zombie), its
//! OS-reported start time equals the recorded one, and its command line is Herald's.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use herald_home::records::ProcessKey;
use sysinfo::{Pid, ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System, UpdateKind};

/// What the OS says about a pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessProbe {
    /// No such process.
    Gone,
    /// Exited but not yet reaped: dead for every purpose of ours.
    Zombie,
    Alive(ProcessInfo),
}

/// A live process as the OS reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    pub key: ProcessKey,
    pub cmd: Vec<String>,
    pub exe: Option<PathBuf>,
}

/// Looks up `pid` through the OS process APIs.
pub fn probe(pid: u32) -> ProcessProbe {
    let Ok(mut system) = System::new() else {
        return ProcessProbe::Gone;
    };
    let sys_pid = Pid::from_u32(pid);
    system.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[sys_pid]),
        true,
        ProcessRefreshKind::nothing()
            .without_tasks()
            .with_cmd(UpdateKind::Always)
            .with_exe(UpdateKind::Always),
    );
    let Some(process) = system.process(sys_pid) else {
        return ProcessProbe::Gone;
    };
    if matches!(process.status(), ProcessStatus::Zombie | ProcessStatus::Dead) {
        return ProcessProbe::Zombie;
    }
    ProcessProbe::Alive(ProcessInfo {
        key: ProcessKey {
            pid,
            start_time: process.start_time(),
        },
        cmd: process.cmd().iter().map(lossy).collect(),
        exe: process.exe().map(Path::to_path_buf),
    })
}

/// This process, as other processes will see it. Falls back to start time 0 if the OS will not say, which
/// simply makes every identity check against our records fail safe (nobody will kill us by pid).
pub fn current() -> ProcessInfo {
    let pid = std::process::id();
    match probe(pid) {
        ProcessProbe::Alive(info) => info,
        _ => ProcessInfo {
            key: ProcessKey { pid, start_time: 0 },
            cmd: std::env::args_os().map(|a| lossy(&a)).collect(),
            exe: std::env::current_exe().ok(),
        },
    }
}

fn lossy(s: &OsString) -> String {
    s.to_string_lossy().into_owned()
}

/// The verdict on a recorded process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The record's process is alive and is the one recorded.
    Verified,
    Gone,
    Zombie,
    /// The pid is alive but started at another time: the pid was recycled.
    Recycled {
        actual: ProcessKey,
    },
    /// Same pid and start time, but the command line is not the recorded Herald one.
    Foreign {
        cmd: Vec<String>,
    },
}

impl Identity {
    pub fn is_verified(&self) -> bool {
        matches!(self, Identity::Verified)
    }

    /// One line for status output.
    pub fn describe(&self) -> String {
        match self {
            Identity::Verified => "verified".into(),
            Identity::Gone => "no such process".into(),
            Identity::Zombie => "exited (zombie, not yet reaped)".into(),
            Identity::Recycled { actual } => {
                format!("pid reused by another process (started {})", actual.start_time)
            }
            Identity::Foreign { cmd } => format!("pid belongs to another program: {}", cmd.join(" ")),
        }
    }
}

/// Compares what a record claims with what the OS reports. Pure: the probe is passed in.
///
/// The command line matches when it equals the recorded argv, or (quoting of a command line can differ
/// between how a process sees itself and how others read it on Windows) when the executable file names
/// agree.
pub fn verify(
    recorded: ProcessKey,
    recorded_argv: &[String],
    recorded_exe: Option<&str>,
    observed: &ProcessProbe,
) -> Identity {
    let info = match observed {
        ProcessProbe::Gone => return Identity::Gone,
        ProcessProbe::Zombie => return Identity::Zombie,
        ProcessProbe::Alive(info) => info,
    };
    if info.key != recorded {
        return Identity::Recycled { actual: info.key };
    }
    if info.cmd == recorded_argv {
        return Identity::Verified;
    }
    let file_name = |p: &str| {
        Path::new(p)
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
    };
    let observed_name = info
        .exe
        .as_deref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().to_lowercase())
        .or_else(|| info.cmd.first().and_then(|a| file_name(a)));
    let recorded_name = recorded_exe
        .and_then(file_name)
        .or_else(|| recorded_argv.first().and_then(|a| file_name(a)));
    match (observed_name, recorded_name) {
        (Some(a), Some(b)) if a == b => Identity::Verified,
        _ => Identity::Foreign {
            cmd: info.cmd.clone(),
        },
    }
}

/// This machine's host name, if the OS gives one (what a replica is called among those sharing a
/// database, with its home).
pub fn host_name() -> Option<String> {
    sysinfo::System::host_name()
        .ok()
        .filter(|name| !name.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: ProcessKey = ProcessKey {
        pid: 7,
        start_time: 100,
    };

    fn alive(start_time: u64, cmd: &[&str], exe: Option<&str>) -> ProcessProbe {
        ProcessProbe::Alive(ProcessInfo {
            key: ProcessKey { pid: 7, start_time },
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            exe: exe.map(PathBuf::from),
        })
    }

    fn argv(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn verdicts() {
        let rec = argv(&["/usr/bin/herald", "run"]);
        let exe = Some("/usr/bin/herald");
        assert_eq!(verify(KEY, &rec, exe, &ProcessProbe::Gone), Identity::Gone);
        assert_eq!(verify(KEY, &rec, exe, &ProcessProbe::Zombie), Identity::Zombie);
        assert_eq!(
            verify(KEY, &rec, exe, &alive(100, &["/usr/bin/herald", "run"], None)),
            Identity::Verified
        );
        assert!(matches!(
            verify(KEY, &rec, exe, &alive(101, &["/usr/bin/herald", "run"], None)),
            Identity::Recycled { .. }
        ));
        assert!(matches!(
            verify(
                KEY,
                &rec,
                exe,
                &alive(100, &["sleep", "60"], Some("/usr/bin/sleep"))
            ),
            Identity::Foreign { .. }
        ));
        // Windows: the same exe, a differently quoted command line.
        assert_eq!(
            verify(
                KEY,
                &argv(&["C:\\Herald\\herald.exe", "run"]),
                Some("C:\\Herald\\herald.exe"),
                &alive(
                    100,
                    &["\"C:\\Herald\\herald.exe\"", "run"],
                    Some("C:\\Herald\\HERALD.EXE")
                )
            ),
            Identity::Verified
        );
    }

    #[test]
    fn this_process_is_alive_and_verifiable() {
        let me = current();
        assert_eq!(me.key.pid, std::process::id());
        assert!(me.key.start_time > 0, "the OS should report our start time");
        let again = probe(me.key.pid);
        assert_eq!(verify(me.key, &me.cmd, None, &again), Identity::Verified);
    }

    #[test]
    fn an_exited_child_is_not_alive() {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .arg("--list")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!matches!(probe(pid), ProcessProbe::Alive(_)));
    }
}
