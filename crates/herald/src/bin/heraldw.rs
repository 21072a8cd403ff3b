//! `heraldw`: the same program as `herald`, linked for the Windows GUI subsystem, so starting it (from a
//! logon task, the Startup fallback's Run value or a GUI app) never creates a console window or steals focus. On other
//! OSes the attribute has no effect and `heraldw` is simply a second name for `herald`. Both executables
//! are a `main` over the crate's library target.

#![windows_subsystem = "windows"]

fn main() -> std::process::ExitCode {
    herald_cli::main_entry()
}
