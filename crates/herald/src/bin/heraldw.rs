//! `heraldw`: the same program as `herald`, linked for the Windows GUI subsystem, so starting it (from a
//! logon task, a Startup launcher or a GUI app) never creates a console window or steals focus. On other
//! OSes the attribute has no effect and `heraldw` is simply a second name for `herald`.
//!
//! It compiles the binary's modules itself (the crate has no library target), so both executables run
//! one `main_entry`.

#![windows_subsystem = "windows"]

#[path = "../cli.rs"]
mod cli;
#[path = "../commands/mod.rs"]
mod commands;
#[path = "../entry.rs"]
mod entry;
#[path = "../payload.rs"]
mod payload;

fn main() -> std::process::ExitCode {
    entry::main_entry()
}
