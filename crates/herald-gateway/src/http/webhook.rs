//! `POST /v1/webhooks/{name}`: a message from an integration, signed the Standard Webhooks way (see
//! [`crate::webhook`]).
//!
//! **Invariant:** nothing is stored before the signature verifies: a forged, altered or replayed request
//! (a timestamp more than five minutes off) is a `401` and leaves no trace but a log line. A request
//! that verifies is stored under its `webhook-id` before the `202`, so a sender retrying it — the
//! same id — gets the same turn, never a second one.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::{
    AppState, MAX_ID_LEN, answer, body_rejection, error, invalid_session, journal_failure, query_rejection,
};
use crate::commands;
use crate::engine::SubmitError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HookQuery {
    /// Answer with the reply (`200`) instead of `202` and a callback.
    #[serde(default)]
    wait: bool,
}

pub(super) async fn receive(
    State(state): State<Arc<AppState>>,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<HookQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Ok(Path(name)) = name else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such webhook");
    };
    let Some(integration) = state.webhooks.get(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no webhook is named {name:?} ([[webhook]] in herald.toml)"),
        );
    };
    let Query(query) = match query {
        Ok(q) => q,
        Err(rejection) => return query_rejection(rejection),
    };
    let body = match body {
        Ok(bytes) => bytes,
        Err(rejection) => return body_rejection(rejection, state.max_body_bytes),
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let id = header("webhook-id");
    let now = i64::try_from(herald_home::time::now_ms() / 1000).unwrap_or(i64::MAX);
    if let Err(why) = integration.secret.verify(
        id,
        header("webhook-timestamp"),
        header("webhook-signature"),
        &body,
        now,
    ) {
        tracing::warn!(webhook = %name, "webhook: refused a request: {why}");
        return error(StatusCode::UNAUTHORIZED, "invalid_signature", why.to_string());
    }
    if id.len() > MAX_ID_LEN || id.chars().any(char::is_control) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_message",
            format!("`webhook-id` must be 1 to {MAX_ID_LEN} bytes without control characters"),
        );
    }
    let parsed: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the body is not JSON: {e}"),
            );
        }
    };
    let (session, text) = match integration.read_body(&parsed) {
        Ok(found) => found,
        Err(why) => return error(StatusCode::BAD_REQUEST, "invalid_message", why),
    };
    if let Some(response) = invalid_session(&session) {
        return response;
    }
    if text.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_message",
            "the text must not be empty",
        );
    }
    let session = integration.session(&session);
    if let Some(command) = commands::parse(&text, None) {
        return super::run_command(&state, session, Some(id.to_owned()), &command).await;
    }
    // Asked to wait, the caller gets the reply in the response instead of by callback.
    let submitted = if query.wait {
        state
            .engine
            .submit_answered_inline(session, id.to_owned(), text)
            .await
    } else {
        state.engine.submit(session, Some(id.to_owned()), text).await
    };
    match submitted {
        Ok(ticket) => answer(&state, ticket, query.wait).await,
        Err(SubmitError::Draining) => super::with_retry_after(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "the gateway is stopping and takes no new messages; retry shortly",
        )),
        Err(SubmitError::Conflict(id)) => error(
            StatusCode::CONFLICT,
            "id_conflict",
            format!("webhook-id {id:?} was already used for a different text in this session"),
        ),
        Err(SubmitError::Journal(e)) => journal_failure(&e),
    }
}
