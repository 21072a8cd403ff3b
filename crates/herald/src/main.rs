//! The `herald` binary: parse the command line, resolve the home, call one function per command.
//!
//! Each command is a thin function over the library crates; this crate adds only presentation (text and
//! JSON output) and the mapping of typed errors to the exit-code contract in `herald_home::ExitCode`.

mod cli;
mod commands;
mod payload;

use clap::Parser;
use herald_home::ExitCode;
use herald_home::paths::{Home, HomeRequest};

use crate::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
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
