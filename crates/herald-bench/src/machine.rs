//! What the numbers were measured on: the machine, the herald build, the date.
//!
//! Everything here is best effort: a field that cannot be read is `None` and shows as `null` in the JSON,
//! never as a guess.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::proc::run_bounded;

#[derive(Debug, Clone)]
pub struct Machine {
    pub os: &'static str,
    pub arch: &'static str,
    pub nproc: Option<usize>,
    pub cpu: Option<String>,
    pub mem_total_kib: Option<u64>,
    pub kernel: Option<String>,
    pub rustc: Option<String>,
}

impl Machine {
    pub fn probe() -> Machine {
        Machine {
            os: std::env::consts::OS,
            arch: std::env::consts::ARCH,
            nproc: std::thread::available_parallelism().ok().map(usize::from),
            cpu: cpu_model(),
            mem_total_kib: mem_total_kib(),
            kernel: kernel_release(),
            rustc: command_line("rustc", &["--version"]),
        }
    }

    /// `2 cores, 23.5 GiB, linux 6.18.44 (x86_64)`.
    pub fn summary(&self) -> String {
        let cores = self.nproc.map_or("? cores".to_owned(), |n| format!("{n} cores"));
        let memory = self.mem_total_kib.map_or("? memory".to_owned(), |kib| {
            format!("{:.1} GiB", kib as f64 / (1024.0 * 1024.0))
        });
        let kernel = self.kernel.as_deref().unwrap_or("?");
        format!("{cores}, {memory}, {} {kernel} ({})", self.os, self.arch)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "os": self.os,
            "arch": self.arch,
            "nproc": self.nproc,
            "cpu": self.cpu,
            "mem_total_kib": self.mem_total_kib,
            "kernel": self.kernel,
            "rustc": self.rustc,
        })
    }
}

#[cfg(target_os = "linux")]
fn mem_total_kib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(not(target_os = "linux"))]
fn mem_total_kib() -> Option<u64> {
    None
}

#[cfg(target_os = "linux")]
fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_owned())
}

#[cfg(not(target_os = "linux"))]
fn cpu_model() -> Option<String> {
    None
}

#[cfg(target_os = "linux")]
fn kernel_release() -> Option<String> {
    Some(
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()?
            .trim()
            .to_owned(),
    )
}

#[cfg(all(unix, not(target_os = "linux")))]
fn kernel_release() -> Option<String> {
    command_line("uname", &["-r"])
}

#[cfg(not(unix))]
fn kernel_release() -> Option<String> {
    None
}

/// The first line a short command prints on success.
fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let dir = tempfile::tempdir().ok()?;
    let out = dir.path().join("out");
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).ok()?)
        .stderr(Stdio::null());
    let finished = run_bounded(&mut cmd, Duration::from_secs(10), program).ok()?;
    if !finished.status.success() {
        return None;
    }
    let text = std::fs::read_to_string(&out).ok()?;
    Some(text.lines().next()?.trim().to_owned()).filter(|s| !s.is_empty())
}

/// The version `herald --version` reports (`herald 0.1.0` → `0.1.0`).
pub fn herald_version(herald: &Path) -> Option<String> {
    let line = command_line(herald.to_str()?, &["--version"])?;
    Some(line.strip_prefix("herald ").unwrap_or(&line).to_owned())
}

/// Now, in UTC, as RFC 3339 with second precision (`2026-11-24T04:15:38Z`).
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

fn rfc3339(unix_secs: u64) -> String {
    let days = i64::try_from(unix_secs / 86_400).unwrap_or(i64::MAX);
    let rem = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_493_738), "2026-11-24T04:15:38Z");
        assert_eq!(rfc3339(4_107_542_399), "2100-02-28T23:59:59Z");
    }
}
