//! `herald install` and `herald uninstall`: the lifecycle layer plans and carries out; this prints.

use herald_home::ExitCode;
use herald_install::{Backend, Scope};
use herald_lifecycle::Target;
use herald_lifecycle::install::{
    Applied, BackendChoice, InstallOptions, Installed, NoAutostart, Uninstalled, Unmanaged,
};

use crate::cli::{BackendArg, InstallArgs, UninstallArgs};

pub fn install(target: &Target, args: &InstallArgs) -> ExitCode {
    let options = InstallOptions {
        backend: match args.backend {
            BackendArg::Auto => BackendChoice::Auto,
            BackendArg::None => BackendChoice::None,
            BackendArg::Systemd => BackendChoice::Backend(Backend::Systemd),
            BackendArg::Launchd => BackendChoice::Backend(Backend::Launchd),
            BackendArg::Task => BackendChoice::Backend(Backend::Task),
            BackendArg::Startup => BackendChoice::Backend(Backend::Startup),
            BackendArg::WindowsService => BackendChoice::Backend(Backend::WindowsService),
        },
        scope: scope(args.system),
        run_as: args.run_as_user.clone(),
        start_now: !args.no_start_now,
        start_on_login: !args.no_start_on_login,
        force: args.force,
        dry_run: args.dry_run,
    };
    // A registration names this executable: one `cargo clean` or a reboot must not take it away.
    if !matches!(args.backend, BackendArg::None)
        && let Ok(exe) = std::env::current_exe()
        && let Some(why) = herald_install::spec::fragile_executable(&exe, &std::env::temp_dir())
    {
        eprintln!("warning: {why}");
    }
    // The gateway the manager starts sees none of this shell's variables: name what it will lack.
    match herald_lifecycle::install::variable_checks(target, &options) {
        Ok(checks) => {
            for check in checks.iter().filter(|c| !c.found.resolves()) {
                eprintln!("warning: {}", check.describe());
            }
        }
        Err(e) => eprintln!("warning: {e}"),
    }
    // A system unit running as an account that cannot use the home would never serve.
    if let Some(problem) = herald_lifecycle::install::run_as_check(target, &options) {
        eprintln!("warning: {problem}");
    }
    let root = target.home().root().display();
    match herald_lifecycle::install::install(target, &options) {
        Ok(Installed::Registered { backend, applied }) => {
            if let Some(why) = herald_lifecycle::install::fell_back(&applied) {
                println!(
                    "the Scheduled Task could not be registered ({why}); using a Startup-folder launcher instead"
                );
            }
            match print_applied(&applied) {
                Some(()) => println!("herald installed with {backend} for {root}"),
                None if matches!(applied, Applied::NothingToDo { .. }) => {
                    println!("herald is already installed with {backend} for {root}; nothing to do");
                }
                None => {}
            }
            ExitCode::Ok
        }
        Ok(Installed::NoAutostart(NoAutostart::DryRun)) => {
            println!(
                "no autostart; would start the gateway now, detached and supervised (as `herald start`)"
            );
            println!("dry run: nothing was changed");
            ExitCode::Ok
        }
        Ok(Installed::NoAutostart(NoAutostart::NotStarted)) => {
            println!("no autostart registered and --no-start-now: nothing to do");
            ExitCode::Ok
        }
        Ok(Installed::NoAutostart(NoAutostart::Started(outcome))) => {
            super::start::print_started(&outcome);
            ExitCode::Ok
        }
        Err(e) => super::fail(&e),
    }
}

pub fn uninstall(target: &Target, args: &UninstallArgs) -> ExitCode {
    let root = target.home().root().display();
    match herald_lifecycle::install::uninstall(target, scope(args.system), args.dry_run) {
        Ok(Uninstalled { applied, unmanaged }) => {
            let registered = !matches!(applied, Applied::NothingToDo { .. });
            match print_applied(&applied) {
                Some(()) => println!("herald uninstalled for {root}"),
                None if !registered => match unmanaged {
                    Unmanaged::NotRunning => {
                        println!("herald is not installed for {root}; nothing to do");
                    }
                    _ => println!("herald is not installed for {root}; no registration to remove"),
                },
                None => {}
            }
            match &unmanaged {
                Unmanaged::NotRunning => {}
                Unmanaged::WouldStop { pid } => {
                    let who =
                        pid.map_or_else(|| "the gateway".to_owned(), |p| format!("the gateway (pid {p})"));
                    println!("would stop {who}, which runs without a service manager");
                    println!("dry run: nothing was changed");
                }
                Unmanaged::Stopped(outcome) => super::stop::print_stopped(target, outcome),
            }
            ExitCode::Ok
        }
        Err(e) => super::fail(&e),
    }
}

fn scope(system: bool) -> Scope {
    if system { Scope::System } else { Scope::User }
}

/// Prints a plan's description (dry run), or its notes and what was done. `Some` when it was carried out.
fn print_applied(applied: &Applied) -> Option<()> {
    match applied {
        Applied::DryRun(description) => {
            print!("{description}");
            println!("dry run: nothing was changed");
            None
        }
        Applied::NothingToDo { notes } => {
            for note in notes {
                println!("note: {note}");
            }
            None
        }
        Applied::Done { notes, outcome } => {
            for note in notes {
                println!("note: {note}");
            }
            for line in &outcome.done {
                println!("  {line}");
            }
            for advice in &outcome.advice {
                eprintln!("note: {advice}");
            }
            Some(())
        }
    }
}
