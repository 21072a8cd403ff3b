//! One module per command.

pub mod chat;
pub mod config;
pub mod install;
pub mod logs;
pub mod restart;
pub mod run;
pub mod start;
pub mod status;
pub mod stop;

/// Before a detached spawn (`start`, `restart --after-exit`): the home must exist (the child logs into it)
/// and we must know our own executable. Prints the problem and returns `None` when either fails.
fn prepare_detached_spawn(home: &herald_home::Home) -> Option<std::path::PathBuf> {
    if let Err(e) = home.ensure() {
        eprintln!("herald: {e}");
        return None;
    }
    match std::env::current_exe() {
        Ok(exe) => Some(exe),
        Err(e) => {
            eprintln!("herald: cannot find the herald executable: {e}");
            None
        }
    }
}
