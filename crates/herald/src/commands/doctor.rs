//! `herald doctor`: the lifecycle layer's checks, plus the two that need the payload crates (the agent
//! probe, Telegram's `getMe` and the Matrix device/homeserver check), printed one line each with the fix.

use std::time::Duration;

use herald_home::ExitCode;
use herald_home::config::{AgentBackend, Config};
use herald_home::secrets::Variables;
use herald_lifecycle::Target;
use herald_lifecycle::doctor::{Diagnosis, Finding, PayloadProbes, Verdict, diagnose};
use herald_telegram::TelegramOptions;

use crate::cli::DoctorArgs;
use crate::paint::Paint;

/// The agent probe's own budget, on top of the backend's (a probe that hangs must not hang doctor).
const AGENT_PROBE_BUDGET: Duration = Duration::from_secs(10);
/// How long Telegram's `getMe` may take.
const TELEGRAM_PROBE_BUDGET: Duration = Duration::from_secs(10);
/// How long each of the Matrix probe's requests may take.
#[cfg(feature = "matrix")]
const MATRIX_PROBE_BUDGET: Duration = Duration::from_secs(10);
/// How long the journal's PostgreSQL database may take to answer.
#[cfg(feature = "postgres")]
const JOURNAL_PROBE_BUDGET: Duration = Duration::from_secs(10);

pub fn doctor(target: &Target, args: &DoctorArgs) -> ExitCode {
    let probes = Probes {
        home: target.home().clone(),
    };
    let diagnosis = diagnose(target, &probes);
    if args.json {
        print_json(&diagnosis);
    } else {
        print_text(&diagnosis);
    }
    if diagnosis.failed() {
        ExitCode::Failure
    } else {
        ExitCode::Ok
    }
}

fn print_text(diagnosis: &Diagnosis) {
    let paint = Paint::stdout();
    for finding in &diagnosis.findings {
        println!(
            "{}  {:<10}  {}",
            paint.verdict(finding.verdict.as_str()),
            finding.check,
            finding.detail
        );
        if let Some(fix) = finding.fix.as_deref().filter(|f| !f.is_empty()) {
            println!("{:<4}  {:<10}  fix: {fix}", "", "");
        }
    }
    let count = |v| diagnosis.findings.iter().filter(|f| f.verdict == v).count();
    println!(
        "{}: {} passed, {} warnings, {} failed",
        if diagnosis.failed() {
            "problems found"
        } else {
            "ok"
        },
        count(Verdict::Pass),
        count(Verdict::Warn),
        count(Verdict::Fail)
    );
}

fn print_json(diagnosis: &Diagnosis) {
    let checks: Vec<_> = diagnosis
        .findings
        .iter()
        .map(|f| {
            serde_json::json!({
                "check": f.check,
                "verdict": f.verdict.as_str(),
                "detail": f.detail,
                "fix": f.fix,
            })
        })
        .collect();
    println!(
        "{}",
        serde_json::json!({ "ok": !diagnosis.failed(), "checks": checks })
    );
}

/// The payload probes, each on a small runtime of its own.
struct Probes {
    /// Where the Matrix device and the SQLite journal live.
    home: herald_home::Home,
}

impl PayloadProbes for Probes {
    fn agent(&self, config: &Config, variables: &Variables) -> Finding {
        let backend = config.agent.backend;
        let fix = match backend {
            AgentBackend::Echo => "",
            AgentBackend::Command => "fix [agent.command] command in herald.toml",
            AgentBackend::Openai => {
                "check [agent.openai] base_url (it usually ends in /v1) and the key (`herald secret set` the \
                 variable api_key_env names)"
            }
        };
        let agent = match crate::payload::agent(config, variables, None) {
            Ok(agent) => agent,
            Err(e) => return Finding::fail("agent", e.to_string(), fix),
        };
        let outcome = block_on(async { tokio::time::timeout(AGENT_PROBE_BUDGET, agent.probe()).await });
        match outcome {
            Ok(Ok(Ok(checked))) => Finding::pass("agent", format!("{}: {checked}", agent.name())),
            Ok(Ok(Err(e))) => Finding::fail("agent", format!("{}: {e}", agent.name()), fix),
            Ok(Err(_elapsed)) => Finding::fail(
                "agent",
                format!(
                    "{}: no answer within {} s",
                    agent.name(),
                    AGENT_PROBE_BUDGET.as_secs()
                ),
                fix,
            ),
            Err(e) => Finding::warn("agent", format!("cannot run the probe: {e}"), ""),
        }
    }

    fn telegram(&self, config: &Config, variables: &Variables) -> Finding {
        let fix = "check [telegram] token_env (`herald secret set` it) and api_base";
        let options = match TelegramOptions::from_config(&config.telegram, variables) {
            Ok(options) => options,
            Err(e) => return Finding::fail("telegram", e.to_string(), fix),
        };
        match block_on(options.who_am_i(TELEGRAM_PROBE_BUDGET)) {
            Ok(Ok(bot)) => Finding::pass("telegram", format!("getMe: the token is valid ({bot})")),
            Ok(Err(e)) => Finding::fail("telegram", e.to_string(), fix),
            Err(e) => Finding::warn("telegram", format!("cannot run the probe: {e}"), ""),
        }
    }

    fn journal(&self, config: &Config, variables: &Variables) -> Finding {
        let fix = "check [journal] url (host, port, database, sslmode) and the password its password_env names \
                   (`herald secret set` it)";
        let location = match herald_journal::JournalLocation::resolve(&self.home, &config.journal, variables)
        {
            Ok(location) => location,
            Err(e) => return Finding::fail("journal", e.to_string(), fix),
        };
        match &location {
            #[cfg(feature = "postgres")]
            herald_journal::JournalLocation::Postgres(options) => {
                match herald_journal::postgres::probe(options, JOURNAL_PROBE_BUDGET) {
                    Ok(detail) => Finding::pass("journal", detail),
                    Err(e) => Finding::fail("journal", e, fix),
                }
            }
            herald_journal::JournalLocation::Sqlite(path) => {
                Finding::pass("journal", format!("{} (SQLite, in the home)", path.display()))
            }
        }
    }

    #[cfg(feature = "matrix")]
    fn matrix(&self, config: &Config, variables: &Variables) -> Finding {
        let fix = "check [matrix] homeserver and the secret its password_env or access_token_env names \
                   (`herald secret set` it); a lost key store: see the message";
        let options =
            match herald_matrix::MatrixOptions::from_config(&config.matrix, variables, self.home.clone()) {
                Ok(options) => options,
                Err(e) => return Finding::fail("matrix", e.to_string(), fix),
            };
        match block_on(herald_matrix::probe::probe(&options, MATRIX_PROBE_BUDGET)) {
            Ok(Ok(detail)) => Finding::pass("matrix", detail),
            Ok(Err(e)) => Finding::fail("matrix", e, fix),
            Err(e) => Finding::warn("matrix", format!("cannot run the probe: {e}"), ""),
        }
    }

    #[cfg(not(feature = "matrix"))]
    fn matrix(&self, _config: &Config, _variables: &Variables) -> Finding {
        Finding::fail(
            "matrix",
            crate::payload::WITHOUT_MATRIX,
            "rebuild with `--features matrix`, or set [matrix] enabled = false",
        )
    }
}

/// Runs a future on a fresh current-thread runtime.
fn block_on<F: std::future::Future>(future: F) -> std::io::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(future))
}
