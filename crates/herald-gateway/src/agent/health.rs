//! What the gateway knows about its agent's health: a [`HealthState`] on the [`HealthBoard`] (so
//! `status`, `status --deep`, `/readyz` and outage notices read the agent like any adapter), with the
//! reason, the last turn in and answer out, and the last error.
//!
//! Two sources: the outcome of every real turn, and a probe ([`Agent::probe`]: the program resolves, the
//! endpoint answers and accepts the key). Turns weigh most: an answer proves the agent works; an error that
//! retrying will not fix ([`AgentError::Misconfigured`]) or an unreachable agent
//! ([`AgentError::Unavailable`]) proves it does not, at once; timeouts and bad answers count only when
//! [`DEGRADED_AFTER`] of them come in a row (one bad answer says little about the next turn). A probe runs
//! at start, when someone asks and the last word is older than [`REFRESH_AFTER`], and — with a growing
//! pause, [`RECHECK`] — while the agent is failing, so a recovery is seen without waiting for a user's turn.
//! A passing probe clears a failure only when it checks what failed (the agent could not be reached); an
//! agent that answers its probe but fails its turns stays `degraded` until a turn succeeds.
//!
//! **Invariant:** reading the health never waits for the agent. [`AgentHealth::report`] returns what is
//! known at once and, when that is stale, starts one probe in the background (never two at a time), so
//! `status --deep` stays fast on a healthy gateway and still learns of an agent that broke. A healthy
//! agent costs no timer: the recheck loop sleeps on the board until the agent fails.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_home::records::HealthState;
use herald_home::sync::MutexExt;
use herald_home::time::now_ms;

use super::{Agent, AgentError, Answer, BoxFuture, TurnRequest};
use crate::backoff::{Backoff, Jitter};
use crate::health::{HealthBoard, HealthHandle};

/// How old the last word may be before a report starts a new probe.
pub const REFRESH_AFTER: Duration = Duration::from_secs(60);
/// Timeouts or bad answers in a row that make the agent `degraded`.
pub const DEGRADED_AFTER: u32 = 2;
/// How often a failing agent is probed: 5 s, 10 s, 20 s … up to 5 min.
pub const RECHECK: Backoff = Backoff {
    base: Duration::from_secs(5),
    max: Duration::from_secs(300),
    jitter: Jitter::Tenth,
};

/// The last word about the agent, as the control channel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing known yet (the first probe is running).
    Unknown,
    /// It answered a turn, or its probe passed.
    Ready,
    /// It is degraded or misconfigured.
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

    fn of(state: HealthState) -> Verdict {
        match state {
            HealthState::Starting | HealthState::Stopped => Verdict::Unknown,
            HealthState::Connected => Verdict::Ready,
            _ => Verdict::Failing,
        }
    }
}

/// What a report says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    pub verdict: Verdict,
    /// The state on the board (`degraded`...).
    pub state: HealthState,
    /// What was checked, or what is wrong.
    pub detail: String,
    /// When the last word was had (ms since the epoch; 0: never).
    pub at_ms: u64,
}

/// What put the agent in its unhealthy state, which decides what a passing probe proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Could not be reached or started: a passing probe proves it can be again.
    Unreachable,
    /// Reached, but the answer was late or unusable: only a turn proves it works.
    Answer,
    Misconfigured,
}

/// One piece of evidence about the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    Turn(Result<(), AgentError>),
    Probe(Result<String, AgentError>),
}

/// The judge's memory between two pieces of evidence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// Failed turns since the last answered one.
    pub failures_in_a_row: u32,
    /// Why the agent is unhealthy now (none while it is healthy: an error below the threshold does not
    /// count).
    cause: Option<Failure>,
}

/// What a piece of evidence changes: a new state and reason, or only the last error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    State(HealthState, String),
    ErrorOnly(String),
    Nothing,
}

/// The pure rule (see the module docs).
pub fn judge(record: &mut Record, evidence: &Evidence) -> Judgement {
    match evidence {
        Evidence::Turn(Ok(())) => {
            *record = Record::default();
            Judgement::State(HealthState::Connected, "answered a turn".to_owned())
        }
        Evidence::Turn(Err(e)) => {
            record.failures_in_a_row = record.failures_in_a_row.saturating_add(1);
            match e {
                AgentError::Misconfigured(_) => {
                    record.cause = Some(Failure::Misconfigured);
                    Judgement::State(HealthState::Misconfigured, e.to_string())
                }
                AgentError::Unavailable(_) => {
                    record.cause = Some(Failure::Unreachable);
                    Judgement::State(HealthState::Degraded, e.to_string())
                }
                AgentError::Timeout(_) | AgentError::Failed(_) => {
                    if record.failures_in_a_row >= DEGRADED_AFTER {
                        record.cause = Some(Failure::Answer);
                        Judgement::State(
                            HealthState::Degraded,
                            format!(
                                "{} turns in a row failed; the last: {e}",
                                record.failures_in_a_row
                            ),
                        )
                    } else {
                        Judgement::ErrorOnly(e.to_string())
                    }
                }
            }
        }
        Evidence::Probe(Ok(checked)) => match record.cause {
            None | Some(Failure::Unreachable | Failure::Misconfigured) => {
                *record = Record::default();
                Judgement::State(HealthState::Connected, checked.clone())
            }
            // The endpoint answers, but its turns failed: only a turn can clear that.
            Some(Failure::Answer) => Judgement::Nothing,
        },
        Evidence::Probe(Err(e @ AgentError::Misconfigured(_))) => {
            record.cause = Some(Failure::Misconfigured);
            Judgement::State(HealthState::Misconfigured, e.to_string())
        }
        Evidence::Probe(Err(e)) => {
            record.cause = Some(Failure::Unreachable);
            Judgement::State(HealthState::Degraded, e.to_string())
        }
    }
}

#[derive(Debug, Default)]
struct Memory {
    record: Record,
    probing: bool,
    /// When the last word was had (0: never).
    at_ms: u64,
}

/// The shared health of the hosted agent.
#[derive(Debug, Clone)]
pub struct AgentHealth {
    handle: HealthHandle,
    memory: Arc<Mutex<Memory>>,
}

impl AgentHealth {
    /// The agent's entry on `board`, named after its backend.
    pub fn new(board: &HealthBoard, backend: &str) -> AgentHealth {
        AgentHealth {
            handle: board.agent(backend),
            memory: Arc::default(),
        }
    }

    /// Another backend took over (a reload): its health starts over.
    pub fn renamed(&self, backend: &str) {
        self.handle.rename(backend);
        *self.memory.lock_unpoisoned() = Memory::default();
    }

    fn take(&self, evidence: &Evidence) {
        let judgement = {
            let mut memory = self.memory.lock_unpoisoned();
            memory.at_ms = now_ms();
            judge(&mut memory.record, evidence)
        };
        match judgement {
            Judgement::State(state, why) => self.handle.set(state, Some(why)),
            Judgement::ErrorOnly(why) => self.handle.error(why),
            Judgement::Nothing => {}
        }
    }

    /// A turn was handed to the agent.
    pub fn turn_started(&self) {
        self.handle.inbound();
    }

    /// Notes the outcome of a real turn.
    pub fn note_turn(&self, outcome: &Result<Answer, AgentError>) {
        if outcome.is_ok() {
            self.handle.outbound();
        }
        self.take(&Evidence::Turn(outcome.as_ref().map(drop).map_err(Clone::clone)));
    }

    /// Runs one probe now (unless one is running) and records what it found.
    pub async fn probe(&self, agent: &dyn Agent) {
        {
            let mut memory = self.memory.lock_unpoisoned();
            if memory.probing {
                return;
            }
            memory.probing = true;
        }
        let outcome = agent.probe().await;
        self.memory.lock_unpoisoned().probing = false;
        self.take(&Evidence::Probe(outcome));
    }

    /// What is known now, and whether it is stale (older than [`REFRESH_AFTER`] or never checked, with
    /// no probe running): the caller then starts [`Self::probe`] in the background.
    pub fn report(&self) -> (HealthReport, bool) {
        let (at_ms, probing) = {
            let memory = self.memory.lock_unpoisoned();
            (memory.at_ms, memory.probing)
        };
        let record = self.handle.record();
        let state = record.as_ref().map_or(HealthState::Starting, |r| r.state);
        let detail = record
            .and_then(|r| r.message.or(r.last_error))
            .unwrap_or_else(|| "not checked yet".to_owned());
        let age = now_ms().saturating_sub(at_ms);
        let stale = !probing && (at_ms == 0 || age > REFRESH_AFTER.as_millis() as u64);
        (
            HealthReport {
                verdict: Verdict::of(state),
                state,
                detail,
                at_ms,
            },
            stale,
        )
    }

    /// While the agent fails, probes it with a growing pause ([`RECHECK`]) so a recovery is seen without a
    /// user's turn; while it is healthy, sleeps on the board. Runs until the board is dropped.
    pub async fn recheck_while_failing(self, agent: Arc<Watched>, board: HealthBoard) {
        let mut changes = board.subscribe();
        let mut pauses = RECHECK.retries();
        loop {
            let failing = self.handle.state().is_some_and(|s| !s.is_healthy());
            if failing {
                tokio::time::sleep(pauses.next_delay()).await;
                if self.handle.state().is_some_and(|s| !s.is_healthy()) {
                    self.probe(agent.as_ref()).await;
                }
            } else {
                pauses.reset();
                if changes.changed().await.is_err() {
                    return;
                }
            }
        }
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
    fn reply<'a>(&'a self, request: &'a TurnRequest) -> BoxFuture<'a, Result<Answer, AgentError>> {
        let agent = self.current();
        Box::pin(async move {
            self.health.turn_started();
            let outcome = agent.reply(request).await;
            self.health.note_turn(&outcome);
            outcome
        })
    }
    fn streams(&self) -> bool {
        self.current().streams()
    }
    fn reply_drafting<'a>(
        &'a self,
        request: &'a TurnRequest,
        draft: &'a super::Draft,
    ) -> BoxFuture<'a, Result<Answer, AgentError>> {
        let agent = self.current();
        Box::pin(async move {
            self.health.turn_started();
            let outcome = agent.reply_drafting(request, draft).await;
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
        fn reply<'a>(&'a self, _: &'a TurnRequest) -> BoxFuture<'a, Result<Answer, AgentError>> {
            Box::pin(async { self.0.clone().map(Answer::from) })
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
            attachments: Vec::new(),
        }
    }

    fn state(j: &Judgement) -> Option<HealthState> {
        match j {
            Judgement::State(s, _) => Some(*s),
            _ => None,
        }
    }

    #[test]
    fn the_judge_weighs_turns_and_probes() {
        let mut r = Record::default();
        let failed = || Evidence::Turn(Err(AgentError::Failed("HTTP 500".into())));
        // One bad answer is noise; two in a row are a degraded agent.
        assert!(matches!(judge(&mut r, &failed()), Judgement::ErrorOnly(_)));
        let second = judge(&mut r, &failed());
        assert_eq!(state(&second), Some(HealthState::Degraded));
        assert!(matches!(&second, Judgement::State(_, why) if why.contains("2 turns in a row")));
        // Its probe passing (the endpoint is up) does not clear failing answers; a turn does.
        assert_eq!(
            judge(&mut r, &Evidence::Probe(Ok("models".into()))),
            Judgement::Nothing
        );
        assert_eq!(
            state(&judge(&mut r, &Evidence::Turn(Ok(())))),
            Some(HealthState::Connected)
        );
        // Unreachable: degraded at once, and a passing probe proves it is back.
        let down = Evidence::Turn(Err(AgentError::Unavailable("refused".into())));
        assert_eq!(state(&judge(&mut r, &down)), Some(HealthState::Degraded));
        assert_eq!(
            state(&judge(&mut r, &Evidence::Probe(Ok("models".into())))),
            Some(HealthState::Connected)
        );
        assert_eq!(r, Record::default());
        // Misconfigured is its own state, from a turn or a probe.
        let bad = Evidence::Probe(Err(AgentError::Misconfigured("401".into())));
        assert_eq!(state(&judge(&mut r, &bad)), Some(HealthState::Misconfigured));
        let timeout = Evidence::Turn(Err(AgentError::Timeout(Duration::from_secs(1))));
        assert!(matches!(judge(&mut r, &timeout), Judgement::ErrorOnly(_)));
        // One bad answer while misconfigured does not change what a passing probe proves: it is fixed.
        assert_eq!(
            state(&judge(&mut r, &Evidence::Probe(Ok("models".into())))),
            Some(HealthState::Connected)
        );
    }

    #[tokio::test]
    async fn turns_and_probes_reach_the_board() {
        let board = HealthBoard::new();
        let health = AgentHealth::new(&board, "scripted");
        let (report, stale) = health.report();
        assert_eq!(report.verdict, Verdict::Unknown);
        assert!(stale, "never checked: a report asks for a probe");

        let broken: Arc<dyn Agent> = Arc::new(Scripted(Err(AgentError::Misconfigured("no program".into()))));
        health.probe(broken.as_ref()).await;
        let (report, stale) = health.report();
        assert_eq!(report.verdict, Verdict::Failing);
        assert_eq!(report.state, HealthState::Misconfigured);
        assert!(report.detail.contains("no program"), "{report:?}");
        assert!(!stale);

        let working: Arc<dyn Agent> = Arc::new(Scripted(Ok("fine".into())));
        let watched = Watched::new(working, health.clone());
        assert_eq!(watched.reply(&request()).await.unwrap().text, "fine");
        assert_eq!(health.report().0.verdict, Verdict::Ready);
        let record = board.agent_record().unwrap();
        assert!(record.last_inbound_ms.is_some() && record.last_outbound_ms.is_some());
        assert_eq!(
            record.last_error.as_deref().map(|e| e.contains("no program")),
            Some(true)
        );

        // A replacement serves the next turn.
        watched.replace(Arc::new(Scripted(Ok("new".into()))));
        assert_eq!(watched.reply(&request()).await.unwrap().text, "new");

        health.note_turn(&Err(AgentError::Unavailable("refused".into())));
        assert_eq!(health.report().0.verdict, Verdict::Failing);
        assert_eq!(board.agent_record().unwrap().state, HealthState::Degraded);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_agent_is_probed_until_it_is_back() {
        let board = HealthBoard::new();
        let health = AgentHealth::new(&board, "scripted");
        let agent = Arc::new(Watched::new(
            Arc::new(Scripted(Err(AgentError::Unavailable("refused".into())))),
            health.clone(),
        ));
        tokio::spawn(health.clone().recheck_while_failing(agent.clone(), board.clone()));
        health.note_turn(&Err(AgentError::Unavailable("refused".into())));
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(board.agent_record().unwrap().state, HealthState::Degraded);
        agent.replace(Arc::new(Scripted(Ok("back".into()))));
        // The next recheck (within 5 min at most) sees it back.
        tokio::time::sleep(Duration::from_secs(330)).await;
        assert_eq!(board.agent_record().unwrap().state, HealthState::Connected);
    }
}
