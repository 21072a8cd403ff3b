//! The candidate of an upgrade: what kind of program its file is, and what it says of itself.
//!
//! **Invariant:** a candidate is judged before anything in the home or beside the executable changes.
//! Its file's header is read first ([`sniff`], pure): a Windows `.exe` on Linux or an arm64 build on
//! x86_64 is refused by name, not by an obscure "exec format error". Only then is it run, for one thing
//! only — `version --json`, bounded in time and output — and what it answers is checked against this
//! build and this home ([`BuildInfo::refusals`]).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use herald_home::build_info::BuildInfo;

/// How long the candidate may take to answer `version --json`.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(15);
/// The most of its answer that is read.
const MAX_ANSWER: u64 = 64 * 1024;

/// What a file's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// ELF (Linux and most Unix), with its machine when known.
    Elf(Option<&'static str>),
    /// PE (Windows), with its machine when known.
    Pe(Option<&'static str>),
    /// Mach-O (macOS), with its CPU when known; `None` also for a universal binary.
    MachO(Option<&'static str>),
    /// A `#!` script: its interpreter decides (Unix only).
    Script,
    Unknown,
}

impl Format {
    fn os(self) -> Option<&'static str> {
        match self {
            Format::Elf(_) => Some("linux"),
            Format::Pe(_) => Some("windows"),
            Format::MachO(_) => Some("macos"),
            Format::Script | Format::Unknown => None,
        }
    }

    fn arch(self) -> Option<&'static str> {
        match self {
            Format::Elf(arch) | Format::Pe(arch) | Format::MachO(arch) => arch,
            Format::Script | Format::Unknown => None,
        }
    }

    fn describe(self) -> String {
        let kind = match self {
            Format::Elf(_) => "a Linux (ELF) program",
            Format::Pe(_) => "a Windows (PE) program",
            Format::MachO(_) => "a macOS (Mach-O) program",
            Format::Script => "a script",
            Format::Unknown => "not a program",
        };
        match self.arch() {
            Some(arch) => format!("{kind} for {arch}"),
            None => kind.to_owned(),
        }
    }
}

fn u16_le(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_le(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// What the first bytes of a file (a few KiB) say it is.
pub fn sniff(head: &[u8]) -> Format {
    if head.starts_with(b"\x7fELF") {
        let arch = match u16_le(head, 18) {
            Some(0x3e) => Some("x86_64"),
            Some(0xb7) => Some("aarch64"),
            Some(0x03) => Some("x86"),
            Some(0x28) => Some("arm"),
            Some(0xf3) => Some("riscv64"),
            _ => None,
        };
        return Format::Elf(arch);
    }
    if head.starts_with(b"MZ") {
        let arch = u32_le(head, 0x3c)
            .and_then(|at| {
                let at = at as usize;
                (head.get(at..at + 4) == Some(b"PE\0\0")).then(|| u16_le(head, at + 4))?
            })
            .and_then(|machine| match machine {
                0x8664 => Some("x86_64"),
                0xaa64 => Some("aarch64"),
                0x014c => Some("x86"),
                _ => None,
            });
        return Format::Pe(arch);
    }
    if head.starts_with(&[0xcf, 0xfa, 0xed, 0xfe]) {
        let arch = match u32_le(head, 4) {
            Some(0x0100_0007) => Some("x86_64"),
            Some(0x0100_000c) => Some("aarch64"),
            _ => None,
        };
        return Format::MachO(arch);
    }
    if head.starts_with(&[0xca, 0xfe, 0xba, 0xbe]) {
        return Format::MachO(None);
    }
    if head.starts_with(b"#!") {
        return Format::Script;
    }
    Format::Unknown
}

/// Why a file of `format` cannot run on `os`/`arch`, if it cannot.
pub fn format_refusal(format: Format, os: &str, arch: &str) -> Option<String> {
    let wrong = match (format, format.os()) {
        (Format::Unknown, _) => true,
        (Format::Script, _) => os == "windows",
        (_, Some(its_os)) => its_os != os && !(its_os == "linux" && os != "windows" && os != "macos"),
        (_, None) => true,
    } || format.arch().is_some_and(|its| its != arch);
    wrong.then(|| format!("it is {}; this machine runs {os} {arch}", format.describe()))
}

/// Why the candidate was refused before anything changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub candidate: PathBuf,
    pub reasons: Vec<String>,
}

/// Reads the candidate's header and asks it `version --json`: what it says of itself, or why it is
/// not a candidate at all. The compatibility rules are the caller's ([`BuildInfo::refusals`]).
pub fn probe(candidate: &Path, this: &BuildInfo) -> Result<BuildInfo, Refusal> {
    let refuse = |reason: String| Refusal {
        candidate: candidate.to_path_buf(),
        reasons: vec![reason],
    };
    let meta = std::fs::metadata(candidate).map_err(|e| refuse(format!("cannot read it: {e}")))?;
    if !meta.is_file() {
        return Err(refuse("it is not a file".into()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(refuse("it is not executable (chmod +x it first)".into()));
        }
    }
    let mut head = Vec::with_capacity(4096);
    std::fs::File::open(candidate)
        .and_then(|f| f.take(4096).read_to_end(&mut head))
        .map_err(|e| refuse(format!("cannot read it: {e}")))?;
    if let Some(why) = format_refusal(sniff(&head), &this.os, &this.arch) {
        return Err(refuse(why));
    }
    let answer = run_version_json(candidate).map_err(refuse)?;
    serde_json::from_slice::<BuildInfo>(&answer).map_err(|e| {
        let shown: String = String::from_utf8_lossy(&answer).chars().take(200).collect();
        refuse(format!(
            "its `version --json` is not a Herald build's answer ({e}): {:?}",
            shown.trim()
        ))
    })
}

/// Runs `candidate version --json` with [`PROBE_TIMEOUT`]; its standard output when it exits 0.
fn run_version_json(candidate: &Path) -> Result<Vec<u8>, String> {
    let mut child = Command::new(candidate)
        .args(["version", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("it does not run: {e}"))?;
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(pipe) = pipe {
                let _ = pipe.take(MAX_ANSWER).read_to_end(&mut out);
            }
            out
        })
    };
    let stdout = reader(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = reader(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "it did not answer `version --json` within {}s",
                    PROBE_TIMEOUT.as_secs()
                ));
            }
            Err(e) => return Err(format!("cannot wait for it: {e}")),
        }
    };
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    if !status.success() {
        let said: String = String::from_utf8_lossy(&err).chars().take(300).collect();
        return Err(format!(
            "`version --json` failed ({status}){}",
            if said.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", said.trim())
            }
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(machine: u16) -> Vec<u8> {
        let mut head = b"\x7fELF\x02\x01\x01".to_vec();
        head.resize(18, 0);
        head.extend_from_slice(&machine.to_le_bytes());
        head
    }

    fn pe(machine: u16) -> Vec<u8> {
        let mut head = b"MZ".to_vec();
        head.resize(0x3c, 0);
        head.extend_from_slice(&0x80u32.to_le_bytes());
        head.resize(0x80, 0);
        head.extend_from_slice(b"PE\0\0");
        head.extend_from_slice(&machine.to_le_bytes());
        head
    }

    #[test]
    fn headers_are_read_for_their_platform_and_machine() {
        assert_eq!(sniff(&elf(0x3e)), Format::Elf(Some("x86_64")));
        assert_eq!(sniff(&elf(0xb7)), Format::Elf(Some("aarch64")));
        assert_eq!(sniff(&pe(0x8664)), Format::Pe(Some("x86_64")));
        assert_eq!(sniff(b"MZ"), Format::Pe(None));
        assert_eq!(
            sniff(&[0xcf, 0xfa, 0xed, 0xfe, 0x0c, 0, 0, 1]),
            Format::MachO(Some("aarch64"))
        );
        assert_eq!(sniff(b"#!/bin/sh\n"), Format::Script);
        assert_eq!(sniff(b"hello"), Format::Unknown);
        assert_eq!(sniff(b""), Format::Unknown);
    }

    #[test]
    fn a_program_for_another_platform_or_machine_is_refused_by_name() {
        assert_eq!(
            format_refusal(Format::Elf(Some("x86_64")), "linux", "x86_64"),
            None
        );
        assert_eq!(
            format_refusal(Format::Pe(Some("x86_64")), "windows", "x86_64"),
            None
        );
        assert_eq!(format_refusal(Format::Script, "linux", "x86_64"), None);
        let why = format_refusal(Format::Pe(Some("x86_64")), "linux", "x86_64").unwrap();
        assert!(why.contains("a Windows (PE) program for x86_64"), "{why}");
        let why = format_refusal(Format::Elf(Some("aarch64")), "linux", "x86_64").unwrap();
        assert!(
            why.contains("for aarch64; this machine runs linux x86_64"),
            "{why}"
        );
        assert!(format_refusal(Format::Script, "windows", "x86_64").is_some());
        assert!(format_refusal(Format::Unknown, "linux", "x86_64").is_some());
        assert!(format_refusal(Format::MachO(None), "linux", "x86_64").is_some());
        // Other Unixes run ELF too.
        assert_eq!(
            format_refusal(Format::Elf(Some("x86_64")), "freebsd", "x86_64"),
            None
        );
    }
}
