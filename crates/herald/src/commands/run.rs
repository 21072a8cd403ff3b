//! `herald run`.

use herald_daemon::{RunError, RunOptions};
use herald_home::{ExitCode, Home};

use crate::cli::RunArgs;

pub fn run(home: &Home, args: &RunArgs) -> ExitCode {
    match herald_daemon::run(RunOptions {
        home: home.clone(),
        replace: args.replace,
    }) {
        Ok(code) => code,
        Err(e) => {
            match &e {
                RunError::Config(config) => eprintln!("herald: invalid configuration: {config}"),
                other => eprintln!("herald: {other}"),
            }
            e.exit_code()
        }
    }
}
