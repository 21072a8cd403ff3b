//! Windows per-user autostart, for real under Wine (see ci/wine/README.md): the Startup fallback is a
//! `Run` value, written to the registry and read back, whose command line — started the way Explorer
//! starts a `Run` value at logon (environment references expanded, `CreateProcessW` with no application
//! name) — runs the windowless `heraldw.exe` itself (no cmd.exe, no console) on a home whose path has
//! spaces and `% & ^ !`, and on one with `ë é 中文`; a value whose target is gone starts nothing (the
//! process creation fails; there is no console to flash); a `.cmd` launcher left by an older herald is
//! drift that `install` replaces and `uninstall` removes; the logon task is registered through Wine's
//! `schtasks /Create /XML` (Wine keeps it as `C:\windows\system32\tasks\<name>`; its `/Query` prints
//! nothing, so the task store is what confirms it) and uninstall removes it; and when registration is
//! refused (a substituted `schtasks` that exits like an access-denied refusal, with localized text), the
//! `Run` value is used instead. The Startup folder and the `Run` key are redirected (`HERALD_STARTUP_DIR`,
//! `HERALD_RUN_KEY`: a key of the case's own in the test run's private Wine prefix); each test uses its
//! own profile, so task names never collide in the shared prefix.
#![cfg(windows)]

mod support;
#[path = "support/wine_case.rs"]
mod wine_case;

use std::path::PathBuf;

use herald_home::atomic::read_record;
use herald_home::records::{PidRecord, StateRecord};
use herald_install::ServiceSpec;
use herald_install::startup::{RunKey, SystemRunKey, render_run_command};
use support::ok;
use wine_case::WineCase;

/// A case with the default hostile root; dropping it stops its gateway and uninstalls what a failed
/// test left behind.
fn case(profile: &str) -> WineCase {
    case_at(profile, "Her ald 50% & ^ ! (x)")
}

fn case_at(profile: &str, root_name: &str) -> WineCase {
    // The HTTP adapter on a free port: tests run in parallel.
    WineCase::new(
        "herald-win",
        profile,
        root_name,
        "[http]\nlisten = \"127.0.0.1:0\"\n",
        |case| {
            if case.home().lock_file().exists() {
                let _ = case.herald(&["stop", "--timeout", "20"]);
            }
            if case.legacy_launcher().exists() || case.run_value().is_some() || task_file(case).exists() {
                let _ = case.herald(&["uninstall"]);
            }
        },
    )
}

/// Wine's task store entry.
fn task_file(case: &WineCase) -> PathBuf {
    let root = std::env::var_os("SystemRoot").unwrap_or_else(|| r"C:\windows".into());
    PathBuf::from(root)
        .join("System32")
        .join("Tasks")
        .join(case.name())
}

/// Starts a `Run` value's command line as Explorer (and Wine's `wineboot`) does at logon: environment
/// references expanded, then `CreateProcessW` with no application name, the line as the command line,
/// no console asked for and no standard handles (Explorer has none to give; without this the test's own
/// stderr would reach the gateway). The new process's id, or the Win32 error of the failed start.
fn start_as_at_logon(command: &str) -> Result<u32, u32> {
    use windows_sys::Win32::Foundation::{CloseHandle, GetLastError};
    use windows_sys::Win32::System::Environment::ExpandEnvironmentStringsW;
    use windows_sys::Win32::System::Threading::{
        CreateProcessW, PROCESS_INFORMATION, STARTF_USESTDHANDLES, STARTUPINFOW,
    };

    let source: Vec<u16> = command.encode_utf16().chain(std::iter::once(0)).collect();
    let mut line = vec![0u16; 32 * 1024];
    // SAFETY: `source` is NUL-terminated; `line` has room for the `line.len()` units passed.
    let n = unsafe { ExpandEnvironmentStringsW(source.as_ptr(), line.as_mut_ptr(), line.len() as u32) };
    assert!(
        n > 0 && (n as usize) <= line.len(),
        "ExpandEnvironmentStringsW: {n}"
    );
    // SAFETY: both are plain data for which all-zero is the documented empty state.
    let mut startup: STARTUPINFOW = unsafe { std::mem::zeroed() };
    startup.cb = std::mem::size_of::<STARTUPINFOW>() as u32;
    // Null standard handles, as a process Explorer starts has.
    startup.dwFlags = STARTF_USESTDHANDLES;
    // SAFETY: as above.
    let mut info: PROCESS_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: `line` is a writable NUL-terminated buffer (CreateProcessW may modify it); the structures
    // outlive the call; no handles are inherited.
    let created = unsafe {
        CreateProcessW(
            std::ptr::null(),
            line.as_mut_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            0,
            0,
            std::ptr::null(),
            std::ptr::null(),
            &startup,
            &mut info,
        )
    };
    if created == 0 {
        // SAFETY: no preconditions.
        return Err(unsafe { GetLastError() });
    }
    // SAFETY: both handles were returned by CreateProcessW and are closed once, here.
    unsafe {
        CloseHandle(info.hThread);
        CloseHandle(info.hProcess);
    }
    Ok(info.dwProcessId)
}

#[test]
fn the_run_value_starts_heraldw_from_a_hostile_home() {
    launch_through_the_run_value(&case("launch"));
}

/// No OEM code page in the way any more: a path outside it (`中文`) works as well as one inside.
#[test]
fn the_run_value_starts_heraldw_from_a_non_ascii_home() {
    launch_through_the_run_value(&case_at("launch-utf", "Zoë 50% & ^ ! é 中文"));
}

/// install --backend startup sets the `Run` value; started as at logon it runs the supervised gateway
/// through `heraldw.exe` itself.
fn launch_through_the_run_value(case: &WineCase) {
    let out = ok(&case.herald(&["install", "--backend", "startup", "--no-start-now"]));
    assert!(out.contains("herald installed with startup"), "{out}");
    assert!(out.contains("set the Run value"), "{out}");
    let command = case.run_value().expect("the Run value is set");
    let heraldw = case.herald.with_file_name("heraldw.exe");
    let want = ServiceSpec {
        gui_executable: Some(heraldw.clone()),
        ..ServiceSpec::for_home(&case.home(), &case.herald, herald_home::StopBudget::new(30))
    };
    let read_back = herald_install::startup::parse_run_command(&command).unwrap();
    assert!(
        read_back.program.to_lowercase().ends_with("heraldw.exe"),
        "the windowless build, no cmd.exe: {command}"
    );
    assert_eq!(
        read_back.args,
        want.run_args(herald_install::Backend::Startup).unwrap()
    );
    assert!(
        !case.startup.join(format!("{}.cmd", case.name())).exists(),
        "no launcher file"
    );
    assert!(!case.running());

    let pid = start_as_at_logon(&command).expect("the Run value's program starts");
    support::wait_for("the Run value's gateway to run", || case.running());
    let pid_record = read_record::<PidRecord>(&case.home().pid_record())
        .present()
        .unwrap();
    assert_eq!(pid_record.pid, pid, "the process Explorer started is the monitor");
    assert!(
        pid_record.argv[0].to_lowercase().ends_with("heraldw.exe"),
        "the windowless build runs: {:?}",
        pid_record.argv
    );
    let state = read_record::<StateRecord>(&case.home().state_record())
        .present()
        .unwrap();
    assert!(state.worker_pid.is_some(), "supervised by Herald's own monitor");
    // The windowless heraldw has no usable stdio: it logs to the home's stdio log.
    support::wait_for("the gateway's output in the home's stdio log", || {
        support::text(&case.herald(&["logs", "-n", "50"])).contains("herald gateway running")
    });

    // A second install changes nothing; uninstall deletes the value.
    let out = ok(&case.herald(&["install", "--backend", "startup", "--no-start-now"]));
    assert!(out.contains("nothing to do"), "{out}");
    ok(&case.herald(&["stop"]));
    ok(&case.herald(&["uninstall"]));
    assert_eq!(case.run_value(), None);
}

#[test]
fn a_run_value_whose_target_is_gone_starts_nothing() {
    let case = case("gone");
    // The value of a Herald copy that has since been deleted (an uninstalled copy, a test's temp dir).
    let gone = case
        .bin
        .parent()
        .unwrap()
        .join("deleted copy")
        .join("heraldw.exe");
    let mut spec = ServiceSpec::for_home(&case.home(), &case.herald, herald_home::StopBudget::new(30));
    spec.gui_executable = Some(gone.clone());
    let command = render_run_command(&spec).unwrap();
    SystemRunKey.set(&case.run_key, &case.name(), &command).unwrap();
    assert_eq!(case.run_value().as_deref(), Some(command.as_str()));
    assert!(!gone.exists());

    // The logon's start fails (file or path not found): no process, so no window of any kind.
    let refused = start_as_at_logon(&command).unwrap_err();
    assert!(
        matches!(refused, 2 | 3),
        "ERROR_FILE_NOT_FOUND / PATH_NOT_FOUND, got {refused}"
    );
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert!(!case.running());
    assert!(!case.home().state_record().exists(), "nothing was started");

    // And the next install repairs it to this herald's heraldw.exe.
    let out = ok(&case.herald(&["install", "--backend", "startup", "--no-start-now"]));
    assert!(out.contains("differs: repairing it"), "{out}");
    assert!(!case.run_value().unwrap().contains("deleted copy"));
    ok(&case.herald(&["uninstall"]));
    assert_eq!(case.run_value(), None);
}

#[test]
fn a_cmd_launcher_from_an_older_herald_is_replaced_and_uninstall_removes_both_forms() {
    let case = case("migrate");
    let launcher = case.legacy_launcher();
    let old =
        "@echo off\r\nsetlocal DisableDelayedExpansion\r\nif not exist \"C:\\h\\heraldw.exe\" exit /b 0\r\n";
    std::fs::write(&launcher, old).unwrap();

    let out = ok(&case.herald(&["install", "--backend", "startup", "--dry-run"]));
    assert!(out.contains(&format!("remove {}", launcher.display())), "{out}");
    assert!(
        launcher.exists() && case.run_value().is_none(),
        "a dry run changes nothing"
    );

    let out = ok(&case.herald(&["install", "--backend", "startup", "--no-start-now"]));
    assert!(out.contains("legacy Startup-folder launcher"), "{out}");
    assert!(!launcher.exists(), "the .cmd launcher is gone");
    assert!(case.run_value().is_some(), "the Run value replaces it");
    let out = ok(&case.herald(&["install", "--backend", "startup", "--no-start-now"]));
    assert!(out.contains("nothing to do"), "{out}");

    // Both forms present (an older herald ran again): uninstall removes both.
    std::fs::write(&launcher, old).unwrap();
    let out = ok(&case.herald(&["uninstall"]));
    assert!(out.contains("herald uninstalled"), "{out}");
    assert!(!launcher.exists());
    assert_eq!(case.run_value(), None);
}

#[test]
fn the_task_is_registered_through_wines_schtasks_and_uninstall_removes_it() {
    let case = case("task");
    // Stale Startup entries of the same home (a Run value and an old .cmd launcher): a successful
    // registration removes both.
    std::fs::write(case.legacy_launcher(), "@echo off\r\n").unwrap();
    SystemRunKey
        .set(&case.run_key, &case.name(), r#""C:\old\heraldw.exe" run"#)
        .unwrap();
    let out = ok(&case.herald(&["install", "--backend", "task", "--no-start-now"]));
    assert!(out.contains("herald installed with task"), "{out}");
    assert!(task_file(&case).is_file(), "{out}");
    assert!(!case.legacy_launcher().exists(), "one autostart entry per home");
    assert_eq!(case.run_value(), None, "one autostart entry per home");

    let out = ok(&case.herald(&["uninstall"]));
    assert!(out.contains("herald uninstalled"), "{out}");
    assert!(!task_file(&case).exists());
}

#[test]
fn a_refused_registration_falls_back_to_the_run_value() {
    let case = case("denied");
    // A schtasks that refuses the way an access-denied registration does: exit code 1, localized text.
    std::fs::write(
        case.bin.join("schtasks.cmd"),
        "@echo off\r\necho FEHLER: Zugriff verweigert 1>&2\r\nexit /b 1\r\n",
    )
    .unwrap();
    let out = ok(&case.herald(&["install", "--backend", "task", "--no-start-now"]));
    assert!(out.contains("could not be registered"), "{out}");
    assert!(out.contains("herald installed with startup"), "{out}");
    let command = case.run_value().expect("the fallback's Run value");
    assert!(command.to_lowercase().contains("heraldw.exe"), "{command}");
    assert!(!task_file(&case).exists());

    // --dry-run shows both branches and changes nothing.
    SystemRunKey.delete(&case.run_key, &case.name()).unwrap();
    let out = ok(&case.herald(&["install", "--backend", "task", "--dry-run"]));
    assert!(
        out.contains("if refused") && out.contains("/Create /XML") && out.contains("set the Run value"),
        "{out}"
    );
    assert_eq!(case.run_value(), None);
}

/// `herald upgrade` of a gateway the `Run` value started at logon: the running `heraldw.exe` (the
/// monitor) and `herald.exe` are renamed aside and the candidate's moved in; the `Run` value, naming the
/// same path, is untouched, and the next logon starts the new build.
#[test]
fn an_upgrade_of_a_gateway_the_run_value_started_swaps_the_running_heraldw() {
    let mut case = case("upgrade-run");
    let installed = case.dir.path().join("installed");
    std::fs::create_dir_all(&installed).unwrap();
    for program in ["herald.exe", "heraldw.exe"] {
        std::fs::copy(case.herald.with_file_name(program), installed.join(program)).unwrap();
    }
    case.herald = installed.join("herald.exe");
    ok(&case.herald(&["install", "--backend", "startup", "--no-start-now"]));
    let command = case.run_value().expect("the Run value is set");
    start_as_at_logon(&command).expect("the Run value's program starts");
    support::wait_for("the Run value's gateway to run", || case.running());
    let before = read_record::<PidRecord>(&case.home().pid_record())
        .present()
        .unwrap();
    assert!(
        before.argv[0].to_lowercase().ends_with("heraldw.exe"),
        "{:?}",
        before.argv
    );

    let candidate = support::upgrade_candidate();
    let out = case.herald(&["upgrade", "--from", candidate.to_str().unwrap()]);
    let said = support::text(&out);
    assert!(out.status.success(), "{said}");
    let after = read_record::<PidRecord>(&case.home().pid_record())
        .present()
        .unwrap();
    assert_ne!(after.herald_version, before.herald_version);
    assert_eq!(
        case.run_value().as_deref(),
        Some(command.as_str()),
        "the Run value is untouched"
    );
    assert!(installed.join("heraldw.prev.exe").is_file());
    assert!(installed.join("herald.prev.exe").is_file());
    let candidate_gui = std::fs::read(candidate.with_file_name("heraldw.exe")).unwrap();
    assert_eq!(
        std::fs::read(installed.join("heraldw.exe")).unwrap(),
        candidate_gui
    );

    ok(&case.herald(&["stop"]));
    ok(&case.herald(&["uninstall"]));
}
