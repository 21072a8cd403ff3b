//! `herald deliveries list [--failed] [--json]` and `herald deliveries retry TURN`: the replies a push
//! adapter could not deliver (a webhook callback that never came up, a receiver answering `410`), set
//! aside in the journal rather than retried forever.
//!
//! **Invariant:** listing never writes: it reads the journal through a read-only connection, so it is
//! safe beside a running gateway. A retry goes through the running gateway (the control channel), which
//! takes the reply back and sends it at once; only when no gateway runs is the journal written here, and
//! the next start sends it.

use std::time::Duration;

use herald_home::ExitCode;
use herald_home::secrets::Variables;
use herald_journal::JournalLocation;
use herald_lifecycle::Target;
use herald_process::control::{self, Request};

use crate::cli::DeliveriesCommand;

/// How long the running gateway may take to answer a retry.
const RETRY_TIMEOUT: Duration = Duration::from_secs(10);

/// Most replies listed.
const LIST_LIMIT: usize = 1000;

pub fn deliveries(target: &Target, command: &DeliveriesCommand) -> ExitCode {
    match command {
        DeliveriesCommand::List { failed, json } => list(target, *failed, *json),
        DeliveriesCommand::Retry { turn } => retry(target, *turn),
    }
}

/// The journal the gateway of `target` writes (`[journal]`: `state.db`, or a PostgreSQL database).
fn location(target: &Target) -> Result<JournalLocation, String> {
    let config = target.config().map_err(|e| e.to_string())?;
    let variables = Variables::load(target.home()).map_err(|e| e.to_string())?;
    JournalLocation::resolve(target.home(), &config.journal, &variables).map_err(|e| e.to_string())
}

fn list(target: &Target, failed_only: bool, json: bool) -> ExitCode {
    let location = match location(target) {
        Ok(location) => location,
        Err(e) => {
            eprintln!("herald: {e}");
            return ExitCode::Failure;
        }
    };
    let report = match location.delivery_report(LIST_LIMIT) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("herald: {e}");
            return ExitCode::Failure;
        }
    };
    if json {
        let mut body = serde_json::json!({ "failed": report.failed });
        if !failed_only {
            body["waiting"] = report
                .waiting
                .iter()
                .map(|(adapter, count)| (adapter.clone(), serde_json::json!(count)))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        println!("{body}");
        return ExitCode::Ok;
    }
    if !failed_only {
        if report.waiting.is_empty() {
            println!("No reply is waiting to be delivered.");
        }
        for (adapter, count) in &report.waiting {
            println!("{adapter}: {count} reply(s) waiting to be delivered");
        }
    }
    if report.failed.is_empty() {
        println!("No reply is set aside.");
        return ExitCode::Ok;
    }
    println!("Set aside (undeliverable; `herald deliveries retry TURN` sends one again):");
    println!(
        "{:>8}  {:<9} {:<24} {:<20} why",
        "TURN", "ADAPTER", "SESSION", "SET ASIDE"
    );
    for failed in &report.failed {
        println!(
            "{:>8}  {:<9} {:<24} {:<20} {}",
            failed.turn_id,
            failed.adapter,
            shorten(&failed.chat_id, 24),
            herald_home::time::rfc3339_ms(failed.failed_ms),
            failed.error
        );
    }
    ExitCode::Ok
}

fn retry(target: &Target, turn: i64) -> ExitCode {
    let home = target.home();
    let running = herald_home::lock::InstanceLock::is_held(&home.lock_file()).unwrap_or(false);
    if running {
        return match control::call(home, Request::RetryDelivery { turn_id: turn }, RETRY_TIMEOUT) {
            Ok(reply) if reply.ok => {
                println!("Turn {turn}: its reply is being delivered again.");
                ExitCode::Ok
            }
            Ok(reply) => {
                eprintln!(
                    "herald: {}",
                    reply.error.unwrap_or_else(|| "the gateway refused".into())
                );
                ExitCode::Failure
            }
            Err(e) => {
                eprintln!("herald: cannot reach the running gateway: {e}");
                ExitCode::Failure
            }
        };
    }
    let location = match location(target) {
        Ok(location) => location,
        Err(e) => {
            eprintln!("herald: {e}");
            return ExitCode::Failure;
        }
    };
    if let JournalLocation::Sqlite(path) = &location
        && !path.exists()
    {
        eprintln!("herald: turn {turn} has no reply set aside (there is no journal yet)");
        return ExitCode::Failure;
    }
    let journal = match location.open() {
        Ok((journal, _)) => journal,
        Err(e) => {
            eprintln!("herald: {e}");
            return ExitCode::Failure;
        }
    };
    let outcome = journal.retry_delivery(turn).wait();
    drop(journal.close().wait());
    match outcome {
        Ok(Some(_)) => {
            println!("Turn {turn}: its reply will be delivered when the gateway starts.");
            ExitCode::Ok
        }
        Ok(None) => {
            eprintln!("herald: turn {turn} has no reply set aside");
            ExitCode::Failure
        }
        Err(e) => {
            eprintln!("herald: {e}");
            ExitCode::Failure
        }
    }
}

/// `text` cut to `width` characters, with `…` when cut.
fn shorten(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let kept: String = text.chars().take(width.saturating_sub(1)).collect();
    format!("{kept}…")
}
