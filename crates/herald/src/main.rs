//! `herald`: the console executable. Everything is in the library target (`lib.rs`), which `heraldw`
//! shares.

fn main() -> std::process::ExitCode {
    herald_cli::main_entry()
}
