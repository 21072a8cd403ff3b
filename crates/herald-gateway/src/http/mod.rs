//! The HTTP adapter: a small JSON API over the turn engine.
//!
//! ```text
//! POST /v1/sessions/{session}/messages   {"text": "...", "id": "optional idempotency key"}  [?wait=false]
//! GET  /v1/sessions/{session}/messages   [?limit=N]      history with statuses
//! POST /v1/sessions/{session}/reset      [{}]            start a new conversation (history is kept)
//! GET  /v1/sessions                      [?limit=N]      sessions, most recent first
//! GET  /v1/files/{turn}/{name}                           a file an agent's answer sent (its `url`)
//! POST /v1/webhooks/{name}  [?wait=true]                 a signed message from an integration
//! GET  /healthz                          200 while the process serves
//! GET  /readyz                           200 when taking turns; 503 while starting or draining
//! ```
//!
//! `/readyz` fails only for what makes the gateway useless to every client: starting, draining, a store
//! that cannot take writes, and an agent that cannot answer anything until someone fixes its setup
//! (`misconfigured`, `bad_credentials` on the health board). A `degraded` agent (it may recover by itself)
//! or a chat adapter in trouble (Telegram down leaves this API working) does not fail it: those are for
//! `herald status` and the outage notices.
//!
//! A reply that came with files (see `agent::outfiles`) lists them: `"reply": {"text": "...", "files":
//! [{"name": "chart.png", "mime": "image/png", "size": 1234, "kind": "photo", "url":
//! "/v1/files/17/chart.png"}]}`; the `url` serves the file (as an attachment, `nosniff`), under the same
//! guards as the rest of `/v1`, and only from a turn's folder of outgoing files.
//!
//! **Invariant:** every response but a file's bytes, error or not, is JSON with a stable shape, and a client mistake is
//! always a 4xx — never a 500, never a crash. A 200 or 202 to a POST means the message is durably
//! stored; anything else means it may not be (and a retry with the same `id` is always safe).
//!
//! Every `/v1` request first passes [`browser::judge`] (no cross-site page and no DNS-rebinding page may
//! use the API: `Host`, `Origin`, `Sec-Fetch-Site`, and JSON on writes). When a token is configured, it
//! must then carry `Authorization: Bearer <token>`; the comparison takes the same time wherever the
//! strings differ. `/healthz` and `/readyz` stay open: they reveal nothing and service managers probe
//! them.

pub mod browser;
mod listener;
mod parse_errors;
mod webhook;

pub use listener::HttpLimits;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::health::HealthBoard;
use herald_home::records::HealthState;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::agent::outfiles::OutFiles;
use crate::commands;
use crate::engine::{Engine, SubmitError, TurnOutcome};
use crate::journal::{HistoryQuery, JournalError, JournalErrorKind, Reply, SessionKey};
use crate::webhook::Webhooks;
use browser::BrowserPolicy;

/// The adapter name sessions of this API are stored under.
pub const ADAPTER: &str = "http";

/// Seconds a client is told to wait before retrying while the gateway drains or restarts.
const RETRY_AFTER_SECS: u64 = 5;
const MAX_ID_LEN: usize = 200;
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
/// The most message text one history response carries; older messages are a `next_before` page away.
/// (With 1,000 messages of 64 KiB a session is 64 MB: reading it whole per request is how a few slow
/// readers take a gigabyte.)
const HISTORY_PAGE_BYTES: usize = 1024 * 1024;

/// What the adapter needs to run.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub listen: SocketAddr,
    /// Required on every `/v1` request when set.
    pub token: Option<String>,
    pub max_body_bytes: usize,
    /// Which hosts and origins browsers may use (see [`browser`]).
    pub browser: BrowserPolicy,
    /// Connections, header/idle and body time (see [`HttpLimits`]).
    pub limits: HttpLimits,
    /// Where the agent's health is read for `/readyz`.
    pub health: HealthBoard,
    /// The folders of the files agents send (`None`: no reply has files to serve).
    pub files: Option<OutFiles>,
    /// The integrations that may post to `/v1/webhooks/{name}`.
    pub webhooks: Arc<Webhooks>,
}

/// Why the adapter could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// An in-chat command posted as a message (see [`commands`]): answered at once, never by the agent. The
/// local API's caller is the gateway's owner (a token guards it beyond loopback), so an admin.
async fn run_command(
    state: &AppState,
    session: SessionKey,
    id: Option<String>,
    command: &commands::Command,
) -> Response {
    let id = id.unwrap_or_else(|| state.engine.new_message_id());
    let caller = commands::Caller {
        kind: "a local API client",
        user: None,
        name: None,
        level: herald_home::access::AccessLevel::Admin,
        why: "the local API answers only its owner".to_owned(),
        shared_chat: false,
    };
    let desk = commands::CommandDesk::new(state.engine.clone(), state.health.clone());
    match desk.run(&session, &id, &caller, command).await {
        Ok(text) => (
            StatusCode::OK,
            axum::Json(json!({
                "id": id,
                "status": "done",
                "command": command.name(),
                "reply": {"text": text},
            })),
        )
            .into_response(),
        Err(e) => journal_failure(&e),
    }
}

/// A bound, serving adapter.
#[derive(Debug)]
pub struct HttpServer {
    /// The URL clients use (an unspecified listen address is reported as loopback).
    pub url: String,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    /// Binds and starts serving in the background.
    pub async fn start(engine: Arc<Engine>, options: HttpOptions) -> Result<HttpServer, BindError> {
        let listener = TcpListener::bind(options.listen)
            .await
            .map_err(|source| BindError {
                addr: options.listen,
                source,
            })?;
        let bound = listener.local_addr().map_err(|source| BindError {
            addr: options.listen,
            source,
        })?;
        let url = format!("http://{}", reachable(bound));
        let (shutdown, stop) = watch::channel(false);
        let app = router(engine, &options);
        let task = tokio::spawn(listener::serve(listener, app, options.limits, stop));
        Ok(HttpServer { url, shutdown, task })
    }

    /// Stops accepting, lets responses in progress finish for up to `grace`, then drops the rest.
    pub async fn shutdown(self, grace: Duration) {
        self.shutdown.send_replace(true);
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// The address a local client should use to reach a listener bound to `addr`.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) if v4.ip().is_unspecified() => {
            SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, v4.port()))
        }
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, v6.port()))
        }
        other => other,
    }
}

#[derive(Debug)]
struct AppState {
    engine: Arc<Engine>,
    token: Option<String>,
    browser: BrowserPolicy,
    /// `[http] max_body_bytes`, named in a 413.
    max_body_bytes: usize,
    health: HealthBoard,
    files: Option<OutFiles>,
    webhooks: Arc<Webhooks>,
}

/// The API as an axum router (public for in-process tests and benchmarks).
pub fn router(engine: Arc<Engine>, options: &HttpOptions) -> Router {
    let state = Arc::new(AppState {
        engine,
        token: options.token.clone(),
        browser: options.browser.clone(),
        max_body_bytes: options.max_body_bytes,
        health: options.health.clone(),
        files: options.files.clone(),
        webhooks: options.webhooks.clone(),
    });
    // Layers run outside in: the browser guard, then the token.
    let v1 = Router::new()
        .route("/v1/sessions", get(list_sessions))
        .route("/v1/sessions/{session}/messages", get(history).post(post_message))
        .route("/v1/sessions/{session}/reset", post(reset_session))
        .route("/v1/files/{turn}/{*name}", get(sent_file))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .route_layer(middleware::from_fn_with_state(state.clone(), refuse_browsers));
    // A webhook's signature is its authentication: the token is not asked of it.
    let hooks = Router::new()
        .route("/v1/webhooks/{name}", post(webhook::receive))
        .route_layer(middleware::from_fn_with_state(state.clone(), refuse_browsers));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(v1)
        .merge(hooks)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .with_state(state)
}

/// A JSON error: `{"error": code, "message": text}` plus any extra fields.
fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"error": code, "message": message.into()})),
    )
        .into_response()
}

fn with_retry_after(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    response
}

async fn not_found(method: Method, uri: axum::http::Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

async fn healthz() -> Response {
    (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response()
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let engine = &state.engine;
    let agent = state.health.agent_record().map(|r| r.state);
    let unusable = agent.filter(|s| matches!(s, HealthState::Misconfigured | HealthState::BadCredentials));
    if engine.is_ready() && unusable.is_none() {
        (StatusCode::OK, axum::Json(json!({"status": "ready"}))).into_response()
    } else if let (true, Some(agent)) = (engine.is_ready(), unusable) {
        // No Retry-After: this does not pass by itself.
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "agent_unusable", "agent": agent.as_str()})),
        )
            .into_response()
    } else {
        let why = if engine.turns().is_draining() {
            "draining"
        } else if !engine.is_storing() {
            "storage_unavailable"
        } else {
            "starting"
        };
        with_retry_after(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"status": why})),
            )
                .into_response(),
        )
    }
}

async fn refuse_browsers(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    match browser::judge(&state.browser, request.method(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => error(refusal.status, refusal.code, refusal.message),
    }
}

async fn require_token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    if let Some(expected) = &state.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !given.is_some_and(|given| constant_time_eq(given.as_bytes(), expected.as_bytes())) {
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this gateway needs `Authorization: Bearer <token>` (see [http] token in herald.toml)",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    next.run(request).await
}

/// Compares without stopping at the first difference, so timing reveals only the length.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The session path segment, or a JSON `400` when it does not decode (`%FF` is not UTF-8) or is not a
/// session id.
fn session_id(session: Result<Path<String>, PathRejection>) -> Result<String, Box<Response>> {
    let Path(session) = session.map_err(|rejection| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalid_session",
            format!(
                "the session id in the path is not valid: {}",
                rejection.body_text()
            ),
        ))
    })?;
    match invalid_session(&session) {
        Some(response) => Err(Box::new(response)),
        None => Ok(session),
    }
}

/// Session ids are path segments and journal keys: short, printable, unambiguous.
fn invalid_session(session: &str) -> Option<Response> {
    let ok = !session.is_empty()
        && session.len() <= MAX_ID_LEN
        && session
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@'));
    (!ok).then(|| {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_session",
            format!("a session id is 1 to {MAX_ID_LEN} characters of A-Z a-z 0-9 - _ . : @"),
        )
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostBody {
    text: String,
    #[serde(default)]
    id: Option<String>,
}

/// The body of a reset: nothing, or an empty object (room for options later).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetBody {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostQuery {
    #[serde(default = "yes")]
    wait: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitQuery {
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryParams {
    #[serde(default)]
    limit: Option<usize>,
    /// A `next_before` cursor from an earlier page.
    #[serde(default)]
    before: Option<i64>,
}

/// The body could not be read: too large (413), or the connection failed mid-body (400).
fn body_rejection(rejection: BytesRejection, limit: usize) -> Response {
    let status = rejection.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        error(
            status,
            "body_too_large",
            format!("the body is larger than {limit} bytes ([http] max_body_bytes)"),
        )
    } else {
        error(StatusCode::BAD_REQUEST, "invalid_body", rejection.body_text())
    }
}

fn query_rejection(rejection: QueryRejection) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_query", rejection.body_text())
}

fn limit(query: Result<Query<LimitQuery>, QueryRejection>) -> Result<usize, Box<Response>> {
    let Query(query) = query.map_err(|r| Box::new(query_rejection(r)))?;
    checked_limit(query.limit)
}

fn checked_limit(limit: Option<usize>) -> Result<usize, Box<Response>> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("limit must be between 1 and {MAX_LIMIT}, got {n}"),
        ))),
    }
}

fn journal_failure(e: &JournalError) -> Response {
    match e.kind {
        JournalErrorKind::Full => with_retry_after(error(
            StatusCode::INSUFFICIENT_STORAGE,
            "storage_full",
            format!("{e}; the message was not stored"),
        )),
        JournalErrorKind::Unstorable => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unstorable_text",
            format!("{e}; change the text (sending it again will not help)"),
        ),
        _ => with_retry_after(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            format!("{e}; retry with the same id"),
        )),
    }
}

async fn post_message(
    State(state): State<Arc<AppState>>,
    session: Result<Path<String>, PathRejection>,
    query: Result<Query<PostQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let session = match session_id(session) {
        Ok(session) => session,
        Err(response) => return *response,
    };
    let Query(query) = match query {
        Ok(q) => q,
        Err(rejection) => return query_rejection(rejection),
    };
    let body = match body {
        Ok(bytes) => match serde_json::from_slice::<PostBody>(&bytes) {
            Ok(body) => body,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    format!("the body must be {{\"text\": \"...\", \"id\": \"optional\"}}: {e}"),
                );
            }
        },
        Err(rejection) => return body_rejection(rejection, state.max_body_bytes),
    };
    if body.text.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_message",
            "`text` must not be empty",
        );
    }
    if let Some(id) = &body.id
        && (id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(char::is_control))
    {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_message",
            format!("`id` must be 1 to {MAX_ID_LEN} bytes without control characters"),
        );
    }
    if let Some(command) = commands::parse(&body.text, None) {
        return run_command(&state, SessionKey::new(ADAPTER, session), body.id, &command).await;
    }
    let ticket = match state
        .engine
        .submit(SessionKey::new(ADAPTER, session), body.id, body.text)
        .await
    {
        Ok(ticket) => ticket,
        Err(SubmitError::Draining) => {
            return with_retry_after(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "draining",
                "the gateway is stopping and takes no new messages; retry shortly",
            ));
        }
        Err(SubmitError::Conflict(id)) => {
            return error(
                StatusCode::CONFLICT,
                "id_conflict",
                format!("message id {id:?} was already used for a different text in this session"),
            );
        }
        Err(SubmitError::Journal(e)) => return journal_failure(&e),
    };
    answer(&state, ticket, query.wait).await
}

/// What a stored message's client is told: `202 accepted` at once, or (`wait`) the reply.
async fn answer(state: &AppState, ticket: crate::engine::Ticket, wait: bool) -> Response {
    let id = ticket.message_id.clone();
    if !wait {
        return (
            StatusCode::ACCEPTED,
            axum::Json(json!({"id": id, "status": "accepted"})),
        )
            .into_response();
    }
    match ticket.outcome().await {
        TurnOutcome::Replied(reply) => {
            let status = if reply.failed { "failed" } else { "done" };
            (
                StatusCode::OK,
                axum::Json(json!({"id": id, "status": status, "reply": reply_json(state, &reply)})),
            )
                .into_response()
        }
        TurnOutcome::Stored => (
            StatusCode::ACCEPTED,
            axum::Json(json!({"id": id, "status": "accepted"})),
        )
            .into_response(),
        TurnOutcome::Interrupted => with_retry_after(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({
                    "error": "interrupted",
                    "id": id,
                    "message": "the gateway stopped while answering; the message is stored and will be \
                                answered after restart: retry with the same id to get the reply",
                })),
            )
                .into_response(),
        ),
        TurnOutcome::Failed(e) => journal_failure(&e),
    }
}

/// A reply as the API shows it: its text, and its files with where to fetch them.
fn reply_json(state: &AppState, reply: &Reply) -> Value {
    let mut shown = json!({"text": reply.text});
    if !reply.files.is_empty() {
        shown["files"] = files_json(state, &reply.files);
    }
    shown
}

/// A reply's files as the API shows them: name, type, size, kind, and the `url` that serves each.
fn files_json(state: &AppState, files: &[crate::agent::Attachment]) -> Value {
    Value::Array(
        files
            .iter()
            .map(|file| {
                let url = state
                    .files
                    .as_ref()
                    .and_then(|files| files.locate(file))
                    .map(|(turn, name)| {
                        let name: Vec<String> = name.split('/').map(url_segment).collect();
                        format!("/v1/files/{turn}/{}", name.join("/"))
                    });
                json!({
                    "name": file.name,
                    "mime": file.mime,
                    "size": file.size,
                    "kind": file.kind,
                    "url": url,
                })
            })
            .collect(),
    )
}

/// A path segment with everything but unreserved characters percent-encoded.
fn url_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `GET /v1/files/{turn}/{name}`: a file an answer sent, from its turn's folder only (no symlink, no
/// `..`; see `agent::outfiles`), as a download the browser never renders.
async fn sent_file(
    State(state): State<Arc<AppState>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let not_found = |why: &str| {
        error(
            StatusCode::NOT_FOUND,
            "no_such_file",
            format!("no such file: {why}"),
        )
    };
    let Ok(Path((turn, name))) = path else {
        return not_found("the path is not /v1/files/{turn}/{name}");
    };
    let Some(files) = &state.files else {
        return not_found("this gateway keeps no files");
    };
    let Ok(turn) = turn.parse::<i64>() else {
        return not_found("the turn is not a number");
    };
    let file = match files.find(turn, &name) {
        Ok(file) => file,
        Err(why) => return not_found(&why),
    };
    let path = file.path.clone();
    let read = tokio::task::spawn_blocking(move || std::fs::read(path))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    let bytes = match read {
        Ok(bytes) => bytes,
        Err(e) => return not_found(&format!("it cannot be read ({e})")),
    };
    let shown = file.name.as_deref().unwrap_or("file");
    let disposition = format!("attachment; filename*=UTF-8''{}", url_segment(shown));
    let mut response = (StatusCode::OK, bytes).into_response();
    let headers = response.headers_mut();
    if let Ok(mime) = HeaderValue::from_str(&file.mime) {
        headers.insert(header::CONTENT_TYPE, mime);
    }
    if let Ok(disposition) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

async fn history(
    State(state): State<Arc<AppState>>,
    session: Result<Path<String>, PathRejection>,
    query: Result<Query<HistoryParams>, QueryRejection>,
) -> Response {
    let session = match session_id(session) {
        Ok(session) => session,
        Err(response) => return *response,
    };
    let Query(params) = match query {
        Ok(q) => q,
        Err(rejection) => return query_rejection(rejection),
    };
    let limit = match checked_limit(params.limit) {
        Ok(n) => n,
        Err(response) => return *response,
    };
    let key = SessionKey::new(ADAPTER, session.clone());
    let query = HistoryQuery {
        limit,
        before: params.before,
        max_bytes: HISTORY_PAGE_BYTES,
    };
    match state.engine.history_page(&key, query).await {
        Ok(page) => {
            let messages: Vec<Value> = page
                .messages
                .into_iter()
                .map(|m| {
                    let mut shown = json!({
                        "id": m.message_id,
                        "turn": m.turn,
                        "conversation": m.conversation,
                        "role": m.role.as_str(),
                        "text": m.text,
                        "status": m.status.as_str(),
                        "at_ms": m.at_ms,
                    });
                    if !m.files.is_empty() {
                        shown["files"] = files_json(&state, &m.files);
                    }
                    shown
                })
                .collect();
            axum::Json(json!({
                "session": session,
                "conversation": page.conversation,
                "messages": messages,
                "next_before": page.older,
            }))
            .into_response()
        }
        Err(e) => journal_failure(&e),
    }
}

/// `POST /v1/sessions/{session}/reset`: the session's next turns are shown to the agent without what
/// came before; nothing is deleted. Answered once the reset is durable.
async fn reset_session(
    State(state): State<Arc<AppState>>,
    session: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let session = match session_id(session) {
        Ok(session) => session,
        Err(response) => return *response,
    };
    match body {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => {}
        Ok(bytes) => {
            if let Err(e) = serde_json::from_slice::<ResetBody>(&bytes) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    format!("the body of a reset must be empty or {{}}: {e}"),
                );
            }
        }
        Err(rejection) => return body_rejection(rejection, state.max_body_bytes),
    }
    if state.engine.turns().is_draining() {
        return with_retry_after(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "the gateway is stopping; retry the reset shortly",
        ));
    }
    match state
        .engine
        .reset(&SessionKey::new(ADAPTER, session.clone()))
        .await
    {
        Ok(conversation) => axum::Json(json!({
            "session": session,
            "conversation": conversation.number,
            "reset": conversation.started,
        }))
        .into_response(),
        Err(e) if e.kind == JournalErrorKind::Full => with_retry_after(error(
            StatusCode::INSUFFICIENT_STORAGE,
            "storage_full",
            format!("{e}; the session was not reset"),
        )),
        Err(e) => with_retry_after(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            format!("{e}; retry the reset (a repeated reset changes nothing)"),
        )),
    }
}

async fn list_sessions(
    State(state): State<Arc<AppState>>,
    query: Result<Query<LimitQuery>, QueryRejection>,
) -> Response {
    let limit = match limit(query) {
        Ok(n) => n,
        Err(response) => return *response,
    };
    match state.engine.sessions(limit).await {
        Ok(sessions) => {
            let sessions: Vec<Value> = sessions
                .into_iter()
                .map(|s| {
                    json!({
                        "adapter": s.session.adapter,
                        "session": s.session.chat_id,
                        "messages": s.messages,
                        "conversation": s.conversation,
                        "created_ms": s.created_ms,
                        "updated_ms": s.updated_ms,
                    })
                })
                .collect();
            axum::Json(json!({"sessions": sessions})).into_response()
        }
        Err(e) => journal_failure(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abcdefgh12345678", b"abcdefgh12345678"));
        assert!(!constant_time_eq(b"abcdefgh12345678", b"abcdefgh12345679"));
        assert!(!constant_time_eq(b"short", b"longer"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn unspecified_addresses_are_reported_as_loopback() {
        assert_eq!(
            reachable("0.0.0.0:80".parse().unwrap()).to_string(),
            "127.0.0.1:80"
        );
        assert_eq!(reachable("[::]:80".parse().unwrap()).to_string(), "[::1]:80");
        assert_eq!(
            reachable("10.0.0.1:80".parse().unwrap()).to_string(),
            "10.0.0.1:80"
        );
    }

    #[test]
    fn session_ids() {
        for ok in ["alice", "a.b-c_d:e@f", &"x".repeat(MAX_ID_LEN)] {
            assert!(invalid_session(ok).is_none(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "ünï", &"x".repeat(MAX_ID_LEN + 1)] {
            assert!(invalid_session(bad).is_some(), "{bad}");
        }
    }
}
