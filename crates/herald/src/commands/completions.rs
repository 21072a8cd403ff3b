//! `herald completions <SHELL>`: a completion script generated from the same clap definition that parses
//! the command line, so it can never offer an option that does not exist.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;
use herald_home::ExitCode;

use crate::cli::Cli;

pub fn completions(shell: Shell) -> ExitCode {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "herald", &mut script);
    let mut out = std::io::stdout().lock();
    match out.write_all(&script).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::Ok,
        // A closed pipe (`herald completions bash | head`) is the reader's choice, not a failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::Ok,
        Err(e) => {
            eprintln!("herald: cannot write the completion script: {e}");
            ExitCode::Failure
        }
    }
}
