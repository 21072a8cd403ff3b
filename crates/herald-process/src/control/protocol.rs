//! The control-channel protocol: one JSON object per line each way.
//!
//! Requests: `{"op":"ping"}`, `{"op":"status"}`, `{"op":"stop","restart":false}`, `{"op":"drain"}`,
//! `{"op":"reload"}`, `{"op":"restart_adapter","adapter":"telegram"}`.
//! Every response carries `ok` and the answering `pid`; the rest depends on the request. Parsing is a pure
//! function with a size bound, so a hostile or broken client gets an error reply, never a crash.

use herald_home::records::{GatewayState, HealthRecord};
use serde::{Deserialize, Serialize};

/// Longest request line accepted.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Answered by the gateway's main loop: a liveness witness, not just a pid check.
    Ping,
    Status,
    /// Planned stop: drain, then exit 0 (or 75 with `restart`).
    Stop {
        #[serde(default)]
        restart: bool,
    },
    /// Refuse new turns and wait for the in-flight ones; the gateway stays up (not ready) until stopped.
    Drain,
    /// Read `herald.toml` and the secrets again and apply what can change without a restart.
    Reload,
    /// Restart one chat adapter inside the running gateway (new connections, its tasks started again);
    /// the rest of the gateway keeps serving.
    RestartAdapter {
        adapter: String,
    },
    /// Take a reply set aside as undeliverable back into delivery and send it now (`herald deliveries
    /// retry`).
    RetryDelivery {
        turn_id: i64,
    },
    /// Make one synthetic turn through the journal and answer once it was stored, answered and read
    /// back (`herald upgrade`'s health gate): proof the gateway can take turns, not just answer pings.
    CheckTurn,
}

/// What a reload did: the dotted keys applied live, and those that changed but take effect only after a
/// restart (the running gateway keeps their old values).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReloadSummary {
    pub applied: Vec<String>,
    pub restart_needed: Vec<String>,
}

/// A drain's outcome as reported over the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainSummary {
    pub finished: usize,
    pub cut: usize,
}

/// The gateway's last word on its agent: from the outcome of real turns and from probes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AgentStatus {
    /// The backend (`echo`, `command`, `openai`).
    pub backend: String,
    /// `ready`, `failing` or `unknown` (not checked yet).
    pub verdict: String,
    /// What was checked, or what is wrong.
    pub detail: String,
    /// How long ago the verdict was reached (none: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_ms: Option<u64>,
    /// The agent's entry on the health board, live (state, since, last turn in and answer out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    pub pid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<GatewayState>,
    /// The pid the records name as the gateway's: the monitor's, when `pid` is a supervised worker. A
    /// caller that started a gateway knows it by this pid, and can tell it serves even when its records
    /// cannot be written (a full disk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<usize>,
    /// Of `in_flight`, the turns waiting in line for a slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<DrainSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<ReloadSummary>,
    /// What the gateway knows of its agent's health (status and ping replies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentStatus>,
    /// The chat adapters' health, live (status and ping replies; the state record has it as of its
    /// last write).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapters: Option<Vec<HealthRecord>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    pub fn error(pid: u32, message: impl Into<String>) -> Response {
        Response {
            ok: false,
            pid,
            error: Some(message.into()),
            ..Response::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("request longer than {MAX_REQUEST_BYTES} bytes")]
    TooLong,
    #[error("request is not valid UTF-8")]
    NotUtf8,
    #[error("bad request: {0}")]
    Invalid(String),
}

/// Parses one request line (without or with its trailing newline).
pub fn parse_request(line: &[u8]) -> Result<Request, ProtocolError> {
    if line.len() > MAX_REQUEST_BYTES {
        return Err(ProtocolError::TooLong);
    }
    let text = std::str::from_utf8(line)
        .map_err(|_| ProtocolError::NotUtf8)?
        .trim();
    // serde would also accept the sequence form `["ping"]`; the protocol is objects only.
    if !text.starts_with('{') {
        return Err(ProtocolError::Invalid("a request is one JSON object".into()));
    }
    serde_json::from_str(text).map_err(|e| ProtocolError::Invalid(e.to_string()))
}

/// Serializes a message as one line.
pub fn to_line<T: Serialize>(message: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(message).unwrap_or_else(|_| b"{}".to_vec());
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        assert_eq!(parse_request(b"{\"op\":\"ping\"}\n"), Ok(Request::Ping));
        assert_eq!(parse_request(b" {\"op\":\"status\"} "), Ok(Request::Status));
        assert_eq!(
            parse_request(b"{\"op\":\"stop\"}"),
            Ok(Request::Stop { restart: false })
        );
        assert_eq!(
            parse_request(b"{\"op\":\"stop\",\"restart\":true}"),
            Ok(Request::Stop { restart: true })
        );
        assert_eq!(parse_request(b"{\"op\":\"drain\"}"), Ok(Request::Drain));
        assert_eq!(parse_request(b"{\"op\":\"reload\"}"), Ok(Request::Reload));
        assert_eq!(
            parse_request(b"{\"op\":\"restart_adapter\",\"adapter\":\"telegram\"}"),
            Ok(Request::RestartAdapter {
                adapter: "telegram".into()
            })
        );
        assert!(parse_request(b"{\"op\":\"restart_adapter\"}").is_err());
        assert_eq!(
            parse_request(b"{\"op\":\"retry_delivery\",\"turn_id\":17}"),
            Ok(Request::RetryDelivery { turn_id: 17 })
        );
        assert_eq!(parse_request(b"{\"op\":\"check_turn\"}"), Ok(Request::CheckTurn));
    }

    #[test]
    fn bad_requests_are_errors_not_panics() {
        for bad in [
            &b""[..],
            b"ping",
            b"{}",
            b"{\"op\":\"explode\"}",
            b"{\"op\":\"stop\",\"restart\":\"yes\"}",
            b"\xff\xfe",
            b"[\"ping\"]",
        ] {
            assert!(parse_request(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_request(&vec![b' '; MAX_REQUEST_BYTES + 1]),
            Err(ProtocolError::TooLong)
        );
    }

    #[test]
    fn unknown_fields_are_ignored_for_forward_compatibility() {
        assert_eq!(
            parse_request(b"{\"op\":\"ping\",\"from\":\"v2\"}"),
            Ok(Request::Ping)
        );
    }

    #[test]
    fn responses_round_trip() {
        let r = Response {
            ok: true,
            pid: 3,
            state: Some(GatewayState::Running),
            in_flight: Some(2),
            ..Response::default()
        };
        let line = to_line(&r);
        assert_eq!(serde_json::from_slice::<Response>(&line).unwrap(), r);
    }
}
