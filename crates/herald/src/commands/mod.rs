//! One module per command: call the lifecycle layer (or the daemon, for `run`), print the outcome, return
//! the exit code. No command calls another command, and none knows how a service manager is asked.

pub mod chat;
pub mod config;
pub mod doctor;
pub mod install;
pub mod logs;
pub mod reload;
pub mod restart;
pub mod run;
pub mod secret;
pub mod start;
pub mod status;
pub mod stop;

use herald_home::ExitCode;
use herald_lifecycle::{LifecycleError, Routed};

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
