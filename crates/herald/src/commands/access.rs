//! `herald pair ADAPTER` and `herald access list | revoke`: who may talk to the agent besides the
//! config's lists (see `herald_home::access`).
//!
//! **Invariant:** a pairing code is printed once, here, and stored nowhere (only its hash is); nothing
//! here needs the gateway to be running, and the running gateway sees every change at the next message
//! (one file per fact, no reload).

use herald_home::ExitCode;
use herald_home::access::{self, AccessError, AccessLevel, CODE_TTL};
use herald_home::time::now_ms;
use herald_lifecycle::Target;

use crate::cli::{AccessCommand, PairArgs};

pub fn pair(target: &Target, args: &PairArgs) -> ExitCode {
    if args.expires_in.is_zero() || args.expires_in > CODE_TTL {
        eprintln!("herald: --expires-in must be more than 0 and at most 1h");
        return ExitCode::Usage;
    }
    let adapter = args.adapter.name();
    let level = if args.admin {
        AccessLevel::Admin
    } else {
        AccessLevel::User
    };
    let home = target.home();
    match access::issue_code(home, adapter, level, args.expires_in, now_ms()) {
        Ok(issued) => {
            println!("{}", issued.code);
            let minutes = args.expires_in.as_secs().div_ceil(60);
            eprintln!(
                "Send this to the person to let in ({} access). Within {minutes} min they send the bot:\n  \
                 /pair {}\nThe code works once. `herald access list` shows who paired.",
                level.as_str(),
                issued.code
            );
            if let Ok(config) = target.config()
                && adapter == "telegram"
                && !config.telegram.enabled
            {
                eprintln!("note: [telegram] is not enabled in herald.toml: nobody can send the code yet");
            }
            ExitCode::Ok
        }
        Err(e) => fail(&e),
    }
}

pub fn access(target: &Target, command: &AccessCommand) -> ExitCode {
    let home = target.home();
    match command {
        AccessCommand::List { json } => {
            let (grants, problems) = access::grants(home);
            let open = access::open_codes(home, now_ms());
            if *json {
                let body = serde_json::json!({
                    "grants": grants,
                    "open_codes": open.iter().map(|c| serde_json::json!({
                        "adapter": c.adapter, "level": c.level, "expires_ms": c.expires_ms,
                    })).collect::<Vec<_>>(),
                    "problems": problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
                });
                println!("{body:#}");
            } else {
                if grants.is_empty() {
                    println!("Nobody has paired (the config's allowed_users still apply).");
                }
                for grant in &grants {
                    let when = herald_home::time::rfc3339_ms(grant.granted_ms);
                    println!(
                        "{:<10} {:<16} {:<6} {:<20} paired {when}",
                        grant.adapter,
                        grant.user,
                        grant.level.as_str(),
                        grant.name.as_deref().unwrap_or("-"),
                    );
                }
                if !open.is_empty() {
                    println!("{} pairing code(s) not used yet.", open.len());
                }
                for problem in &problems {
                    eprintln!("warning: {problem}");
                }
            }
            if problems.is_empty() {
                ExitCode::Ok
            } else {
                ExitCode::Failure
            }
        }
        AccessCommand::Revoke { adapter, user } => match access::revoke(home, adapter.name(), user) {
            Ok(Some(grant)) => {
                println!(
                    "revoked {} user {}{}: their next message is denied",
                    grant.adapter,
                    grant.user,
                    grant.name.map(|n| format!(" ({n})")).unwrap_or_default()
                );
                ExitCode::Ok
            }
            Ok(None) => {
                eprintln!(
                    "herald: {} user {user} was not let in by pairing (`herald access list`; people in \
                     allowed_users are removed from herald.toml)",
                    adapter.name()
                );
                ExitCode::Failure
            }
            Err(e) => fail(&e),
        },
    }
}

fn fail(e: &AccessError) -> ExitCode {
    eprintln!("herald: {e}");
    match e {
        AccessError::BadAdapter(_) => ExitCode::Usage,
        AccessError::Invalid { .. } => ExitCode::Config,
        AccessError::Home(e) if e.is_unsafe() => ExitCode::Config,
        _ => ExitCode::Failure,
    }
}
