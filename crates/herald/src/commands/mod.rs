//! One module per command: call the lifecycle layer (or the daemon, for `run`), print the outcome, return
//! the exit code. No command calls another command, and none knows how a service manager is asked.

pub mod access;
pub mod chat;
pub mod completions;
pub mod config;
pub mod deliveries;
pub mod doctor;
pub mod install;
pub mod logs;
pub mod man;
pub mod reload;
pub mod restart;
pub mod run;
pub mod secret;
pub mod start;
pub mod status;
pub mod stop;
pub mod upgrade;
pub mod version;

use herald_home::paths::HomeSource;
use herald_home::{ExitCode, Home};
use herald_lifecycle::{LifecycleError, Routed};

/// `no Herald home at PATH (...)` when the home directory does not exist. Nothing was ever started there,
/// so "not running" alone would hide a mistyped `--home`, `HERALD_HOME` or `--profile`.
pub(crate) fn missing_home(home: &Home) -> Option<String> {
    if std::fs::symlink_metadata(home.root()).is_ok() {
        return None;
    }
    let why = match (home.profile(), home.source()) {
        (Some(_), _) => "a typo in --profile?",
        (None, HomeSource::Flag) => "a typo in --home?",
        (None, HomeSource::Env) => "a typo in HERALD_HOME?",
        (None, HomeSource::Default) => "nothing has run here yet: `herald start` creates it",
    };
    Some(format!("no Herald home at {} ({why})", home.root().display()))
}

/// Prints a failed operation (with the gateway's last log lines when it died starting) and maps it.
pub(crate) fn fail(error: &LifecycleError) -> ExitCode {
    eprintln!("herald: {error}");
    if let Some(tail) = error.log_tail() {
        eprint!("{tail}");
    }
    error.exit_code()
}

/// `  <step>` lines, `note:` advice, then `herald stopped via systemd (user) in 12 ms`.
pub(crate) fn print_routed(routed: &Routed) {
    for line in &routed.done {
        println!("  {line}");
    }
    for advice in &routed.advice {
        eprintln!("note: {advice}");
    }
    let verb = match routed.action {
        herald_lifecycle::Action::Start => "started",
        herald_lifecycle::Action::Stop => "stopped",
        herald_lifecycle::Action::Restart => "restarted",
    };
    let pid = routed.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
    println!(
        "herald {verb} via {}{pid} in {:.0} ms",
        routed.manager,
        routed.elapsed.as_secs_f64() * 1000.0
    );
}
