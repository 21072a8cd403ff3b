//! `herald man [COMMAND]`: the manual page herald(1), or herald-COMMAND(1), in roff, generated from the
//! clap definition that parses the command line (so the pages and the program agree), to standard
//! output: `herald man | man -l -`, or `herald man stop > herald-stop.1`.

use std::io::Write;

use clap::CommandFactory;
use herald_home::ExitCode;

use crate::cli::Cli;

pub fn man(command: Option<&str>) -> ExitCode {
    let mut herald = Cli::command();
    // Propagates the global options (--home, --profile) and the version into every subcommand.
    herald.build();
    let page = match command {
        None => herald,
        Some(name) => match herald.find_subcommand(name) {
            Some(sub) => {
                // clap names are `&'static str` here; one name, once, in a process that then exits.
                let page_name: &'static str = format!("herald-{}", sub.get_name()).leak();
                let bin_name = format!("herald {}", sub.get_name());
                sub.clone()
                    .name(page_name)
                    .bin_name(bin_name)
                    .version(crate::cli::VERSION)
            }
            None => {
                let names: Vec<&str> = herald
                    .get_subcommands()
                    .filter(|s| !s.is_hide_set() && s.get_name() != "help")
                    .map(clap::Command::get_name)
                    .collect();
                eprintln!(
                    "herald: no command {name:?}; the pages are herald and herald-{{{}}}",
                    names.join(",")
                );
                return ExitCode::Usage;
            }
        },
    };
    let mut roff = Vec::new();
    if let Err(e) = clap_mangen::Man::new(page).render(&mut roff) {
        eprintln!("herald: cannot render the manual page: {e}");
        return ExitCode::Failure;
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(&roff).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::Ok,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::Ok,
        Err(e) => {
            eprintln!("herald: cannot write the manual page: {e}");
            ExitCode::Failure
        }
    }
}
