//! A small Telegram Bot API stand-in for the crash and error-path tests (std only).
//!
//! It follows the official semantics the npm emulator lacks: `getUpdates` returns every update from
//! `offset` on and keeps re-delivering them until a later call confirms them with a higher `offset`; an
//! empty poll waits up to `timeout` seconds for an update (long poll). `sendMessage` records the message,
//! and refuses Markdown with an odd number of `*` with the real API's 400 "can't parse entities". Faults
//! (401, 409, 429, 5xx) can be scripted per method (and for `sendMessage`, per chat). A wrong token in the
//! URL gets a 401, like Telegram. [`BotApi::limit`] makes it enforce Telegram's rate limits: beyond them
//! `sendMessage` answers 429 with `retry_after`, counted by [`BotApi::refused`]. `sendPhoto` and
//! `sendDocument` take a `multipart/form-data` upload, as the real API does, and keep it ([`BotApi::uploads`]);
//! a photo over 10 MB is refused with the real API's 400.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A message the bot sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub chat_id: i64,
    /// The message's id (what `editMessageText` names).
    pub message_id: i64,
    /// Its text now (edits replace it; see [`BotApi::edits`]).
    pub text: String,
    pub parse_mode: Option<String>,
    pub reply_to: Option<i64>,
}

/// A file the bot uploaded (`sendPhoto`, `sendDocument`).
#[derive(Debug, Clone, PartialEq)]
pub struct Uploaded {
    pub chat_id: i64,
    /// `sendPhoto` or `sendDocument`.
    pub method: String,
    pub file_name: String,
    pub mime: String,
    pub bytes: Vec<u8>,
}

/// A scripted answer: status and JSON body.
#[derive(Debug, Clone)]
pub struct Fault {
    pub status: u16,
    pub body: Value,
}

impl Fault {
    pub fn unauthorized() -> Fault {
        Fault {
            status: 401,
            body: json!({"ok": false, "error_code": 401, "description": "Unauthorized"}),
        }
    }

    pub fn conflict() -> Fault {
        Fault {
            status: 409,
            body: json!({"ok": false, "error_code": 409, "description":
                "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"}),
        }
    }

    pub fn too_many(retry_after: u64) -> Fault {
        Fault {
            status: 429,
            body: json!({"ok": false, "error_code": 429, "description":
                format!("Too Many Requests: retry after {retry_after}"), "parameters": {"retry_after": retry_after}}),
        }
    }

    pub fn server_error() -> Fault {
        Fault {
            status: 502,
            body: json!({"ok": false, "error_code": 502, "description": "Bad Gateway"}),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    next_update_id: i64,
    next_message_id: i64,
    /// Unconfirmed updates, oldest first.
    updates: VecDeque<(i64, Value)>,
    sent: Vec<Sent>,
    /// When each of `sent` arrived (same order).
    sent_at: Vec<Instant>,
    /// getUpdates calls: (when, offset).
    polls: Vec<(Instant, Option<i64>)>,
    /// getUpdates calls being answered right now, and the most there ever were at once (Telegram
    /// itself allows one consumer per token: a second gets 409).
    polling: usize,
    most_polling: usize,
    chat_actions: usize,
    /// Files users sent, by file id: (server path, bytes), for `getFile` and downloads.
    files: std::collections::HashMap<String, (String, Vec<u8>)>,
    /// Downloads served: their server paths.
    downloads: Vec<String>,
    /// Every `editMessageText`: when, which message, the new text.
    edits: Vec<(Instant, i64, String)>,
    /// Messages deleted (`deleteMessage`).
    deleted: Vec<i64>,
    /// Files uploaded, in order.
    uploads: Vec<Uploaded>,
    /// The command menu last set (`setMyCommands`).
    commands: Option<Value>,
    /// Scripted answers, per method, used first.
    faults: Vec<(String, VecDeque<Fault>)>,
    /// A method that always fails this way (until cleared).
    stuck: Vec<(String, Fault)>,
    /// Scripted `sendMessage` answers for one chat, used first.
    chat_faults: Vec<(i64, VecDeque<Fault>)>,
    /// Rate limits enforced on `sendMessage`: most accepted in any one second overall, least time
    /// between two accepted to one chat.
    limits: Option<(usize, Duration)>,
    /// Accepted in the last second (for the overall limit).
    window: VecDeque<Instant>,
    /// The last accepted message to each chat.
    last_to_chat: Vec<(i64, Instant)>,
    /// 429s answered because of `limits` (not scripted ones).
    refused: usize,
}

/// The bot's own user id and username, as `getMe` tells them.
pub const BOT_ID: i64 = 999;
pub const BOT_USERNAME: &str = "herald_test_bot";

/// The stand-in server. Dropping it stops accepting (threads serving open connections finish on their own).
pub struct BotApi {
    pub url: String,
    pub token: String,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl BotApi {
    pub fn start(token: &str) -> BotApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new((
            Mutex::new(State {
                next_update_id: 1000,
                next_message_id: 1,
                ..State::default()
            }),
            Condvar::new(),
        ));
        let shared = state.clone();
        let token_owned = token.to_owned();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let shared = shared.clone();
                let token = token_owned.clone();
                std::thread::spawn(move || serve_connection(stream, &shared, &token));
            }
        });
        BotApi {
            url,
            token: token.to_owned(),
            state,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let (lock, cvar) = &*self.state;
        let mut state = lock.lock().unwrap();
        let out = f(&mut state);
        cvar.notify_all();
        out
    }

    /// A user writes a text message; returns its update id.
    pub fn user_says(&self, user: i64, chat: i64, text: &str) -> i64 {
        self.with(|s| {
            let id = s.next_update_id;
            s.next_update_id += 1;
            let message_id = s.next_message_id;
            s.next_message_id += 1;
            let update = json!({"update_id": id, "message": {
                "message_id": message_id, "date": 1,
                "from": {"id": user, "is_bot": false, "first_name": "Test"},
                "chat": {"id": chat, "type": if chat < 0 { "group" } else { "private" }},
                "text": text,
            }});
            s.updates.push_back((id, update));
            id
        })
    }

    /// `user` writes `text` in group `chat`; `extra` is merged into the message (`reply_to_message`, a
    /// `from` with `is_bot`...). Returns the message id.
    pub fn group_says(&self, user: i64, chat: i64, text: &str, extra: Value) -> i64 {
        self.with(|s| {
            let id = s.next_update_id;
            s.next_update_id += 1;
            let message_id = s.next_message_id;
            s.next_message_id += 1;
            let mut message = json!({
                "message_id": message_id, "date": 1,
                "from": {"id": user, "is_bot": false, "first_name": "Test"},
                "chat": {"id": chat, "type": "supergroup", "title": "Test group"},
                "text": text,
            });
            if let (Some(m), Some(e)) = (message.as_object_mut(), extra.as_object()) {
                m.extend(e.clone());
            }
            s.updates
                .push_back((id, json!({"update_id": id, "message": message})));
            message_id
        })
    }

    /// Any other update (a sticker, an edit...); `body` is the update without `update_id`.
    pub fn other_update(&self, mut body: Value) -> i64 {
        self.with(|s| {
            let id = s.next_update_id;
            s.next_update_id += 1;
            body["update_id"] = json!(id);
            s.updates.push_back((id, body));
            id
        })
    }

    /// `user` sends a file in their private chat: `field` is the message's key for it (`document`,
    /// `voice`, `photo`), `meta` what Telegram says of it beside the ids (`file_name`, `mime_type`...),
    /// `caption` its text. The bytes are served by `getFile` and the download. Returns the file id.
    pub fn user_sends_file(
        &self,
        user: i64,
        field: &str,
        meta: Value,
        bytes: &[u8],
        caption: Option<&str>,
    ) -> String {
        self.with(|s| {
            let id = s.next_update_id;
            s.next_update_id += 1;
            let message_id = s.next_message_id;
            s.next_message_id += 1;
            let file_id = format!("f{id}");
            let extension = match field {
                "photo" => "jpg",
                "voice" => "oga",
                _ => "bin",
            };
            s.files.insert(file_id.clone(), (format!("{field}s/file_{id}.{extension}"), bytes.to_vec()));
            let mut file = json!({"file_id": file_id, "file_unique_id": format!("u{file_id}"), "file_size": bytes.len()});
            if let (Some(f), Some(m)) = (file.as_object_mut(), meta.as_object()) {
                f.extend(m.clone());
            }
            let value = if field == "photo" { json!([file]) } else { file };
            let mut message = json!({
                "message_id": message_id, "date": 1,
                "from": {"id": user, "is_bot": false, "first_name": "Test"},
                "chat": {"id": user, "type": "private"},
            });
            message[field] = value;
            if let Some(caption) = caption {
                message["caption"] = json!(caption);
            }
            s.updates.push_back((id, json!({"update_id": id, "message": message})));
            file_id
        })
    }

    /// The server paths of the files downloaded so far.
    pub fn downloads(&self) -> Vec<String> {
        self.with(|s| s.downloads.clone())
    }

    /// Every edit so far: (when, message id, new text).
    pub fn uploads(&self) -> Vec<Uploaded> {
        self.with(|s| s.uploads.clone())
    }

    pub fn edits(&self) -> Vec<(Instant, i64, String)> {
        self.with(|s| s.edits.clone())
    }

    /// The command menu the bot set, if it did.
    pub fn commands(&self) -> Option<Value> {
        self.with(|s| s.commands.clone())
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.with(|s| s.sent.clone())
    }

    /// [`BotApi::sent`] with the moment each message arrived.
    pub fn sent_timed(&self) -> Vec<(Instant, Sent)> {
        self.with(|s| s.sent_at.iter().copied().zip(s.sent.iter().cloned()).collect())
    }

    pub fn sent_to(&self, chat: i64) -> Vec<Sent> {
        self.sent().into_iter().filter(|m| m.chat_id == chat).collect()
    }

    /// The most `getUpdates` calls this stand-in was ever answering at the same time.
    pub fn most_concurrent_polls(&self) -> usize {
        self.with(|s| s.most_polling)
    }

    pub fn polls(&self) -> Vec<(Instant, Option<i64>)> {
        self.with(|s| s.polls.clone())
    }

    /// Updates not yet confirmed by the bot.
    pub fn unconfirmed(&self) -> usize {
        self.with(|s| s.updates.len())
    }

    pub fn chat_actions(&self) -> usize {
        self.with(|s| s.chat_actions)
    }

    /// The next `count` calls of `method` get `fault`.
    pub fn fail_next(&self, method: &str, fault: Fault, count: usize) {
        self.with(|s| {
            let queue = std::iter::repeat_n(fault, count).collect::<VecDeque<_>>();
            s.faults.push((method.to_owned(), queue));
        });
    }

    /// Every call of `method` gets `fault` until [`BotApi::unstick`].
    pub fn stick(&self, method: &str, fault: Fault) {
        self.with(|s| s.stuck.push((method.to_owned(), fault)));
    }

    pub fn unstick(&self) {
        self.with(|s| s.stuck.clear());
    }

    /// The next `count` `sendMessage` calls to `chat` get `fault`.
    pub fn fail_next_to(&self, chat: i64, fault: Fault, count: usize) {
        self.with(|s| {
            let queue = std::iter::repeat_n(fault, count).collect::<VecDeque<_>>();
            s.chat_faults.push((chat, queue));
        });
    }

    /// From now on `sendMessage` accepts at most `per_second` messages in any one second, and to one
    /// chat one per `chat_gap`; beyond, a 429 with `retry_after` (whole seconds, at least 1).
    pub fn limit(&self, per_second: usize, chat_gap: Duration) {
        self.with(|s| s.limits = Some((per_second, chat_gap)));
    }

    /// 429s answered because of [`BotApi::limit`].
    pub fn refused(&self) -> usize {
        self.with(|s| s.refused)
    }
}

fn serve_connection(stream: TcpStream, shared: &Arc<(Mutex<State>, Condvar)>, token: &str) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("").to_owned();
        let mut length = 0usize;
        let mut content_type = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("content-type") {
                    value.trim().clone_into(&mut content_type);
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if let Some(file) = path.strip_prefix(&format!("/file/bot{token}/")) {
            // A file download (`getFile` named the path): raw bytes.
            let (lock, _) = &**shared;
            let found = {
                let mut state = lock.lock().unwrap();
                state.downloads.push(file.to_owned());
                state
                    .files
                    .values()
                    .find(|(p, _)| p == file)
                    .map(|(_, b)| b.clone())
            };
            let (status, bytes) = match found {
                Some(bytes) => ("200 OK", bytes),
                None => ("404 Not Found", b"Not Found".to_vec()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
                bytes.len()
            );
            if writer.write_all(head.as_bytes()).is_err() || writer.write_all(&bytes).is_err() {
                return;
            }
            continue;
        }
        let (status, answer) = match content_type.split_once("boundary=") {
            Some((kind, boundary)) if kind.starts_with("multipart/form-data") => {
                upload(shared, token, &path, boundary.trim_matches('"'), &body)
            }
            _ => {
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                handle(shared, token, &path, &body)
            }
        };
        let bytes = answer.to_string();
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            409 => "Conflict",
            429 => "Too Many Requests",
            _ => "Error",
        };
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            bytes.len()
        );
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(bytes.as_bytes()).is_err() {
            return;
        }
    }
}

/// `sendPhoto` / `sendDocument` with a `multipart/form-data` body: text fields and one file.
fn upload(
    shared: &Arc<(Mutex<State>, Condvar)>,
    token: &str,
    path: &str,
    boundary: &str,
    body: &[u8],
) -> (u16, Value) {
    let Some((given, method)) = path.strip_prefix("/bot").and_then(|p| p.split_once('/')) else {
        return (
            404,
            json!({"ok": false, "error_code": 404, "description": "Not Found"}),
        );
    };
    if given != token {
        return (
            401,
            json!({"ok": false, "error_code": 401, "description": "Unauthorized"}),
        );
    }
    let field = match method {
        "sendPhoto" => "photo",
        "sendDocument" => "document",
        _ => {
            return (
                400,
                json!({"ok": false, "error_code": 400, "description": "Bad Request: not an upload method"}),
            );
        }
    };
    let mut fields = serde_json::Map::new();
    let mut file = None;
    let delimiter = format!("--{boundary}");
    for part in split_bytes(body, delimiter.as_bytes()).into_iter().skip(1) {
        if part.starts_with(b"--") {
            break;
        }
        let part = part.strip_prefix(b"\r\n").unwrap_or(part);
        let part = part.strip_suffix(b"\r\n").unwrap_or(part);
        let Some(split) = part.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&part[..split]).into_owned();
        let content = &part[split + 4..];
        let attribute = |name: &str| {
            head.split(';')
                .find_map(|a| a.trim().strip_prefix(&format!("{name}=\"")))
                .and_then(|a| a.split('"').next())
                .map(str::to_owned)
        };
        let name = attribute("name").unwrap_or_default();
        let mime = head
            .lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            })
            .map(|(_, v)| v.trim().to_owned());
        if name == field {
            file = Some((
                attribute("filename").unwrap_or_default(),
                mime.unwrap_or_default(),
                content.to_vec(),
            ));
        } else {
            fields.insert(name, Value::String(String::from_utf8_lossy(content).into_owned()));
        }
    }
    let Some((file_name, mime, bytes)) = file else {
        return (
            400,
            json!({"ok": false, "error_code": 400, "description": format!("Bad Request: there is no {field} in the request")}),
        );
    };
    if field == "photo" && bytes.len() > 10 << 20 {
        return (
            400,
            json!({"ok": false, "error_code": 400, "description": "Bad Request: PHOTO_INVALID_DIMENSIONS"}),
        );
    }
    let chat_id = fields
        .get("chat_id")
        .and_then(Value::as_str)
        .and_then(|c| c.parse().ok())
        .unwrap_or_default();
    let (lock, cvar) = &**shared;
    let mut state = lock.lock().unwrap();
    let message_id = state.next_message_id;
    state.next_message_id += 1;
    state.uploads.push(Uploaded {
        chat_id,
        method: method.to_owned(),
        file_name,
        mime,
        bytes,
    });
    cvar.notify_all();
    (
        200,
        json!({"ok": true, "result": {"message_id": message_id, "chat": {"id": chat_id}}}),
    )
}

/// `bytes` cut at every `delimiter`.
fn split_bytes<'a>(bytes: &'a [u8], delimiter: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    let mut rest = bytes;
    while let Some(at) = rest.windows(delimiter.len()).position(|w| w == delimiter) {
        parts.push(&rest[..at]);
        rest = &rest[at + delimiter.len()..];
    }
    parts.push(rest);
    parts
}

fn handle(shared: &Arc<(Mutex<State>, Condvar)>, token: &str, path: &str, body: &Value) -> (u16, Value) {
    let Some((given, method)) = path.strip_prefix("/bot").and_then(|p| p.split_once('/')) else {
        return (
            404,
            json!({"ok": false, "error_code": 404, "description": "Not Found"}),
        );
    };
    let (lock, cvar) = &**shared;
    let mut state = lock.lock().unwrap();
    if method == "getUpdates" {
        // Counted whatever the token: a test watches how often a refused token is tried.
        let offset = body.get("offset").and_then(Value::as_i64);
        state.polls.push((Instant::now(), offset));
    }
    if given != token {
        return (401, Fault::unauthorized().body);
    }
    if let Some((_, fault)) = state.stuck.iter().find(|(m, _)| m == method) {
        return (fault.status, fault.body.clone());
    }
    if let Some((_, queue)) = state
        .faults
        .iter_mut()
        .find(|(m, q)| m == method && !q.is_empty())
    {
        let fault = queue.pop_front().unwrap();
        return (fault.status, fault.body);
    }
    match method {
        "getUpdates" => {
            state.polling += 1;
            state.most_polling = state.most_polling.max(state.polling);
            let offset = body.get("offset").and_then(Value::as_i64);
            let timeout = body.get("timeout").and_then(Value::as_u64).unwrap_or(0).min(30);
            if let Some(offset) = offset {
                // Confirms every update below the offset: they are never sent again.
                while state.updates.front().is_some_and(|(id, _)| *id < offset) {
                    state.updates.pop_front();
                }
            }
            let deadline = Instant::now() + Duration::from_secs(timeout);
            while state.updates.is_empty() {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                state = cvar.wait_timeout(state, deadline - now).unwrap().0;
                if let Some(offset) = offset {
                    while state.updates.front().is_some_and(|(id, _)| *id < offset) {
                        state.updates.pop_front();
                    }
                }
            }
            let result: Vec<Value> = state.updates.iter().take(100).map(|(_, u)| u.clone()).collect();
            state.polling -= 1;
            (200, json!({"ok": true, "result": result}))
        }
        "sendMessage" => {
            let text = body
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let parse_mode = body.get("parse_mode").and_then(Value::as_str).map(str::to_owned);
            if parse_mode.is_some() && text.matches('*').count() % 2 == 1 {
                return (
                    400,
                    json!({"ok": false, "error_code": 400, "description":
                        "Bad Request: can't parse entities: Can't find end of the entity starting at byte offset 0"}),
                );
            }
            if text.chars().map(char::len_utf16).sum::<usize>() > 4096 {
                return (
                    400,
                    json!({"ok": false, "error_code": 400, "description": "Bad Request: message is too long"}),
                );
            }
            let chat_id = body.get("chat_id").and_then(Value::as_i64).unwrap_or_default();
            if let Some(fault) = state
                .chat_faults
                .iter_mut()
                .find(|(c, q)| *c == chat_id && !q.is_empty())
                .and_then(|(_, q)| q.pop_front())
            {
                return (fault.status, fault.body);
            }
            if let Some(wait) = over_limit(&mut state, chat_id) {
                state.refused += 1;
                return (
                    429,
                    Fault::too_many(wait.as_secs_f64().ceil().max(1.0) as u64).body,
                );
            }
            let reply_to = body
                .get("reply_parameters")
                .and_then(|r| r.get("message_id"))
                .and_then(Value::as_i64);
            let message_id = state.next_message_id;
            state.next_message_id += 1;
            let now = Instant::now();
            if state.limits.is_some() {
                state.window.push_back(now);
                match state.last_to_chat.iter_mut().find(|(c, _)| *c == chat_id) {
                    Some((_, last)) => *last = now,
                    None => state.last_to_chat.push((chat_id, now)),
                }
            }
            state.sent_at.push(now);
            state.sent.push(Sent {
                chat_id,
                message_id,
                text: text.clone(),
                parse_mode,
                reply_to,
            });
            cvar.notify_all();
            (
                200,
                json!({"ok": true, "result": {"message_id": message_id, "date": 1, "chat": {"id": chat_id}, "text": text}}),
            )
        }
        "editMessageText" => {
            let message_id = body.get("message_id").and_then(Value::as_i64).unwrap_or_default();
            let text = body
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let Some(sent) = state.sent.iter_mut().find(|m| m.message_id == message_id) else {
                return (
                    400,
                    json!({"ok": false, "error_code": 400, "description": "Bad Request: message to edit not found"}),
                );
            };
            if sent.text == text {
                return (
                    400,
                    json!({"ok": false, "error_code": 400, "description":
                        "Bad Request: message is not modified: specified new message content and reply markup are exactly the same"}),
                );
            }
            sent.text = text.clone();
            state.edits.push((Instant::now(), message_id, text));
            cvar.notify_all();
            (200, json!({"ok": true, "result": true}))
        }
        "deleteMessage" => {
            let message_id = body.get("message_id").and_then(Value::as_i64).unwrap_or_default();
            state.sent.retain(|m| m.message_id != message_id);
            state.deleted.push(message_id);
            (200, json!({"ok": true, "result": true}))
        }
        "getFile" => {
            let file_id = body.get("file_id").and_then(Value::as_str).unwrap_or_default();
            match state.files.get(file_id) {
                Some((path, bytes)) => (
                    200,
                    json!({"ok": true, "result": {"file_id": file_id, "file_unique_id": format!("u{file_id}"),
                                                  "file_size": bytes.len(), "file_path": path}}),
                ),
                None => (
                    400,
                    json!({"ok": false, "error_code": 400, "description": "Bad Request: invalid file_id"}),
                ),
            }
        }
        "getMe" => (
            200,
            json!({"ok": true, "result": {"id": BOT_ID, "is_bot": true, "first_name": "Herald", "username": BOT_USERNAME}}),
        ),
        "setMyCommands" => {
            state.commands = body.get("commands").cloned();
            (200, json!({"ok": true, "result": true}))
        }
        "sendChatAction" => {
            state.chat_actions += 1;
            (200, json!({"ok": true, "result": true}))
        }
        _ => (
            404,
            json!({"ok": false, "error_code": 404, "description": "Not Found: method not found"}),
        ),
    }
}

/// How long until a message to `chat` would be within the limits, if it is not now.
fn over_limit(state: &mut State, chat: i64) -> Option<Duration> {
    let (per_second, chat_gap) = state.limits?;
    let now = Instant::now();
    while state
        .window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
    {
        state.window.pop_front();
    }
    let overall = (state.window.len() >= per_second)
        .then(|| {
            state
                .window
                .front()
                .map(|t| (*t + Duration::from_secs(1)).saturating_duration_since(now))
        })
        .flatten();
    let own = state
        .last_to_chat
        .iter()
        .find(|(c, _)| *c == chat)
        .map(|(_, last)| (*last + chat_gap).saturating_duration_since(now))
        .filter(|d| !d.is_zero());
    overall.max(own)
}
