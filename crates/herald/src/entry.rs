//! The one entry point of both executables: `herald` (console) and `heraldw` (the windowless
//! GUI-subsystem build a logon task or Startup launcher starts on Windows, so no console window is ever
//! created). Both run exactly this; they differ only in the subsystem the linker records.
//!
//! Parse the command line, resolve the home, call one function per command, map the result to the
//! exit-code contract.

use clap::Parser;
use herald_home::ExitCode;
use herald_home::paths::{Home, HomeRequest};

use crate::cli::{Cli, Command};
use crate::commands;

pub(crate) fn main_entry() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::Usage.into()
            } else {
                ExitCode::Ok.into()
            };
        }
    };
    init_tracing(matches!(cli.command, Command::Run(_)));
    let home = match Home::resolve(HomeRequest::from_env(cli.global.home, cli.global.profile)) {
        Ok(home) => home,
        Err(e) => {
            eprintln!("herald: {e}");
            return ExitCode::Config.into();
        }
    };
    let code = match cli.command {
        Command::Run(args) => commands::run::run(&home, &args),
        Command::Start(args) => commands::start::start(&home, &args),
        Command::Restart(args) => commands::restart::restart(&home, &args),
        Command::Stop(args) => commands::stop::stop(&home, &args),
        Command::Status(args) => commands::status::status(&home, &args),
        Command::Logs(args) => commands::logs::logs(&home, &args),
        Command::Config(cmd) => commands::config::config(&home, &cmd),
        Command::Chat(args) => commands::chat::chat(&home, &args),
        Command::Install(args) => commands::install::install(&home, &args),
        Command::Uninstall(args) => commands::install::uninstall(&home, &args),
    };
    code.into()
}

/// Logs go to stderr. `HERALD_LOG` takes a tracing filter (`debug`, `herald_daemon=trace`, ...); the
/// default is `info` for `run` and `warn` for the short-lived commands.
fn init_tracing(is_run: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if is_run { "info" } else { "warn" };
    let filter = EnvFilter::try_from_env("HERALD_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        // A supervised worker's stderr is a pipe to its monitor; if the monitor dies, a failed log write
        // must not become a panic (tracing-subscriber would otherwise report it with eprintln!).
        .log_internal_errors(false)
        .try_init();
}
