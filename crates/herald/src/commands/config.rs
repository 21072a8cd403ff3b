//! `herald config check | init | show`.

use herald_gateway::agent::command::resolve_program;
use herald_home::atomic::write_atomic;
use herald_home::config::{AgentBackend, Config, ConfigError, ConfigSource, TEMPLATE};
use herald_home::{ExitCode, Home};
use herald_lifecycle::variables::{self, Found};

use crate::cli::ConfigCommand;

pub fn config(home: &Home, command: &ConfigCommand) -> ExitCode {
    match command {
        ConfigCommand::Check => match Config::load(&home.config_file()) {
            Ok((config, source)) => {
                match source {
                    ConfigSource::File(path) => println!("{}: ok", path.display()),
                    ConfigSource::Defaults => println!(
                        "{} does not exist: the embedded defaults apply (ok)",
                        home.config_file().display()
                    ),
                }
                let variables = check_variables(home, &config);
                let program = check_program(&config);
                if program != ExitCode::Ok {
                    program
                } else {
                    variables
                }
            }
            Err(e) => report(&e),
        },
        ConfigCommand::Init { force } => {
            let path = home.config_file();
            if path.exists() && !force {
                eprintln!(
                    "herald: {} already exists; use --force to overwrite it",
                    path.display()
                );
                return ExitCode::Failure;
            }
            if let Err(e) = home.ensure() {
                eprintln!("herald: {e}");
                return ExitCode::Failure;
            }
            match write_atomic(&path, TEMPLATE.as_bytes()) {
                Ok(()) => {
                    println!("wrote {}", path.display());
                    ExitCode::Ok
                }
                Err(e) => {
                    eprintln!("herald: {e}");
                    ExitCode::Failure
                }
            }
        }
        ConfigCommand::Show => match Config::load(&home.config_file()) {
            Ok((config, source)) => {
                match source {
                    ConfigSource::File(path) => println!("# effective configuration from {}", path.display()),
                    ConfigSource::Defaults => println!(
                        "# effective configuration: embedded defaults ({} does not exist)",
                        home.config_file().display()
                    ),
                }
                print!("{}", config.to_toml());
                ExitCode::Ok
            }
            Err(e) => report(&e),
        },
    }
}

/// Every variable the config names must have a value for a start from here to work; one only this
/// shell has is worth a note (a service-managed gateway will not see it).
fn check_variables(home: &Home, config: &Config) -> ExitCode {
    let checks = match variables::check(home, config, None) {
        Ok(checks) => checks,
        Err(e) => {
            eprintln!("herald: {e}");
            return ExitCode::Config;
        }
    };
    let mut code = ExitCode::Ok;
    for check in &checks {
        match check.found {
            Found::Missing => {
                eprintln!("herald: {}", check.describe());
                code = ExitCode::Config;
            }
            Found::Environment => {
                println!("{}", check.describe());
                eprintln!(
                    "note: a gateway a service manager starts does not see this shell's variables: `herald \
                     secret set {}` keeps {} for every start",
                    check.variable, check.variable
                );
            }
            _ => println!("{}", check.describe()),
        }
    }
    code
}

/// `[agent.command] command` must name a program that exists and may be run: the gateway would start,
/// and answer every turn with an apology.
fn check_program(config: &Config) -> ExitCode {
    if config.agent.backend != AgentBackend::Command {
        return ExitCode::Ok;
    }
    let program = config.agent.command.command.first().cloned().unwrap_or_default();
    match resolve_program(std::ffi::OsStr::new(&program)) {
        Ok(path) => {
            println!("agent.command.command: runs {}", path.display());
            ExitCode::Ok
        }
        Err(why) => {
            eprintln!("herald: agent.command.command: {why}");
            ExitCode::Config
        }
    }
}

fn report(error: &ConfigError) -> ExitCode {
    eprintln!("herald: invalid configuration: {error}");
    ExitCode::Config
}
