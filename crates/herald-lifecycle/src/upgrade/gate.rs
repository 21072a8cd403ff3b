//! The health gate: is the gateway now serving this home the expected version, and does it work?
//!
//! Passed when, within the budget, one look finds: the version's gateway holding the home and verified
//! (`status --deep`'s probes 1–8: records, lock, identity, liveness, state, lifecycle, control-channel
//! ping, HTTP readiness), and then one synthetic turn through its journal completes
//! ([`Request::CheckTurn`]).
//!
//! **Invariant:** the gate judges Herald, not the world around it. The agent backend (probe 11), the chat
//! adapters' connections (probe 10) and the service manager's view (probe 9) are reported but do not
//! fail it: an LLM endpoint or Telegram that is down for its own reasons must not roll back a good
//! upgrade — the false rollbacks users of other gateways report. The pure part ([`why_not_healthy`]) is
//! unit-tested with facts made up in the tests.

use std::time::{Duration, Instant};

use herald_home::atomic::RecordRead;
use herald_process::control::{self, Request};

use crate::deep::{self, DeepFacts, Ping};
use crate::target::Target;

/// Probes that decide the gate (the others are only reported).
const GATING_PROBES: std::ops::RangeInclusive<u8> = 1..=8;
/// How long one check turn may take.
const CHECK_TURN_TIMEOUT: Duration = Duration::from_secs(10);

/// What passed the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthy {
    pub pid: u32,
    /// How long the gate took.
    pub after: Duration,
    /// Non-gating probes that did not pass (agent, adapters, service), for the report.
    pub warnings: Vec<String>,
}

/// Why the facts do not show a healthy gateway of `version`; `None` when they do.
pub fn why_not_healthy(facts: &DeepFacts, checks: &[deep::Check], version: &str) -> Option<String> {
    if facts.lock_held != Ok(true) {
        return Some("no gateway holds the home".into());
    }
    match &facts.pid_record {
        RecordRead::Present(record) if record.herald_version != version => {
            return Some(format!(
                "pid {} runs herald {}, not {version}",
                record.pid, record.herald_version
            ));
        }
        RecordRead::Present(_) => {}
        RecordRead::Missing => return Some("no PID record".into()),
        RecordRead::Invalid { reason } => return Some(reason.clone()),
    }
    if let Ping::Failed(why) = &facts.ping {
        return Some(format!("its control channel does not answer: {why}"));
    }
    checks
        .iter()
        .find(|c| GATING_PROBES.contains(&c.id) && !c.ok)
        .map(|c| format!("probe {} ({}) failed: {}", c.id, c.name, c.detail))
}

/// Non-gating probes that failed, as report lines.
fn warnings(checks: &[deep::Check]) -> Vec<String> {
    checks
        .iter()
        .filter(|c| !GATING_PROBES.contains(&c.id) && !c.ok)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect()
}

/// Looks until the gateway of `version` is healthy and one check turn went through, or `budget` is
/// spent: then the last reason it was not.
pub fn wait_healthy(target: &Target, version: &str, budget: Duration) -> Result<Healthy, String> {
    let began = Instant::now();
    let deadline = began + budget;
    loop {
        let last: String;
        let facts = DeepFacts::gather(target);
        let checks = deep::probes(&facts);
        match why_not_healthy(&facts, &checks, version) {
            Some(why) => last = why,
            None => {
                let remaining = deadline.saturating_duration_since(Instant::now());
                let timeout = remaining.clamp(Duration::from_millis(500), CHECK_TURN_TIMEOUT);
                match control::call(target.home(), Request::CheckTurn, timeout) {
                    Ok(reply) if reply.ok => {
                        // The gateway's pid as `status` gives it (the monitor, when supervised).
                        let pid = facts.pid_record.as_present().map_or(reply.pid, |r| r.pid);
                        return Ok(Healthy {
                            pid,
                            after: began.elapsed(),
                            warnings: warnings(&checks),
                        });
                    }
                    Ok(reply) => {
                        last = reply.error.unwrap_or_else(|| "the check turn was refused".into());
                    }
                    Err(e) => last = format!("the check turn got no answer: {e}"),
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "not healthy after {}s: {last}",
                budget.as_secs_f64().round()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
