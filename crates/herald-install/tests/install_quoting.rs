//! Round-trip properties of every quoting scheme the install generators use: systemd `ExecStart=`,
//! Windows command lines (`CommandLineToArgvW`), the Startup fallback's `Run` value (split as
//! `CreateProcessW` and `CommandLineToArgvW` read it),
//! the Task Scheduler XML and the launchd plist. Pure, so they run on every OS (Windows under Wine too).

use herald_home::ProfileName;
use herald_install::{Backend, Scope, ServiceSpec, launchd, startup, systemd, task, winargs};
use proptest::prelude::*;

/// Characters that break naive quoting somewhere.
const HOSTILE: &[char] = &[
    ' ', '"', '\'', '%', '$', '^', '&', '!', '\\', '/', '{', '}', '(', ')', ';', '=', ',', '<', '>', '|',
    '*', '?', '`', '~', '#', '@', '-', '\t', 'é', 'ß', '中', '😀', 'a', 'Z', '0', '.', ':',
];

fn hostile_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![4 => prop::sample::select(HOSTILE), 1 => any::<char>()],
        0..max,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

/// A Windows path component: no `"`, control characters or the other characters Windows forbids.
fn windows_component() -> impl Strategy<Value = String> {
    hostile_text(12).prop_map(|s| {
        s.chars()
            .filter(|c| !c.is_control() && !matches!(c, '"' | '<' | '>' | '|' | '*' | '?' | ':' | '/' | '\\'))
            .collect::<String>()
    })
}

fn windows_path() -> impl Strategy<Value = String> {
    (prop::collection::vec(windows_component(), 1..4), any::<bool>()).prop_map(|(parts, trailing)| {
        let mut path = format!(r"C:\{}", parts.join(r"\"));
        if trailing {
            path.push('\\');
        }
        path
    })
}

fn profile() -> impl Strategy<Value = Option<ProfileName>> {
    prop::option::of("[a-z0-9][a-z0-9_-]{0,8}".prop_map(|p| ProfileName::new(&p).unwrap()))
}

fn windows_spec(root: String, heraldw: String, profile: Option<ProfileName>, user: String) -> ServiceSpec {
    ServiceSpec {
        executable: r"C:\H\herald.exe".into(),
        gui_executable: Some(heraldw.into()),
        home_root: root.into(),
        profile,
        stop_budget: herald_home::StopBudget::new(30),
        stdio_log: r"C:\H\logs\stdio.log".into(),
        scope: Scope::User,
        run_as: Some(user),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn systemd_exec_start_round_trips(
        dir in hostile_text(16),
        args in prop::collection::vec(hostile_text(16), 0..5),
    ) {
        let program = format!("/opt/{}/herald", dir.replace(['/', '\0'], "_"));
        let args: Vec<String> = args.into_iter().map(|a| a.replace('\0', "")).collect();
        let line = systemd::exec_line(&program, &args);
        prop_assert!(!line.contains('\n'), "one line: {line:?}");
        let (p, a) = systemd::parse_exec_start(&line).unwrap();
        prop_assert_eq!(p, program);
        prop_assert_eq!(a, args);
    }

    #[test]
    fn systemd_units_round_trip(root in hostile_text(24), exe in hostile_text(12), profile in profile()) {
        let spec = ServiceSpec {
            executable: format!("/opt/{}/herald", exe.replace(['/', '"', '\'', '\\'], "_").replace(|c: char| c.is_ascii_control(), "_"))
                .into(),
            gui_executable: None,
            home_root: format!("/home/{}", root.replace('\0', "")).into(),
            profile,
            stop_budget: herald_home::StopBudget::new(7),
            stdio_log: "/x/stdio.log".into(),
            scope: Scope::User,
            run_as: None,
        };
        match systemd::render_unit(&spec) {
            Ok(unit) => {
                let facts = systemd::parse_unit(&unit).unwrap();
                prop_assert_eq!(facts.invocation().unwrap(), spec.invocation(Backend::Systemd).unwrap());
            }
            // Only what systemd itself refuses in an executable path may be refused: `/./`, `/../`, `//`,
            // quotes, backslashes, control characters; and a home `WorkingDirectory=` cannot name (a line
            // break, a blank at its end).
            Err(e) => prop_assert!(
                matches!(
                    e,
                    herald_install::InstallError::NotNormalized { .. }
                        | herald_install::InstallError::Unrepresentable { what: "executable", .. }
                ) || (matches!(e, herald_install::InstallError::Unrepresentable { what, .. } if what.starts_with("home"))
                    && (root.contains(['\n', '\r']) || root.replace('\0', "").ends_with([' ', '\t']))),
                "unexpected refusal: {}",
                e
            ),
        }
    }

    #[test]
    fn windows_args_round_trip(args in prop::collection::vec(hostile_text(16), 0..6)) {
        let args: Vec<String> = args.into_iter().map(|a| a.replace('\0', "")).collect();
        let line = winargs::join_windows_args(&args);
        prop_assert_eq!(winargs::parse_windows_args(&line), args);
    }

    #[test]
    fn startup_run_values_decode_to_the_spec(
        root in windows_path(),
        heraldw in windows_path(),
        profile in profile(),
    ) {
        let spec = windows_spec(root, format!("{heraldw}heraldw.exe"), profile, "u".into());
        match startup::render_run_command(&spec) {
            Ok(line) => {
                // The program is one quoted token; Explorer would expand nothing.
                prop_assert!(line.starts_with('"'));
                prop_assert!(line.matches('%').count() < 2);
                prop_assert!(line.encode_utf16().count() <= startup::MAX_RUN_COMMAND);
                prop_assert_eq!(
                    startup::parse_run_command(&line).unwrap(),
                    spec.invocation(Backend::Startup).unwrap()
                );
            }
            // Only what Explorer would change (a `%` pair) or not start (too long) may be refused.
            Err(e) => prop_assert!(
                matches!(
                    e,
                    herald_install::InstallError::Unrepresentable { ch: '%', .. }
                        | herald_install::InstallError::TooLong { .. }
                ),
                "unexpected refusal: {}",
                e
            ),
        }
    }

    #[test]
    fn task_xml_round_trips(root in windows_path(), heraldw in windows_path(), user in hostile_text(12)) {
        let user = format!("PC\\{}", user.chars().filter(|c| !c.is_control()).collect::<String>());
        let spec = windows_spec(root, format!("{heraldw}heraldw.exe"), None, user.clone());
        let facts = task::parse_task(&task::render_task(&spec).unwrap()).unwrap();
        prop_assert_eq!(facts.invocation().unwrap(), spec.invocation(Backend::Task).unwrap());
        prop_assert_eq!(facts.user_id, Some(user));
    }

    #[test]
    fn plists_round_trip(root in hostile_text(24), profile in profile()) {
        let root: String = root.chars().filter(|c| !c.is_control()).collect();
        let spec = ServiceSpec {
            executable: "/Applications/Herald.app/Contents/MacOS/herald".into(),
            gui_executable: None,
            home_root: format!("/Users/a/{root}").into(),
            profile,
            stop_budget: herald_home::StopBudget::new(30),
            stdio_log: format!("/Users/a/{root}/logs/stdio.log").into(),
            scope: Scope::User,
            run_as: None,
        };
        let facts = launchd::parse_plist(&launchd::render_plist(&spec).unwrap()).unwrap();
        prop_assert_eq!(facts.invocation().unwrap(), spec.invocation(Backend::Launchd).unwrap());
        prop_assert_eq!(facts.stdout_path.as_deref(), spec.stdio_log.to_str());
    }
}
