//! The OpenAI-compatible agent backend: answers a turn with `POST {base_url}/chat/completions`, streamed
//! (server-sent events) or not, against OpenAI or any server that speaks its API (llama.cpp, Ollama,
//! vLLM, LM Studio, a proxy). `base_url` may be given as the API base (`https://host/v1`), the bare
//! server (`https://host`, to which `/v1` is added) or the full endpoint (`…/chat/completions`, used as
//! it is); see [`endpoint`].
//!
//! **Invariant:** a turn ends within its budget, and the API key never leaves the `Authorization`
//! header. Every attempt, every wait between attempts and every byte read runs under one deadline,
//! `timeout_secs` from the start of the turn, and a retry whose wait would cross that deadline is not
//! made; so [`Agent::reply`] returns (an answer or an [`AgentError`]) in time however the server
//! behaves: refusing connections, answering 429 with a long `Retry-After`, or streaming forever. The
//! key is only ever held in a redacting wrapper and a header value marked sensitive, and any server
//! text that is passed on (error messages) has it masked, because those texts end up in logs and in
//! replies to users. Every error about the HTTP exchange names the URL it called (without any user
//! name or password it carried), so a wrong `base_url` shows itself in the log.
//!
//! Why: the router keeps a turn open until its agent returns, and a planned stop drains open turns,
//! so an agent that can hang can hold up a stop; and a key in a log or chat is a leaked key.
//!
//! The parts that decide without I/O have their own modules and tests: [`sse`] (the event-stream
//! parser), [`retry_after`] (what a server asks us to wait) and [`wire`] (request and answer JSON,
//! error messages). What we wait otherwise is the gateway's one [`backoff`] schedule
//! ([`backoff::Backoff::DEFAULT`]), re-exported here. This crate prints nothing; it logs with `tracing`.

pub use herald_gateway::backoff;
mod media;
mod probe;
pub mod retry_after;
pub mod sse;
mod transcribe;
pub mod wire;

use std::fmt;
use std::time::{Duration, SystemTime};

use herald_gateway::agent::{Agent, AgentError, Answer, BoxFuture, Draft, TurnRequest};
use herald_home::config::OpenAiConfig;
use herald_home::secrets::{Lookup, Variables};
use reqwest::header::{self, HeaderValue};
use reqwest::{StatusCode, Url};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::sse::{SseEvent, SseParser};
use crate::wire::{ChatMessage, ChatRequest, Content, Delta, ImageUrl, Part, WireError};

/// The most bytes read from one answer (the whole body, or the whole stream). A chat answer is far
/// smaller; this only bounds memory against a broken or hostile server.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// The most bytes of an error body read for its message.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// How long one connection attempt may take before it counts as a failed attempt (and may be retried).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an [`OpenAiAgent`] could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum OpenAiError {
    #[error("agent.openai.base_url {url:?} is not a usable http(s) URL: {reason}")]
    InvalidBaseUrl { url: String, reason: String },
    #[error("agent.openai.model is empty")]
    EmptyModel,
    /// The variable is set but its value cannot be sent (not Unicode, or characters a header cannot
    /// carry). The value is never part of the message.
    #[error("the API key in variable {env} is not usable: {reason}")]
    InvalidApiKey { env: String, reason: &'static str },
    /// The variable `api_key_env` names has no value in the environment or the secrets store.
    #[error(
        "no API key: the variable {env} (named by [agent.openai] api_key_env) is neither set in the \
         gateway's environment nor in the secrets store; run `herald secret set {env}` (a service-managed \
         gateway sees no shell variables), or set api_key_env = \"\" for a server that needs no key"
    )]
    MissingApiKey { env: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// An API key. Its `Debug` shows only whether it is set.
#[derive(Clone)]
struct ApiKey(String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// The `openai` agent backend. Cheap to share: one instance serves every turn, and its HTTP client
/// keeps connections alive between turns.
#[derive(Debug)]
pub struct OpenAiAgent {
    client: reqwest::Client,
    endpoint: Url,
    /// The endpoint as errors show it: without user name or password.
    shown_endpoint: String,
    model: String,
    api_key: Option<ApiKey>,
    /// `Bearer <key>`, marked sensitive.
    authorization: Option<HeaderValue>,
    /// The variable the key came from (named in errors; never the key).
    api_key_env: String,
    system_prompt: Option<String>,
    stream: bool,
    budget: Duration,
    max_retries: u32,
    history_messages: usize,
    backoff: Backoff,
    /// `[agent.openai] transcribe_model`: voice and audio are transcribed first.
    transcribe_model: Option<String>,
    /// Where (beside the chat endpoint), and as errors show it.
    transcribe_url: Url,
    shown_transcribe_url: String,
}

impl OpenAiAgent {
    /// Builds the backend with the key `config.api_key_env` names, looked up in `variables` (the
    /// environment, then the secrets store). An empty `api_key_env` sends no key (a local server that
    /// needs none); a named variable that has no value is an error, never an anonymous request.
    pub fn new(config: &OpenAiConfig, variables: &Variables) -> Result<OpenAiAgent, OpenAiError> {
        let var = config.api_key_env.trim();
        let key = if var.is_empty() {
            None
        } else {
            match variables.lookup(var) {
                Lookup::Found { value, .. } => Some(value.expose().to_owned()),
                Lookup::Missing => return Err(OpenAiError::MissingApiKey { env: var.to_owned() }),
                Lookup::NotUnicode => {
                    return Err(OpenAiError::InvalidApiKey {
                        env: var.to_owned(),
                        reason: "it is not valid Unicode",
                    });
                }
            }
        };
        OpenAiAgent::with_api_key(config, key)
    }

    /// Builds the backend with the key given here instead of from the environment (`None` or an empty
    /// key: no `Authorization` header).
    pub fn with_api_key(config: &OpenAiConfig, api_key: Option<String>) -> Result<OpenAiAgent, OpenAiError> {
        let endpoint = endpoint(&config.base_url)?;
        if config.model.trim().is_empty() {
            return Err(OpenAiError::EmptyModel);
        }
        let api_key = api_key
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .map(ApiKey);
        let authorization = match &api_key {
            Some(ApiKey(key)) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                    OpenAiError::InvalidApiKey {
                        env: config.api_key_env.clone(),
                        reason: "it contains characters an HTTP header cannot carry",
                    }
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let client = reqwest::Client::builder()
            .user_agent(format!("herald/{}", herald_home::VERSION))
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(OpenAiError::Client)?;
        let transcribe_url = transcribe::endpoint(&endpoint);
        Ok(OpenAiAgent {
            client,
            shown_transcribe_url: without_credentials(&transcribe_url),
            transcribe_url,
            transcribe_model: config
                .transcribe_model
                .as_deref()
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_owned),
            shown_endpoint: without_credentials(&endpoint),
            endpoint,
            model: config.model.clone(),
            api_key,
            authorization,
            api_key_env: config.api_key_env.trim().to_owned(),
            system_prompt: config.system_prompt.clone().filter(|p| !p.is_empty()),
            stream: config.stream,
            budget: Duration::from_secs(config.timeout_secs),
            max_retries: config.max_retries,
            history_messages: config.history_messages,
            backoff: Backoff::DEFAULT,
        })
    }

    /// Replaces the retry schedule used when a server gives no `Retry-After` (tests use a fast one).
    pub fn with_backoff(mut self, backoff: Backoff) -> OpenAiAgent {
        self.backoff = backoff;
        self
    }

    /// The URL every turn is posted to.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// The messages sent for a turn: the system prompt, the last `history_messages` of the history,
    /// then the user's message.
    /// The conversation as the endpoint takes it. `user_text` is the message (with a line per file that
    /// is not a picture); `images` the pictures that came with it, as `data:` URLs.
    fn messages<'a>(
        &'a self,
        request: &'a TurnRequest,
        user_text: &'a str,
        images: &'a [String],
    ) -> Vec<ChatMessage<'a>> {
        let skip = request.history.len().saturating_sub(self.history_messages);
        let system = self.system_prompt.as_deref().map(|content| ChatMessage {
            role: "system",
            content: Content::Text(content),
        });
        let history = request.history[skip..].iter().map(|m| ChatMessage {
            role: m.role.as_str(),
            content: Content::Text(&m.text),
        });
        let content = if images.is_empty() {
            Content::Text(user_text)
        } else {
            let mut parts = vec![Part::Text { text: user_text }];
            parts.extend(images.iter().map(|url| Part::ImageUrl {
                image_url: ImageUrl { url },
            }));
            Content::Parts(parts)
        };
        let user = ChatMessage {
            role: "user",
            content,
        };
        system
            .into_iter()
            .chain(history)
            .chain(std::iter::once(user))
            .collect()
    }

    async fn answer(&self, request: &TurnRequest, draft: Option<&Draft>) -> Result<String, AgentError> {
        let deadline = Instant::now() + self.budget;
        let transcripts = self.transcripts(request, deadline).await;
        let (user_text, images) = media::prepare(request, &transcripts).await;
        let body = ChatRequest {
            model: &self.model,
            messages: self.messages(request, &user_text, &images),
            stream: self.stream,
        };
        let body = serde_json::to_vec(&body)
            .map_err(|e| AgentError::Failed(format!("cannot encode the request: {e}")))?;
        let result =
            match tokio::time::timeout_at(deadline, self.attempts(request.turn_id, body, deadline, draft))
                .await
            {
                Ok(result) => result,
                Err(_elapsed) => Err(AgentError::Timeout(self.budget)),
            };
        match &result {
            Ok(text) => tracing::debug!(
                turn = request.turn_id,
                chars = text.chars().count(),
                "openai answered"
            ),
            Err(error) => tracing::warn!(
                turn = request.turn_id,
                url = %self.shown_endpoint,
                %error,
                "openai turn failed"
            ),
        }
        result
    }

    /// The text of each voice note or audio file of the message (in the order of its attachments;
    /// `None` for the others, and for all without `transcribe_model`). Transcriptions get at most half
    /// of the turn's time: the answer needs the rest.
    async fn transcripts(
        &self,
        request: &TurnRequest,
        deadline: Instant,
    ) -> Vec<Option<Result<String, String>>> {
        let Some(model) = &self.transcribe_model else {
            return Vec::new();
        };
        let transcriber = transcribe::Transcriber {
            client: &self.client,
            url: &self.transcribe_url,
            shown_url: &self.shown_transcribe_url,
            authorization: self.authorization.as_ref(),
            model,
        };
        let until = Instant::now() + transcribe::share_of(deadline.saturating_duration_since(Instant::now()));
        let mut transcripts = Vec::with_capacity(request.attachments.len());
        for attachment in &request.attachments {
            if !transcribe::is_audio(attachment) {
                transcripts.push(None);
                continue;
            }
            let heard = transcriber
                .transcribe(attachment, until)
                .await
                .map_err(|why| self.redact(&why));
            match &heard {
                Ok(text) => tracing::debug!(
                    turn = request.turn_id,
                    chars = text.chars().count(),
                    "a voice note was transcribed"
                ),
                Err(why) => tracing::warn!(turn = request.turn_id, "cannot transcribe a voice note: {why}"),
            }
            transcripts.push(Some(heard));
        }
        transcripts
    }

    /// Attempts and retries until an answer, a final error, or a wait that would cross `deadline`.
    async fn attempts(
        &self,
        turn: i64,
        body: Vec<u8>,
        deadline: Instant,
        draft: Option<&Draft>,
    ) -> Result<String, AgentError> {
        let mut retry = 0;
        loop {
            let (error, requested) = match self.attempt(&body, draft).await {
                Ok(text) => return Ok(text),
                Err(Attempt::Final(error)) => return Err(error),
                Err(Attempt::Retryable { error, wait }) => (error, wait),
            };
            if retry >= self.max_retries {
                return Err(error);
            }
            let wait = requested.unwrap_or_else(|| self.backoff.delay(retry, backoff::random_jitter()));
            if Instant::now() + wait >= deadline {
                tracing::warn!(turn, %error, ?wait, "not retrying: the wait would outlast the turn's budget");
                return Err(error);
            }
            retry += 1;
            tracing::warn!(turn, %error, ?wait, retry, max_retries = self.max_retries, "retrying");
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(&self, body: &[u8], draft: Option<&Draft>) -> Result<String, Attempt> {
        let accept = if self.stream {
            "text/event-stream"
        } else {
            "application/json"
        };
        let mut post = self
            .client
            .post(self.endpoint.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, accept)
            .body(body.to_vec());
        if let Some(authorization) = &self.authorization {
            post = post.header(header::AUTHORIZATION, authorization.clone());
        }
        let response = post.send().await.map_err(|e| self.send_error(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(self.status_error(response).await);
        }
        let is_sse = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("text/event-stream")
            });
        let result = if is_sse {
            self.read_stream(response, draft).await
        } else {
            self.read_whole(response).await
        };
        result.map_err(Attempt::Final)
    }

    /// A failure before any answer: connection refused, reset, DNS, TLS, a connect timeout. All are
    /// worth a retry.
    fn send_error(&self, error: &reqwest::Error) -> Attempt {
        let url = &self.shown_endpoint;
        let why = self.redact(&root_cause(error));
        if error.is_builder() {
            return Attempt::Final(AgentError::Failed(format!("cannot build the request: {why}")));
        }
        let what = if error.is_connect() {
            "cannot connect to"
        } else if error.is_timeout() {
            "no answer in time from"
        } else {
            "lost the connection to"
        };
        Attempt::Retryable {
            error: AgentError::Unavailable(format!("{what} {url}: {why}")),
            wait: None,
        }
    }

    /// A non-success status: 429 and 5xx may be retried, the rest are final.
    async fn status_error(&self, mut response: reqwest::Response) -> Attempt {
        let status = response.status();
        let headers = response.headers();
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let wait =
            retry_after::requested_wait(text("retry-after-ms"), text("retry-after"), SystemTime::now());
        let mut body = Vec::new();
        while body.len() < MAX_ERROR_BODY_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        body.truncate(MAX_ERROR_BODY_BYTES);
        let mut message = format!("HTTP {}", status.as_u16());
        if let Some(reason) = status.canonical_reason() {
            message = format!("{message} {reason}");
        }
        message = format!("{message} from {}", self.shown_endpoint);
        if let Some(detail) = wire::error_message(&body) {
            message = format!("{message}: {}", self.redact(&detail));
        }
        if status == StatusCode::NOT_FOUND {
            message = format!("{message} ({})", not_found_hint(&self.endpoint));
        }
        // A refused key is the operator's to fix, not a bad answer: the agent shows `misconfigured`.
        let error = if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            AgentError::Misconfigured(message)
        } else {
            AgentError::Failed(message)
        };
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Attempt::Retryable { error, wait }
        } else {
            Attempt::Final(error)
        }
    }

    async fn read_whole(&self, mut response: reqwest::Response) -> Result<String, AgentError> {
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.cut_off(&e))? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let (text, finish_reason) = wire::parse_completion(&body).map_err(|e| self.wire_error(e))?;
        non_empty(text, finish_reason.as_deref())
    }

    /// Reads a streamed answer, growing `draft` (if any) with the text so far after each chunk.
    async fn read_stream(
        &self,
        mut response: reqwest::Response,
        draft: Option<&Draft>,
    ) -> Result<String, AgentError> {
        let mut parser = SseParser::new();
        let mut answer = StreamAnswer::default();
        let mut read = 0usize;
        while let Some(chunk) = response.chunk().await.map_err(|e| self.cut_off(&e))? {
            read += chunk.len();
            if read > MAX_ANSWER_BYTES {
                return Err(too_large());
            }
            for event in parser.push(&chunk) {
                answer.take(event).map_err(|e| self.wire_error(e))?;
                if answer.done {
                    return non_empty(answer.text, answer.finish_reason.as_deref());
                }
            }
            if let Some(draft) = draft {
                draft.grow(&answer.text);
            }
        }
        if let Some(event) = parser.finish() {
            answer.take(event).map_err(|e| self.wire_error(e))?;
        }
        if !answer.done && answer.finish_reason.is_none() {
            return Err(AgentError::Failed(
                "the stream ended before the answer was complete".into(),
            ));
        }
        non_empty(answer.text, answer.finish_reason.as_deref())
    }

    fn cut_off(&self, error: &reqwest::Error) -> AgentError {
        AgentError::Failed(format!(
            "the answer from {} was cut off: {}",
            self.shown_endpoint,
            self.redact(&root_cause(error))
        ))
    }

    fn wire_error(&self, error: WireError) -> AgentError {
        AgentError::Failed(self.redact(&error.to_string()))
    }

    /// Masks the API key in text that came from elsewhere (a server's message, an error chain).
    fn redact(&self, text: &str) -> String {
        match &self.api_key {
            Some(ApiKey(key)) if text.contains(key.as_str()) => text.replace(key.as_str(), "<redacted>"),
            _ => text.to_owned(),
        }
    }
}

impl Agent for OpenAiAgent {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn wants_history(&self) -> bool {
        self.history_messages > 0
    }

    fn history_limit(&self) -> usize {
        self.history_messages
    }

    fn reply<'a>(&'a self, request: &'a TurnRequest) -> BoxFuture<'a, Result<Answer, AgentError>> {
        Box::pin(async move { self.answer(request, None).await.map(Answer::from) })
    }

    fn streams(&self) -> bool {
        self.stream
    }

    fn reply_drafting<'a>(
        &'a self,
        request: &'a TurnRequest,
        draft: &'a Draft,
    ) -> BoxFuture<'a, Result<Answer, AgentError>> {
        Box::pin(async move { self.answer(request, Some(draft)).await.map(Answer::from) })
    }

    fn probe(&self) -> BoxFuture<'_, Result<String, AgentError>> {
        Box::pin(probe::list_models(
            &self.client,
            &self.endpoint,
            self.authorization.as_ref(),
            &self.api_key_env,
        ))
    }
}

/// How one attempt failed.
enum Attempt {
    /// A 429, a 5xx or a connection failure: worth another attempt, after `wait` if the server said.
    Retryable {
        error: AgentError,
        wait: Option<Duration>,
    },
    Final(AgentError),
}

/// A streamed answer being assembled.
#[derive(Default)]
struct StreamAnswer {
    text: String,
    finish_reason: Option<String>,
    done: bool,
}

impl StreamAnswer {
    fn take(&mut self, event: SseEvent) -> Result<(), WireError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        if data.is_empty() {
            return Ok(());
        }
        let delta = match wire::parse_chunk(data) {
            Ok(delta) => delta,
            // `event: error` with a payload that is not an error object still ends the answer.
            Err(WireError::Malformed(_)) if event.event.as_deref() == Some("error") => {
                return Err(WireError::Server(data.chars().take(300).collect()));
            }
            Err(e) => return Err(e),
        };
        let Delta {
            content,
            finish_reason,
        } = delta;
        if let Some(content) = content {
            self.text.push_str(&content);
        }
        if finish_reason.is_some() {
            self.finish_reason = finish_reason;
        }
        Ok(())
    }
}

fn non_empty(text: String, finish_reason: Option<&str>) -> Result<String, AgentError> {
    if !text.trim().is_empty() {
        return Ok(text);
    }
    Err(AgentError::Failed(match finish_reason {
        Some(reason) => format!("the answer was empty (finish_reason {reason:?})"),
        None => "the answer was empty".into(),
    }))
}

fn too_large() -> AgentError {
    AgentError::Failed(format!(
        "the answer is larger than {} MiB",
        MAX_ANSWER_BYTES / (1024 * 1024)
    ))
}

/// The innermost cause of an error (reqwest's own message only repeats the URL).
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// The URL every turn is posted to, from `base_url` (checked to be http(s), without query or fragment):
///
/// - a full endpoint, ending in `/chat/completions`, is used as it is;
/// - a bare server (`https://host`, no path) gets the usual API base: `https://host/v1/chat/completions`;
/// - any other path is the API base as given (`https://openrouter.ai/api/v1`, `https://host/v1`,
///   `https://api.groq.com/openai/v1`): `/chat/completions` is added to it.
///
/// A trailing `/` never matters. A wrong path shows as a 404, whose error carries [`not_found_hint`].
fn endpoint(base_url: &str) -> Result<Url, OpenAiError> {
    let invalid = |reason: String| OpenAiError::InvalidBaseUrl {
        url: base_url.to_owned(),
        reason,
    };
    let mut url = Url::parse(base_url.trim()).map_err(|e| invalid(e.to_string()))?;
    let path = url.path().trim_end_matches('/').to_owned();
    let path = if path.ends_with("/chat/completions") {
        path
    } else if path.is_empty() {
        "/v1/chat/completions".to_owned()
    } else {
        format!("{path}/chat/completions")
    };
    url.set_path(&path);
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "the scheme is {:?}, not http or https",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it has a query or fragment".into()));
    }
    Ok(url)
}

/// What a 404 from the endpoint most likely means, for its error message.
fn not_found_hint(endpoint: &Url) -> String {
    let base = endpoint.path().trim_end_matches("/chat/completions");
    if base.ends_with("/v1") {
        "the server has no chat completions at this URL: check agent.openai.base_url and that the server \
         speaks the OpenAI API"
            .into()
    } else {
        format!(
            "does agent.openai.base_url need to end in /v1? The API base {base:?} does not; most servers \
             want https://HOST/v1"
        )
    }
}

/// `url` as it may be shown: a user name or password in it (`https://user:secret@host`) is left out.
fn without_credentials(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

#[cfg(test)]
mod tests;
