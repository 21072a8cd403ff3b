//! The few Bot API methods the adapter uses, over reqwest, with every answer classified.
//!
//! **Invariant:** the bot token never leaves this module in any text. It is part of every request URL
//! (`<api_base>/bot<token>/<method>`), and reqwest puts the URL into its error messages, so every
//! transport error is stripped of its URL (`without_url`) and every text that came from the network is
//! passed through [`BotApi::redact`] before it becomes an [`ApiError`].

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

/// Why a Bot API call failed, classified for what the adapter does next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Connection refused, reset, timed out...: retry with backoff.
    #[error("cannot reach the Telegram Bot API: {0}")]
    Network(String),
    /// 401: the token is wrong or revoked. Retrying cannot help.
    #[error(
        "the Telegram Bot API refused the bot token (401 Unauthorized); check [telegram] token_env/token"
    )]
    Unauthorized,
    /// 409: another program polls this bot (or a webhook is set).
    #[error(
        "409 Conflict: another program is already receiving this bot's updates (another herald or bot using \
         the same token polling getUpdates, or a webhook set on it): {0}"
    )]
    Conflict(String),
    /// 429: flood control; the server says how long to wait.
    #[error("the Telegram Bot API asks to slow down (429); retrying after {0} s")]
    RetryAfter(u64),
    /// 5xx: the server's trouble; retry with backoff.
    #[error("the Telegram Bot API failed ({status}): {description}")]
    Server { status: u16, description: String },
    /// Another 4xx: this request is wrong (a bad chat, markup that does not parse...).
    #[error("the Telegram Bot API rejected the request ({status}): {description}")]
    Rejected { status: u16, description: String },
    /// The answer was not the Bot API's JSON.
    #[error("unexpected answer from the Telegram Bot API: {0}")]
    Decode(String),
    /// Not sent: a message worth sending only soon found no slot soon (see `pace::Pacer::reserve_within`).
    #[error("not sent: the chat's pace allows nothing more for now")]
    Paced,
}

impl ApiError {
    /// Worth retrying the same call later (the server or the network was at fault).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ApiError::Network(_) | ApiError::RetryAfter(_) | ApiError::Server { .. } | ApiError::Decode(_)
        )
    }

    /// A 400 saying an edit changed nothing (the message already says this): the edit is done.
    pub fn is_not_modified(&self) -> bool {
        matches!(self, ApiError::Rejected { status: 400, description }
            if description.to_ascii_lowercase().contains("message is not modified"))
    }

    /// A 400 about the message's formatting: resend it as plain text.
    pub fn is_markup_error(&self) -> bool {
        matches!(self, ApiError::Rejected { status: 400, description }
            if description.to_ascii_lowercase().contains("parse entities")
                || description.to_ascii_lowercase().contains("can't parse"))
    }
}

/// The Bot API's envelope: `{"ok": bool, "result": ..., "description": ..., "parameters": {...}}`.
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    ok: bool,
    #[serde(default)]
    result: Value,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Parameters>,
}

#[derive(Debug, Deserialize)]
struct Parameters {
    #[serde(default)]
    retry_after: Option<u64>,
}

/// A Bot API client for one bot.
#[derive(Clone)]
pub struct BotApi {
    client: reqwest::Client,
    /// `<api_base>/bot<token>`: secret.
    prefix: String,
    /// `<api_base>/file/bot<token>`, where files are downloaded: secret.
    file_prefix: String,
    token: String,
}

impl std::fmt::Debug for BotApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BotApi { token: <redacted> }")
    }
}

/// How long a request other than a long poll may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long downloading one file may take (20 MB on a slow line).
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(300);

impl BotApi {
    pub fn new(api_base: &str, token: &str) -> Result<BotApi, ApiError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ApiError::Network(e.without_url().to_string()))?;
        Ok(BotApi {
            client,
            prefix: format!("{}/bot{token}", api_base.trim_end_matches('/')),
            file_prefix: format!("{}/file/bot{token}", api_base.trim_end_matches('/')),
            token: token.to_owned(),
        })
    }

    /// Removes the token from a text that may contain it.
    pub fn redact(&self, text: &str) -> String {
        if self.token.is_empty() {
            return text.to_owned();
        }
        text.replace(&self.token, "<token>")
    }

    async fn call(&self, method: &str, body: Value, timeout: Duration) -> Result<Value, ApiError> {
        let request = self
            .client
            .post(format!("{}/{method}", self.prefix))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .timeout(timeout);
        self.answer_of(method, request).await
    }

    /// Sends a request and reads the Bot API's answer, classified.
    async fn answer_of(&self, method: &str, request: reqwest::RequestBuilder) -> Result<Value, ApiError> {
        let response = request
            .send()
            .await
            .map_err(|e| ApiError::Network(self.redact(&transport_error(e))))?;
        let status = response.status().as_u16();
        let header_retry = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ApiError::Network(self.redact(&transport_error(e))))?;
        let envelope: Option<Envelope> = serde_json::from_slice(&bytes).ok();
        let description = envelope
            .as_ref()
            .and_then(|e| e.description.clone())
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned());
        let description = self.redact(description.trim());
        match status {
            200..=299 => match envelope {
                Some(Envelope { ok: true, result, .. }) => Ok(result),
                Some(_) => Err(ApiError::Rejected { status, description }),
                None => Err(ApiError::Decode(format!(
                    "{method} answered {status} with: {description}"
                ))),
            },
            401 => Err(ApiError::Unauthorized),
            409 => Err(ApiError::Conflict(description)),
            429 => {
                let after = envelope
                    .as_ref()
                    .and_then(|e| e.parameters.as_ref())
                    .and_then(|p| p.retry_after)
                    .or(header_retry)
                    .unwrap_or(5);
                Err(ApiError::RetryAfter(after))
            }
            500..=599 => Err(ApiError::Server { status, description }),
            _ => Err(ApiError::Rejected { status, description }),
        }
    }

    /// One long poll: updates from `offset` on (confirming every update below it), waiting up to
    /// `timeout` on the server.
    pub async fn get_updates(&self, offset: Option<i64>, timeout: Duration) -> Result<Vec<Value>, ApiError> {
        let mut body = json!({ "timeout": timeout.as_secs() });
        if let Some(offset) = offset {
            body["offset"] = json!(offset);
        }
        match self.call("getUpdates", body, timeout + REQUEST_TIMEOUT).await? {
            Value::Array(updates) => Ok(updates),
            other => Err(ApiError::Decode(format!(
                "getUpdates result is not a list: {}",
                self.redact(&other.to_string())
            ))),
        }
    }

    /// Sends one message (at most [`crate::split::MAX_MESSAGE_CHARS`] characters).
    pub async fn send_message(
        &self,
        chat_id: i64,
        text: &str,
        parse_mode: Option<&str>,
        reply_to: Option<i64>,
    ) -> Result<(), ApiError> {
        let mut body = json!({ "chat_id": chat_id, "text": text });
        if let Some(mode) = parse_mode {
            body["parse_mode"] = json!(mode);
        }
        if let Some(id) = reply_to {
            body["reply_parameters"] = json!({ "message_id": id, "allow_sending_without_reply": true });
        }
        self.call("sendMessage", body, REQUEST_TIMEOUT).await.map(drop)
    }

    /// As [`BotApi::send_message`], returning the new message's id (for a draft later edited).
    pub async fn send_message_id(
        &self,
        chat_id: i64,
        text: &str,
        parse_mode: Option<&str>,
        reply_to: Option<i64>,
    ) -> Result<i64, ApiError> {
        let mut body = json!({ "chat_id": chat_id, "text": text });
        if let Some(mode) = parse_mode {
            body["parse_mode"] = json!(mode);
        }
        if let Some(id) = reply_to {
            body["reply_parameters"] = json!({ "message_id": id, "allow_sending_without_reply": true });
        }
        let sent = self.call("sendMessage", body, REQUEST_TIMEOUT).await?;
        sent.get("message_id")
            .and_then(Value::as_i64)
            .ok_or_else(|| ApiError::Decode("sendMessage answered without a message_id".into()))
    }

    /// Replaces the text of message `message_id` (a draft). An edit that changes nothing is a success.
    pub async fn edit_message_text(
        &self,
        chat_id: i64,
        message_id: i64,
        text: &str,
        parse_mode: Option<&str>,
    ) -> Result<(), ApiError> {
        let mut body = json!({ "chat_id": chat_id, "message_id": message_id, "text": text });
        if let Some(mode) = parse_mode {
            body["parse_mode"] = json!(mode);
        }
        match self.call("editMessageText", body, REQUEST_TIMEOUT).await {
            Err(e) if e.is_not_modified() => Ok(()),
            other => other.map(drop),
        }
    }

    /// Deletes message `message_id` (a draft that could not become the answer). Best effort.
    pub async fn delete_message(&self, chat_id: i64, message_id: i64) -> Result<(), ApiError> {
        let body = json!({ "chat_id": chat_id, "message_id": message_id });
        self.call("deleteMessage", body, REQUEST_TIMEOUT).await.map(drop)
    }

    /// Where file `file_id` can be downloaded from (`getFile`): its path, and its size when known.
    pub async fn get_file(&self, file_id: &str) -> Result<(String, Option<u64>), ApiError> {
        let file = self
            .call("getFile", json!({ "file_id": file_id }), REQUEST_TIMEOUT)
            .await?;
        let path = file
            .get("file_path")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::Decode("getFile answered without a file_path".into()))?;
        Ok((path.to_owned(), file.get("file_size").and_then(Value::as_u64)))
    }

    /// Downloads a file `getFile` named, refusing more than `max_bytes` (read as it arrives: a server
    /// that sends more than it said cannot fill the memory).
    pub async fn download(&self, file_path: &str, max_bytes: u64) -> Result<Vec<u8>, ApiError> {
        let network = |e: reqwest::Error| ApiError::Network(self.redact(&transport_error(e)));
        let mut response = self
            .client
            .get(format!("{}/{file_path}", self.file_prefix))
            .timeout(DOWNLOAD_TIMEOUT)
            .send()
            .await
            .map_err(network)?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let description = format!("downloading a file answered {status}");
            return Err(if status >= 500 {
                ApiError::Server { status, description }
            } else {
                ApiError::Rejected { status, description }
            });
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(network)? {
            if (bytes.len() + chunk.len()) as u64 > max_bytes {
                return Err(ApiError::Rejected {
                    status: 413,
                    description: format!("the file is larger than {max_bytes} bytes"),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    /// The bot's own description (`getMe`): proves the token is valid. `@username` when it has one.
    pub async fn get_me(&self, timeout: Duration) -> Result<String, ApiError> {
        let me = self.me(timeout).await?;
        Ok(match me.username {
            Some(name) => format!("@{name}"),
            None => format!("bot {}", me.id),
        })
    }

    /// Who the bot is (`getMe`): its user id and username, to see mentions of it and replies to it.
    pub async fn me(&self, timeout: Duration) -> Result<BotIdentity, ApiError> {
        let me = self.call("getMe", json!({}), timeout).await?;
        Ok(BotIdentity {
            id: me.get("id").and_then(Value::as_i64).unwrap_or_default(),
            username: me.get("username").and_then(Value::as_str).map(str::to_owned),
        })
    }

    /// Sets the bot's command menu (`setMyCommands`): `(name, description)` pairs.
    pub async fn set_my_commands(&self, commands: &[(&str, &str)]) -> Result<(), ApiError> {
        let list: Vec<Value> = commands
            .iter()
            .map(|(name, description)| json!({ "command": name, "description": description }))
            .collect();
        self.call("setMyCommands", json!({ "commands": list }), REQUEST_TIMEOUT)
            .await
            .map(drop)
    }

    /// Uploads a file to the chat (`sendPhoto` or `sendDocument`, as `upload` says), read from the
    /// media store. A file that cannot be read is [`ApiError::Rejected`] with status 0: sending it again
    /// will not help.
    pub async fn send_file(
        &self,
        chat_id: i64,
        upload: &Upload<'_>,
        reply_to: Option<i64>,
    ) -> Result<(), ApiError> {
        let path = upload.path.to_owned();
        let bytes = tokio::task::spawn_blocking(move || std::fs::read(path))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            .map_err(|e| ApiError::Rejected {
                status: 0,
                description: format!("the file {} cannot be read: {e}", upload.path),
            })?;
        let (method, field) = if upload.as_photo {
            ("sendPhoto", "photo")
        } else {
            ("sendDocument", "document")
        };
        let plausible = upload.mime.contains('/') && upload.mime.chars().all(|c| c.is_ascii_graphic());
        let file = reqwest::multipart::Part::bytes(bytes)
            .file_name(upload.name.to_owned())
            .mime_str(if plausible {
                upload.mime
            } else {
                "application/octet-stream"
            })
            .map_err(|e| ApiError::Decode(format!("cannot build the upload: {e}")))?;
        let mut form = reqwest::multipart::Form::new()
            .text("chat_id", chat_id.to_string())
            .part(field, file);
        if let Some(id) = reply_to {
            form = form.text(
                "reply_parameters",
                json!({ "message_id": id, "allow_sending_without_reply": true }).to_string(),
            );
        }
        let request = self
            .client
            .post(format!("{}/{method}", self.prefix))
            .multipart(form)
            .timeout(DOWNLOAD_TIMEOUT);
        self.answer_of(method, request).await.map(drop)
    }

    /// Shows "typing..." in the chat for a few seconds.
    pub async fn send_typing(&self, chat_id: i64) -> Result<(), ApiError> {
        let body = json!({ "chat_id": chat_id, "action": "typing" });
        self.call("sendChatAction", body, REQUEST_TIMEOUT).await.map(drop)
    }
}

/// A file to upload to a chat (see [`BotApi::send_file`]).
#[derive(Debug, Clone, Copy)]
pub struct Upload<'a> {
    /// Where it is (in the media store).
    pub path: &'a str,
    /// The name the chat shows.
    pub name: &'a str,
    pub mime: &'a str,
    /// As a photo (shown inline, recompressed by Telegram) rather than a document.
    pub as_photo: bool,
}

/// A transport error without the request URL (which holds the token).
fn transport_error(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(inner) = source {
        text.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_redacted_and_never_debug_printed() {
        let api = BotApi::new("http://127.0.0.1:1/", "123:SECRET").unwrap();
        assert_eq!(api.redact("GET /bot123:SECRET/getMe"), "GET /bot<token>/getMe");
        assert!(!format!("{api:?}").contains("SECRET"));
    }

    #[tokio::test]
    async fn a_connection_error_does_not_carry_the_token() {
        // Port 1 on loopback: refused at once.
        let api = BotApi::new("http://127.0.0.1:1", "123:SECRET").unwrap();
        let err = api
            .get_updates(Some(5), Duration::from_secs(0))
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::Network(_)), "{err:?}");
        assert!(!err.to_string().contains("SECRET"), "{err}");
        assert!(!format!("{err:?}").contains("SECRET"), "{err:?}");
    }

    #[test]
    fn markup_errors_are_recognised() {
        let err = ApiError::Rejected {
            status: 400,
            description: "Bad Request: can't parse entities: Can't find end of the entity".into(),
        };
        assert!(err.is_markup_error());
        assert!(
            !ApiError::Rejected {
                status: 400,
                description: "Bad Request: chat not found".into()
            }
            .is_markup_error()
        );
    }
}

/// The bot itself, as `getMe` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotIdentity {
    pub id: i64,
    /// Without the `@`.
    pub username: Option<String>,
}
