//! Linux `/proc` readings of a running gateway: resident memory and per-thread context switches.
//!
//! These figures only exist on Linux. Elsewhere every function returns `Ok(None)` and the report marks
//! the figure unavailable rather than inventing a number.

/// `VmRSS` and `VmHWM` (peak RSS) of a process, in KiB as the kernel reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
    /// Proportional set size: pages shared with other processes (the executable mapped by both monitor
    /// and worker) counted once across them, so PSS values add up where RSS values double-count.
    pub pss_kib: u64,
}

/// One thread's context-switch counters at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadSwitches {
    pub tid: u32,
    pub comm: String,
    pub voluntary: u64,
    pub nonvoluntary: u64,
}

impl ThreadSwitches {
    pub fn total(&self) -> u64 {
        self.voluntary + self.nonvoluntary
    }
}

#[cfg(target_os = "linux")]
pub use linux::{alive, memory, thread_switches};

#[cfg(not(target_os = "linux"))]
pub fn alive(_pid: u32) -> anyhow::Result<Option<bool>> {
    Ok(None)
}

#[cfg(not(target_os = "linux"))]
pub fn memory(_pid: u32) -> anyhow::Result<Option<Memory>> {
    Ok(None)
}

#[cfg(not(target_os = "linux"))]
pub fn thread_switches(_pid: u32) -> anyhow::Result<Option<Vec<ThreadSwitches>>> {
    Ok(None)
}

#[cfg(target_os = "linux")]
mod linux {
    use anyhow::Context;

    use super::{Memory, ThreadSwitches};

    /// Whether `pid` is a live (not zombie) process.
    pub fn alive(pid: u32) -> anyhow::Result<Option<bool>> {
        let path = format!("/proc/{pid}/stat");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some(false)),
            Err(e) => return Err(e).with_context(|| format!("cannot read {path}")),
        };
        // `pid (comm) S ...`: the state follows the last ')', since comm may contain anything.
        let state = text
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .with_context(|| format!("unexpected {path}: {text:?}"))?;
        Ok(Some(!matches!(state, "Z" | "X" | "x")))
    }

    /// Reads `VmRSS` and `VmHWM` from `/proc/PID/status` and `Pss` from `/proc/PID/smaps_rollup`.
    pub fn memory(pid: u32) -> anyhow::Result<Option<Memory>> {
        let path = format!("/proc/{pid}/status");
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        let field = |name| status_field(&text, name).with_context(|| format!("no {name} in {path}"));
        let rollup_path = format!("/proc/{pid}/smaps_rollup");
        let rollup =
            std::fs::read_to_string(&rollup_path).with_context(|| format!("cannot read {rollup_path}"))?;
        Ok(Some(Memory {
            rss_kib: field("VmRSS")?,
            hwm_kib: field("VmHWM")?,
            pss_kib: status_field(&rollup, "Pss").with_context(|| format!("no Pss in {rollup_path}"))?,
        }))
    }

    /// Reads the context-switch counters of every thread in `/proc/PID/task/*/status`.
    pub fn thread_switches(pid: u32) -> anyhow::Result<Option<Vec<ThreadSwitches>>> {
        let dir = format!("/proc/{pid}/task");
        let mut threads = Vec::new();
        for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot list {dir}"))? {
            let entry = entry?;
            let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            // A thread may exit between listing and reading; skip it rather than fail.
            let Ok(text) = std::fs::read_to_string(entry.path().join("status")) else {
                continue;
            };
            let comm = std::fs::read_to_string(entry.path().join("comm"))
                .map(|c| c.trim_end().to_owned())
                .unwrap_or_default();
            let field =
                |name| status_field(&text, name).with_context(|| format!("no {name} in {dir}/{tid}/status"));
            threads.push(ThreadSwitches {
                tid,
                comm,
                voluntary: field("voluntary_ctxt_switches")?,
                nonvoluntary: field("nonvoluntary_ctxt_switches")?,
            });
        }
        threads.sort_by_key(|t| t.tid);
        Ok(Some(threads))
    }

    /// The leading number of a `Name:\tvalue [unit]` line of a `/proc/*/status` file.
    pub(super) fn status_field(text: &str, name: &str) -> Option<u64> {
        text.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            if key != name {
                return None;
            }
            value.split_whitespace().next()?.parse().ok()
        })
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::linux::status_field;
    use super::*;

    #[test]
    fn parses_status_fields() {
        let text = "Name:\therald\nVmHWM:\t    6120 kB\nVmRSS:\t    5984 kB\n\
                    voluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(status_field(text, "VmRSS"), Some(5984));
        assert_eq!(status_field(text, "VmHWM"), Some(6120));
        assert_eq!(status_field(text, "voluntary_ctxt_switches"), Some(12));
        assert_eq!(status_field(text, "ctxt_switches"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let memory = memory(me).unwrap().unwrap();
        assert!(memory.rss_kib > 0 && memory.hwm_kib >= memory.rss_kib);
        let threads = thread_switches(me).unwrap().unwrap();
        assert!(threads.iter().any(|t| t.tid == me));
        assert_eq!(alive(me).unwrap(), Some(true));
        assert_eq!(alive(u32::MAX).unwrap(), Some(false));
    }
}
