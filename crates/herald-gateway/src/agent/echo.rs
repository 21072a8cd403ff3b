//! `echo`: the default backend. It needs nothing, answers at once, and makes the whole pipeline
//! (adapter → journal → agent → journal → adapter) testable and measurable without an external agent.

use super::{Agent, AgentError, Answer, BoxFuture, TurnRequest};

/// Replies `echo: <text>`.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoAgent;

impl Agent for EchoAgent {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn reply<'a>(&'a self, request: &'a TurnRequest) -> BoxFuture<'a, Result<Answer, AgentError>> {
        let reply = format!("echo: {}", request.message);
        Box::pin(std::future::ready(Ok(Answer::from(reply))))
    }
}
