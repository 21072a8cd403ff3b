//! `herald reload`: the control channel's `reload`, and what the gateway says it did.

use std::time::Duration;

use herald_home::ExitCode;
use herald_home::lock::InstanceLock;
use herald_lifecycle::Target;
use herald_process::control::{self, Request};

/// A reload reads two small files and may build an HTTP client: seconds at most.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

pub fn reload(target: &Target) -> ExitCode {
    let home = target.home();
    if !InstanceLock::is_held(&home.lock_file()).unwrap_or(false) {
        eprintln!(
            "herald: not running on {} (a reload applies to a running gateway; `herald start` reads \
             herald.toml and the secrets anyway)",
            home.root().display()
        );
        return ExitCode::NotRunning;
    }
    match control::call(home, Request::Reload, RELOAD_TIMEOUT) {
        Ok(reply) if reply.ok => {
            let summary = reply.reload.unwrap_or_default();
            println!(
                "gateway pid {} read herald.toml and the secrets again",
                reply.gateway_pid.unwrap_or(reply.pid)
            );
            if summary.applied.is_empty() && summary.restart_needed.is_empty() {
                println!("  nothing changed");
            }
            if !summary.applied.is_empty() {
                println!("  applied now: {}", summary.applied.join(", "));
            }
            if !summary.restart_needed.is_empty() {
                println!(
                    "  changed, but applied only by a restart (`herald restart`): {}",
                    summary.restart_needed.join(", ")
                );
            }
            ExitCode::Ok
        }
        Ok(reply) => {
            eprintln!(
                "herald: {}",
                reply
                    .error
                    .unwrap_or_else(|| "the gateway refused the reload".into())
            );
            ExitCode::Config
        }
        Err(e) => {
            eprintln!("herald: cannot reach the gateway's control channel: {e}");
            ExitCode::Failure
        }
    }
}
