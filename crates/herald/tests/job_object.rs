//! Windows job objects, for real (under Wine in CI): a parent inside a job that allows breakaway starts a
//! gateway outside it; a job that forbids breakaway refuses the flag with "access denied", the spawn is
//! retried inside the job and that is recorded; either way the gateway outlives its parent.
//!
//! A process cannot leave a job, so each scenario runs in a child copy of this test binary that puts
//! itself into a fresh job and then runs `herald start`. (No `JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`: Wine's
//! wineserver crashes when such a job is closed.)

#![cfg(windows)]

mod support;

use std::process::Command;

use support::*;
use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, IsProcessInJob, JOB_OBJECT_LIMIT_BREAKAWAY_OK,
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JobObjectExtendedLimitInformation, SetInformationJobObject,
};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcess, PROCESS_QUERY_INFORMATION};

const SCENARIO_ENV: &str = "HERALD_JOB_SCENARIO";
const HOME_ENV: &str = "HERALD_JOB_HOME";

#[test]
fn detached_start_breaks_away_from_a_job_when_allowed_and_survives_when_not() {
    for (scenario, expect_in_job) in [("allow", false), ("deny", true)] {
        let home = TestHome::new();
        // The runner's output goes to a file, not a pipe: handles the runner leaks to its children (std
        // makes every inheritable handle inheritable by CreateProcess) would otherwise keep a pipe open
        // for the gateway's whole life, and a wait for end-of-file would never end.
        let log_path = home.root.with_extension("runner.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let status = retry_wine_spawn(|| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "scenario_runner_in_a_job",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(SCENARIO_ENV, scenario)
                .env(HOME_ENV, &home.root)
                .stdin(std::process::Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log.try_clone().unwrap())
                .status()
        });
        let output = std::fs::read_to_string(&log_path).unwrap_or_default();
        assert!(status.success(), "{scenario}: {output}");
        let result = output
            .split("RESULT ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("{scenario}: no RESULT in {output}"));
        assert_eq!(result, format!("in_job={expect_in_job}"), "{scenario}: {output}");

        // The parent (the runner and its `herald start`) has exited; the gateway serves on.
        let (code, status) = home.status_json();
        assert_eq!(code, 0, "{scenario}: {status}");
        let spawn = home
            .events()
            .into_iter()
            .find(|e| e.event == "detached_spawn")
            .unwrap();
        assert_eq!(
            spawn.field("broke_away_from_job").and_then(|v| v.as_bool()),
            Some(!expect_in_job),
            "{scenario}: {spawn:?}"
        );
        assert!(home.output(&["stop"]).status.success(), "{scenario}");
    }
}

/// Not a test on its own: the body of one scenario, run by the test above in a child process. Without
/// the scenario variable it has nothing to do.
#[test]
fn scenario_runner_in_a_job() {
    let Ok(scenario) = std::env::var(SCENARIO_ENV) else {
        return;
    };
    let home = std::env::var(HOME_ENV).unwrap();
    let job = Job::new(scenario == "allow");
    // SAFETY: both handles are valid: our job and the current-process pseudo-handle.
    let assigned = unsafe { AssignProcessToJobObject(job.0, GetCurrentProcess()) };
    assert_ne!(assigned, 0, "assign to job");

    let out = retry_wine_spawn(|| {
        Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["--home", &home, "start"])
            .output()
    });
    let output = text(&out);
    assert!(out.status.success(), "{output}");
    let pid: u32 = output
        .split("herald started (pid ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{output}"));
    // SAFETY: OpenProcess has no pointer arguments; the handle is checked and closed below.
    let process = unsafe { OpenProcess(PROCESS_QUERY_INFORMATION, 0, pid) };
    assert!(!process.is_null(), "open gateway {pid}");
    let mut in_job = 0;
    // SAFETY: valid process and job handles, and a valid out pointer.
    let ok = unsafe { IsProcessInJob(process, job.0, &mut in_job) };
    assert_ne!(ok, 0, "IsProcessInJob: {}", std::io::Error::last_os_error());
    // SAFETY: opened above, closed once.
    unsafe { CloseHandle(process) };
    println!("RESULT in_job={}", in_job != 0);
}

/// A job object handle, closed on drop.
struct Job(HANDLE);

impl Job {
    fn new(allow_breakaway: bool) -> Job {
        // SAFETY: null attributes and name are allowed; the result is checked.
        let handle = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
        assert!(!handle.is_null(), "CreateJobObjectW");
        if allow_breakaway {
            // SAFETY: an all-zero JOBOBJECT_EXTENDED_LIMIT_INFORMATION is a valid "no limits" value.
            let mut info: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { std::mem::zeroed() };
            info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_BREAKAWAY_OK;
            // SAFETY: `info` is the structure JobObjectExtendedLimitInformation expects, with its size.
            let ok = unsafe {
                SetInformationJobObject(
                    handle,
                    JobObjectExtendedLimitInformation,
                    (&raw const info).cast(),
                    std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
                )
            };
            assert_ne!(ok, 0, "SetInformationJobObject");
        }
        Job(handle)
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        // SAFETY: created by CreateJobObjectW, closed once.
        unsafe { CloseHandle(self.0) };
    }
}
