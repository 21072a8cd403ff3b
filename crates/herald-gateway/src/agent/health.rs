//! What the gateway knows about its agent's health, for `status --deep` and `herald doctor`.
//!
//! Two sources, the newest wins: the outcome of every real turn (an answer proves the agent works; an
//! error that retrying will not fix — [`AgentError::Misconfigured`], or the agent being unreachable —
//! proves it does not), and a probe ([`Agent::probe`]: the program resolves, the endpoint answers and
//! accepts the key) run at start and again when someone asks and the last word is older than
//! [`REFRESH_AFTER`].
//!
//! **Invariant:** reading the health never waits for the agent. [`AgentHealth::report`] returns what is
//! known at once and, when that is stale, starts one probe in the background (never two at a time), so
//! `status --deep` stays fast on a healthy gateway and still learns of an agent that broke.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_home::sync::MutexExt;
use herald_home::time::now_ms;

use super::{Agent, AgentError, BoxFuture, TurnRequest};

/// How old the last word may be before a report starts a new probe.
pub const REFRESH_AFTER: Duration = Duration::from_secs(60);

/// The last word about the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing known yet (the first probe is running).
    Unknown,
    /// It answered a turn, or its probe passed.
    Ready,
    /// It failed a turn in a way retrying will not fix, or its probe failed.
    Failing,
}

impl Verdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Unknown => "unknown",
            Verdict::Ready => "ready",
            Verdict::Failing => "failing",
        }
    }
}

/// What a report says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    pub verdict: Verdict,
    /// What was checked, or what is wrong.
    pub detail: String,
    /// When the verdict was reached (ms since the epoch; 0: never).
    pub at_ms: u64,
}

#[derive(Debug)]
struct State {
    report: HealthReport,
    probing: bool,
}

/// The shared health of one agent.
#[derive(Debug, Clone)]
pub struct AgentHealth {
    state: Arc<Mutex<State>>,
}

impl Default for AgentHealth {
    fn default() -> Self {
        AgentHealth {
            state: Arc::new(Mutex::new(State {
                report: HealthReport {
                    verdict: Verdict::Unknown,
                    detail: "not checked yet".to_owned(),
                    at_ms: 0,
                },
                probing: false,
            })),
        }
    }
}

impl AgentHealth {
    pub fn new() -> AgentHealth {
        AgentHealth::default()
    }

    fn record(&self, verdict: Verdict, detail: String) {
        let mut state = self.state.lock_unpoisoned();
        state.report = HealthReport {
            verdict,
            detail,
            at_ms: now_ms(),
        };
    }

    /// What the outcome of a real turn says about the agent (`None`: nothing either way).
    pub fn judge_turn(outcome: &Result<String, AgentError>) -> Option<(Verdict, String)> {
        match outcome {
            Ok(_) => Some((Verdict::Ready, "answered a turn".to_owned())),
            Err(e @ (AgentError::Misconfigured(_) | AgentError::Unavailable(_))) => {
                Some((Verdict::Failing, e.to_string()))
            }
            // A timeout or one bad answer says little about the next turn.
            Err(AgentError::Timeout(_) | AgentError::Failed(_)) => None,
        }
    }

    /// Notes the outcome of a real turn.
    pub fn note_turn(&self, outcome: &Result<String, AgentError>) {
        if let Some((verdict, detail)) = AgentHealth::judge_turn(outcome) {
            self.record(verdict, detail);
        }
    }

    /// Runs one probe now (unless one is running) and records what it found.
    pub async fn probe(&self, agent: &dyn Agent) {
        {
            let mut state = self.state.lock_unpoisoned();
            if state.probing {
                return;
            }
            state.probing = true;
        }
        let outcome = agent.probe().await;
        let mut state = self.state.lock_unpoisoned();
        state.probing = false;
        state.report = HealthReport {
            verdict: if outcome.is_ok() {
                Verdict::Ready
            } else {
                Verdict::Failing
            },
            detail: match outcome {
                Ok(checked) => checked,
                Err(e) => e.to_string(),
            },
            at_ms: now_ms(),
        };
    }

    /// What is known now, and whether it is stale (older than [`REFRESH_AFTER`] or never checked, with
    /// no probe running): the caller then starts [`Self::probe`] in the background.
    pub fn report(&self) -> (HealthReport, bool) {
        let state = self.state.lock_unpoisoned();
        let age = now_ms().saturating_sub(state.report.at_ms);
        let stale = !state.probing && (state.report.at_ms == 0 || age > REFRESH_AFTER.as_millis() as u64);
        (state.report.clone(), stale)
    }
}

/// The agent a gateway hosts: every turn's outcome is noted in an [`AgentHealth`], and a reload may
/// [`replace`](Watched::replace) the agent itself. A turn keeps the agent it started with to its end (it
/// holds its own reference), so a replacement never cuts a turn; the next turn gets the new one.
#[derive(Debug)]
pub struct Watched {
    inner: std::sync::RwLock<Arc<dyn Agent>>,
    health: AgentHealth,
}

impl Watched {
    pub fn new(inner: Arc<dyn Agent>, health: AgentHealth) -> Watched {
        Watched {
            inner: std::sync::RwLock::new(inner),
            health,
        }
    }

    /// The agent new turns get.
    pub fn current(&self) -> Arc<dyn Agent> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts `agent` in place for the turns that start from now on.
    pub fn replace(&self, agent: Arc<dyn Agent>) {
        *self.inner.write().unwrap_or_else(|e| e.into_inner()) = agent;
    }
}

impl Agent for Watched {
    fn name(&self) -> &'static str {
        self.current().name()
    }
    fn wants_history(&self) -> bool {
        self.current().wants_history()
    }
    fn history_limit(&self) -> usize {
        self.current().history_limit()
    }
    fn reply<'a>(&'a self, request: &'a TurnRequest) -> BoxFuture<'a, Result<String, AgentError>> {
        let agent = self.current();
        Box::pin(async move {
            let outcome = agent.reply(request).await;
            self.health.note_turn(&outcome);
            outcome
        })
    }
    fn probe(&self) -> BoxFuture<'_, Result<String, AgentError>> {
        let agent = self.current();
        Box::pin(async move { agent.probe().await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Scripted(Result<String, AgentError>);

    impl Agent for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }
        fn reply<'a>(&'a self, _: &'a TurnRequest) -> BoxFuture<'a, Result<String, AgentError>> {
            Box::pin(async { self.0.clone() })
        }
        fn probe(&self) -> BoxFuture<'_, Result<String, AgentError>> {
            Box::pin(async { self.0.clone() })
        }
    }

    fn request() -> TurnRequest {
        TurnRequest {
            adapter: "http".into(),
            chat_id: "c".into(),
            turn_id: 1,
            turn: 1,
            message: "hi".into(),
            history: Vec::new(),
        }
    }

    #[tokio::test]
    async fn turns_and_probes_set_the_verdict() {
        let health = AgentHealth::new();
        let (report, stale) = health.report();
        assert_eq!(report.verdict, Verdict::Unknown);
        assert!(stale, "never checked: a report asks for a probe");

        let broken: Arc<dyn Agent> = Arc::new(Scripted(Err(AgentError::Misconfigured("no program".into()))));
        health.probe(broken.as_ref()).await;
        let (report, stale) = health.report();
        assert_eq!(report.verdict, Verdict::Failing);
        assert!(report.detail.contains("no program"), "{report:?}");
        assert!(!stale);

        let working: Arc<dyn Agent> = Arc::new(Scripted(Ok("fine".into())));
        let watched = Watched::new(working, health.clone());
        assert_eq!(watched.reply(&request()).await.unwrap(), "fine");
        assert_eq!(health.report().0.verdict, Verdict::Ready);

        // A replacement serves the next turn.
        watched.replace(Arc::new(Scripted(Ok("new".into()))));
        assert_eq!(watched.reply(&request()).await.unwrap(), "new");

        // A timeout says nothing about the agent's health.
        health.note_turn(&Err(AgentError::Timeout(Duration::from_secs(1))));
        assert_eq!(health.report().0.verdict, Verdict::Ready);
        health.note_turn(&Err(AgentError::Unavailable("refused".into())));
        assert_eq!(health.report().0.verdict, Verdict::Failing);
    }
}
