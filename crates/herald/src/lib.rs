//! The `herald` program, as a library target so its two executables share one compiled copy: `herald`
//! (console) and `heraldw` (the windowless GUI-subsystem build a logon task or the Startup fallback's Run value starts on
//! Windows, so no console window is ever created). Both run [`main_entry`]; they differ only in the
//! subsystem the linker records.
//!
//! Parse the command line (`cli`, clap's view: the "low" arguments), resolve the home once into a
//! [`herald_lifecycle::Target`] (which reads `herald.toml` at most once), call one thin function per
//! command (`commands`: call the lifecycle layer, print its outcome), map the result to the exit-code
//! contract. This crate adds only presentation and the one place that names the concrete payload
//! (`payload`).

use clap::Parser;
use herald_home::ExitCode;
use herald_home::paths::{Home, HomeRequest};

use herald_lifecycle::Target;

use crate::cli::{Cli, Command};

mod cli;
mod commands;
pub mod paint;
mod payload;

/// Runs the program with this process's arguments and environment.
pub fn main_entry() -> std::process::ExitCode {
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
    // These describe the program, not a home: they work wherever the home would not resolve.
    match &cli.command {
        Command::Completions(args) => return commands::completions::completions(args.shell).into(),
        Command::Man(args) => return commands::man::man(args.command.as_deref()).into(),
        Command::Version(args) => return commands::version::version(args).into(),
        _ => {}
    }
    let home = match Home::resolve(HomeRequest::from_env(cli.global.home, cli.global.profile)) {
        Ok(home) => home,
        Err(e) => {
            eprintln!("herald: {e}");
            return ExitCode::Config.into();
        }
    };
    let target = Target::new(home);
    let code = match cli.command {
        Command::Run(args) => commands::run::run(target, &args),
        Command::Start(args) => commands::start::start(&target, &args),
        Command::Restart(args) => commands::restart::restart(&target, &args),
        Command::Reload => commands::reload::reload(&target),
        Command::Stop(args) => commands::stop::stop(&target, &args),
        Command::Status(args) => commands::status::status(&target, &args),
        Command::Logs(args) => commands::logs::logs(&target, &args),
        Command::Config(cmd) => commands::config::config(target.home(), &cmd),
        Command::Secret(cmd) => commands::secret::secret(&target, &cmd),
        Command::Pair(args) => commands::access::pair(&target, &args),
        Command::Access(cmd) => commands::access::access(&target, &cmd),
        Command::Deliveries(cmd) => commands::deliveries::deliveries(&target, &cmd),
        Command::Chat(args) => commands::chat::chat(&target, &args),
        Command::Doctor(args) => commands::doctor::doctor(&target, &args),
        Command::Install(args) => commands::install::install(&target, &args),
        Command::Uninstall(args) => commands::install::uninstall(&target, &args),
        Command::Upgrade(args) => commands::upgrade::upgrade(target, &args),
        Command::Completions(_) | Command::Man(_) | Command::Version(_) => {
            unreachable!("answered before the home is resolved")
        }
    };
    code.into()
}

/// Logs go to stderr. `HERALD_LOG` takes a tracing filter (`debug`, `herald_daemon=trace`, ...); the
/// default is `info` for `run` (the Matrix client library's own chatter only from `warn`) and `warn`
/// for the short-lived commands.
fn init_tracing(is_run: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if is_run {
        "info,matrix_sdk=warn,matrix_sdk_base=warn,matrix_sdk_crypto=warn,matrix_sdk_sqlite=warn,matrix_sdk_common=warn"
    } else {
        "warn"
    };
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
