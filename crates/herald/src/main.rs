//! The `herald` binary: parse the command line, resolve the home, call one function per command.
//!
//! Each command is a thin function over the library crates; this crate adds only presentation (text and
//! JSON output) and the mapping of typed errors to the exit-code contract in `herald_home::ExitCode`.

mod cli;
mod commands;
mod entry;
mod payload;

fn main() -> std::process::ExitCode {
    entry::main_entry()
}
