//! `herald install` and `herald uninstall`: the lifecycle layer plans and carries out; this prints.
//!
//! A Windows Service install (or the uninstall of one) from a prompt that is not elevated is handed to an
//! elevated copy of this program (`herald_install::elevate`): it is given every choice as arguments and
//! writes what it would have printed to a report file this process prepared; this process waits, prints
//! that report on the same streams and exits with the child's exit code. The elevated child never
//! relaunches again, and a refused prompt changes nothing (exit 1).

use std::io::Write;
use std::path::Path;

use herald_home::ExitCode;
use herald_install::elevate::{self, ReportDir, ReportLine, Situation};
use herald_install::{Backend, Scope};
use herald_lifecycle::Target;
use herald_lifecycle::install::{
    Applied, BackendChoice, InstallOptions, Installed, NoAutostart, Uninstalled, Unmanaged,
};

use crate::cli::{BackendArg, InstallArgs, UninstallArgs};

/// Where this command's lines go: the console, or the elevated child's report file.
enum Sink {
    Console,
    Report(std::fs::File),
}

impl Sink {
    /// The report named by `--elevated-report`, or the console.
    fn open(report: Option<&Path>) -> Result<Sink, elevate::ElevateError> {
        match report {
            Some(path) => elevate::create_report(path).map(Sink::Report),
            None => Ok(Sink::Console),
        }
    }

    fn line(&mut self, line: ReportLine) {
        match (self, line) {
            (Sink::Console, ReportLine::Out(text)) => println!("{text}"),
            (Sink::Console, ReportLine::Err(text)) => eprintln!("{text}"),
            (Sink::Report(file), line) => {
                let _ = file.write_all(elevate::encode_line(&line).as_bytes());
            }
        }
    }

    fn out(&mut self, text: impl Into<String>) {
        self.line(ReportLine::Out(text.into()));
    }

    fn err(&mut self, text: impl Into<String>) {
        self.line(ReportLine::Err(text.into()));
    }

    /// As `super::fail`: the error (and the gateway's last log lines), mapped to its exit code.
    fn fail(&mut self, error: &herald_lifecycle::LifecycleError) -> ExitCode {
        match self {
            Sink::Console => super::fail(error),
            Sink::Report(_) => {
                self.err(format!("herald: {error}"));
                if let Some(tail) = error.log_tail() {
                    for line in tail.lines() {
                        self.err(line);
                    }
                }
                error.exit_code()
            }
        }
    }
}

pub fn install(target: &Target, args: &InstallArgs) -> ExitCode {
    let backend = match args.backend {
        BackendArg::Auto => BackendChoice::Auto,
        BackendArg::None => BackendChoice::None,
        BackendArg::Systemd => BackendChoice::Backend(Backend::Systemd),
        BackendArg::Launchd => BackendChoice::Backend(Backend::Launchd),
        BackendArg::Task => BackendChoice::Backend(Backend::Task),
        BackendArg::Startup => BackendChoice::Backend(Backend::Startup),
        BackendArg::WindowsService => BackendChoice::Backend(Backend::WindowsService),
    };
    let options = InstallOptions {
        backend,
        scope: scope(args.system),
        run_as: args.run_as_user.clone(),
        start_now: !args.no_start_now,
        start_on_login: !args.no_start_on_login,
        force: args.force,
        dry_run: args.dry_run,
    };
    if args.elevated_report.is_none() && backend == BackendChoice::Backend(Backend::WindowsService) {
        let relaunch = elevate::Relaunch::Install {
            backend: Backend::WindowsService,
            system: args.system,
            run_as: args.run_as_user.clone(),
            start_now: options.start_now,
            start_on_login: options.start_on_login,
            force: options.force,
            dry_run: options.dry_run,
        };
        if let Some(code) = hand_off(target, true, options.dry_run, &relaunch) {
            return code;
        }
    }
    let mut sink = match Sink::open(args.elevated_report.as_deref()) {
        Ok(sink) => sink,
        Err(e) => {
            eprintln!("herald: {e}");
            return ExitCode::Failure;
        }
    };
    install_with(target, args, &options, &mut sink)
}

fn install_with(target: &Target, args: &InstallArgs, options: &InstallOptions, sink: &mut Sink) -> ExitCode {
    // A registration names this executable: one `cargo clean` or a reboot must not take it away.
    if !matches!(args.backend, BackendArg::None)
        && let Ok(exe) = std::env::current_exe()
        && let Some(why) = herald_install::spec::fragile_executable(&exe, &std::env::temp_dir())
    {
        sink.err(format!("warning: {why}"));
    }
    // The gateway the manager starts sees none of this shell's variables: name what it will lack.
    match herald_lifecycle::install::variable_checks(target, options) {
        Ok(checks) => {
            for check in checks.iter().filter(|c| !c.found.resolves()) {
                sink.err(format!("warning: {}", check.describe()));
            }
        }
        Err(e) => sink.err(format!("warning: {e}")),
    }
    // A system unit running as an account that cannot use the home would never serve.
    if let Some(problem) = herald_lifecycle::install::run_as_check(target, options) {
        sink.err(format!("warning: {problem}"));
    }
    let root = target.home().root().display().to_string();
    match herald_lifecycle::install::install(target, options) {
        Ok(Installed::Registered { backend, applied }) => {
            if let Some(why) = herald_lifecycle::install::fell_back(&applied) {
                sink.out(format!(
                    "the Scheduled Task could not be registered ({why}); using the Startup fallback (a Run value) instead"
                ));
            }
            match print_applied(&applied, sink) {
                Some(()) => sink.out(format!("herald installed with {backend} for {root}")),
                None if matches!(applied, Applied::NothingToDo { .. }) => {
                    sink.out(format!(
                        "herald is already installed with {backend} for {root}; nothing to do"
                    ));
                }
                None => {}
            }
            ExitCode::Ok
        }
        Ok(Installed::NoAutostart(NoAutostart::DryRun)) => {
            sink.out(
                "no autostart; would start the gateway now, detached and supervised (as `herald start`)",
            );
            sink.out("dry run: nothing was changed");
            ExitCode::Ok
        }
        Ok(Installed::NoAutostart(NoAutostart::NotStarted)) => {
            sink.out("no autostart registered and --no-start-now: nothing to do");
            ExitCode::Ok
        }
        Ok(Installed::NoAutostart(NoAutostart::Started(outcome))) => {
            match sink {
                Sink::Console => super::start::print_started(&outcome),
                Sink::Report(_) => sink.out("herald started (see `herald status`)"),
            }
            ExitCode::Ok
        }
        Err(e) => sink.fail(&e),
    }
}

pub fn uninstall(target: &Target, args: &UninstallArgs) -> ExitCode {
    if args.elevated_report.is_none() {
        // Only a registered Windows Service needs an administrator to remove it.
        let service = cfg!(windows)
            && !args.dry_run
            && matches!(
                herald_install::manage::registered_for_home(target.home(), &herald_install::scm::SystemScm),
                Ok(Some(_))
            );
        let relaunch = elevate::Relaunch::Uninstall {
            system: args.system,
            dry_run: args.dry_run,
        };
        if let Some(code) = hand_off(target, service, args.dry_run, &relaunch) {
            return code;
        }
    }
    let mut sink = match Sink::open(args.elevated_report.as_deref()) {
        Ok(sink) => sink,
        Err(e) => {
            eprintln!("herald: {e}");
            return ExitCode::Failure;
        }
    };
    let root = target.home().root().display().to_string();
    match herald_lifecycle::install::uninstall(target, scope(args.system), args.dry_run) {
        Ok(Uninstalled { applied, unmanaged }) => {
            let registered = !matches!(applied, Applied::NothingToDo { .. });
            match print_applied(&applied, &mut sink) {
                Some(()) => sink.out(format!("herald uninstalled for {root}")),
                None if !registered => match unmanaged {
                    Unmanaged::NotRunning => {
                        sink.out(format!("herald is not installed for {root}; nothing to do"));
                    }
                    _ => sink.out(format!(
                        "herald is not installed for {root}; no registration to remove"
                    )),
                },
                None => {}
            }
            match &unmanaged {
                Unmanaged::NotRunning => {}
                Unmanaged::WouldStop { pid } => {
                    let who =
                        pid.map_or_else(|| "the gateway".to_owned(), |p| format!("the gateway (pid {p})"));
                    sink.out(format!("would stop {who}, which runs without a service manager"));
                    sink.out("dry run: nothing was changed");
                }
                Unmanaged::Stopped(outcome) => {
                    for line in super::stop::stopped_lines(target, outcome) {
                        sink.out(line);
                    }
                }
            }
            ExitCode::Ok
        }
        Err(e) => sink.fail(&e),
    }
}

/// When this command must run elevated and this prompt is not: relaunches it elevated with every
/// choice, waits, prints the child's report and returns its exit code. `None`: carry on here.
fn hand_off(
    target: &Target,
    changes_scm: bool,
    dry_run: bool,
    relaunch: &elevate::Relaunch,
) -> Option<ExitCode> {
    let windows = cfg!(windows);
    if !(windows && changes_scm && !dry_run) {
        return None;
    }
    let elevated = match elevate::token_elevated() {
        Ok(elevated) => elevated,
        Err(e) => {
            // Carry on: the SCM's own refusal then says what to do.
            eprintln!("warning: {e}");
            return None;
        }
    };
    let situation = Situation {
        windows,
        changes_scm,
        dry_run,
        elevated_child: false,
        elevated,
        forced: std::env::var_os(elevate::FORCE_ENV).is_some_and(|v| v == "1"),
    };
    if !elevate::should_relaunch(situation) {
        return None;
    }
    Some(relaunch_elevated(target, relaunch))
}

fn relaunch_elevated(target: &Target, relaunch: &elevate::Relaunch) -> ExitCode {
    let home = target.home();
    let root = herald_install::spec::home_root(home);
    let Some(root) = root.to_str() else {
        eprintln!(
            "herald: the home {} is not valid Unicode; run this from an elevated prompt",
            root.display()
        );
        return ExitCode::Failure;
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("herald: cannot find this executable: {e}");
            return ExitCode::Failure;
        }
    };
    let report = match ReportDir::create(&std::env::temp_dir()) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("herald: {e}");
            return ExitCode::Failure;
        }
    };
    let report_path = report.path();
    let Some(report_text) = report_path.to_str() else {
        eprintln!("herald: the temporary directory is not valid Unicode; run this from an elevated prompt");
        return ExitCode::Failure;
    };
    let args = elevate::relaunch_args(root, home.profile(), relaunch, report_text);
    eprintln!("note: a Windows Service needs an administrator: asking Windows (UAC) to run herald elevated");
    let directory = exe.parent().unwrap_or(Path::new("."));
    match elevate::run_elevated(&exe, &elevate::parameters(&args), directory) {
        Ok(code) => {
            match report.read() {
                Some(text) => {
                    for line in elevate::decode_report(&text) {
                        match line {
                            ReportLine::Out(text) => println!("{text}"),
                            ReportLine::Err(text) => eprintln!("{text}"),
                        }
                    }
                }
                None => eprintln!("herald: the elevated herald left no report"),
            }
            eprintln!("note: the elevated herald exited with code {code}");
            i32::try_from(code)
                .ok()
                .and_then(ExitCode::from_code)
                .unwrap_or(ExitCode::Failure)
        }
        Err(e) => {
            eprintln!("herald: {e}");
            ExitCode::Failure
        }
    }
}

fn scope(system: bool) -> Scope {
    if system { Scope::System } else { Scope::User }
}

/// Prints a plan's description (dry run), or its notes and what was done. `Some` when it was carried out.
fn print_applied(applied: &Applied, sink: &mut Sink) -> Option<()> {
    match applied {
        Applied::DryRun(description) => {
            for line in description.lines() {
                sink.out(line);
            }
            sink.out("dry run: nothing was changed");
            None
        }
        Applied::NothingToDo { notes } => {
            for note in notes {
                sink.out(format!("note: {note}"));
            }
            None
        }
        Applied::Done { notes, outcome } => {
            for note in notes {
                sink.out(format!("note: {note}"));
            }
            for line in &outcome.done {
                sink.out(format!("  {line}"));
            }
            for advice in &outcome.advice {
                sink.err(format!("note: {advice}"));
            }
            Some(())
        }
    }
}
