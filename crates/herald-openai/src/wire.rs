//! The chat-completions wire format: the request body, the answer (whole or streamed chunks), and the
//! message inside an error body. Pure functions over bytes and strings; nothing here does I/O.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The longest error message kept from a server, in characters.
const MAX_ERROR_CHARS: usize = 300;

/// `POST /chat/completions` body.
#[derive(Debug, Serialize)]
pub struct ChatRequest<'a> {
    pub model: &'a str,
    pub messages: Vec<ChatMessage<'a>>,
    pub stream: bool,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ChatMessage<'a> {
    pub role: &'static str,
    pub content: Content<'a>,
}

/// A message's content: text, or (a user message with pictures) text and image parts.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Content<'a> {
    Text(&'a str),
    Parts(Vec<Part<'a>>),
}

/// One part of a multi-part content (the vision format).
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part<'a> {
    Text { text: &'a str },
    ImageUrl { image_url: ImageUrl<'a> },
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ImageUrl<'a> {
    /// A `data:` URL with the image inline (the file is on this machine, not on the web).
    pub url: &'a str,
}

/// Why an answer could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The server sent an error object (in a 200 answer or inside a stream).
    #[error("the server reported an error: {0}")]
    Server(String),
    #[error("malformed answer: {0}")]
    Malformed(String),
}

/// One streamed chunk, reduced to what a text answer needs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Delta {
    pub content: Option<String>,
    pub finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    delta: Option<Message>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    /// A string normally; `null` with tool calls; an array of parts from a few servers.
    #[serde(default)]
    content: Option<Value>,
}

/// The text of a non-streamed answer: `choices[0].message.content`, and its `finish_reason`.
pub fn parse_completion(body: &[u8]) -> Result<(String, Option<String>), WireError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| WireError::Malformed(format!("the body is not JSON ({e})")))?;
    if let Some(message) = server_error(&value) {
        return Err(WireError::Server(message));
    }
    let completion: Completion = serde_json::from_value(value)
        .map_err(|e| WireError::Malformed(format!("unexpected JSON shape ({e})")))?;
    let choice = completion
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| WireError::Malformed("no choices".into()))?;
    let message = choice
        .message
        .ok_or_else(|| WireError::Malformed("choices[0] has no message".into()))?;
    Ok((
        content_text(message.content).unwrap_or_default(),
        choice.finish_reason,
    ))
}

/// One `data:` payload of a stream (not `[DONE]`): `choices[0].delta.content` and `finish_reason`.
/// A chunk without choices (a usage chunk) is an empty delta.
pub fn parse_chunk(data: &str) -> Result<Delta, WireError> {
    let value: Value = serde_json::from_str(data)
        .map_err(|e| WireError::Malformed(format!("a stream chunk is not JSON ({e})")))?;
    if let Some(message) = server_error(&value) {
        return Err(WireError::Server(message));
    }
    let completion: Completion = serde_json::from_value(value)
        .map_err(|e| WireError::Malformed(format!("unexpected stream chunk shape ({e})")))?;
    let Some(choice) = completion.choices.into_iter().next() else {
        return Ok(Delta::default());
    };
    Ok(Delta {
        content: choice.delta.and_then(|d| content_text(d.content)),
        finish_reason: choice.finish_reason,
    })
}

/// A string, or the `text` of every part of an array of content parts.
fn content_text(content: Option<Value>) -> Option<String> {
    match content? {
        Value::String(text) => Some(text),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .concat(),
        ),
        _ => None,
    }
}

/// The message of an `{"error": ...}` object in an otherwise successful answer.
fn server_error(value: &Value) -> Option<String> {
    let error = value.get("error").filter(|e| !e.is_null())?;
    Some(json_error_message(value).unwrap_or_else(|| clean(&error.to_string())))
}

/// The human-readable message of an error body, as short single-line text: OpenAI's
/// `{"error":{"message":..}}` first, then the shapes other servers use (`{"message":..}`,
/// `{"error":".."}`, `{"detail":..}`), else the body itself when it is short text. `None` for an
/// empty body or one that is not text.
pub fn error_message(body: &[u8]) -> Option<String> {
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        return json_error_message(&value);
    }
    let text = std::str::from_utf8(body).ok()?;
    let text = clean(text);
    (!text.is_empty()).then_some(text)
}

fn json_error_message(value: &Value) -> Option<String> {
    let error = value.get("error");
    let candidates = [
        error.and_then(|e| e.get("message")),
        value.get("message"),
        error,
        value.get("detail").and_then(|d| d.get("message").or(Some(d))),
    ];
    candidates
        .into_iter()
        .flatten()
        .find_map(Value::as_str)
        .map(clean)
        .filter(|m| !m.is_empty())
}

/// Whitespace runs (newlines included) become one space, control characters go, and the text is cut
/// to [`MAX_ERROR_CHARS`] characters.
fn clean(text: &str) -> String {
    let mut out = String::new();
    for (i, word) in text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .enumerate()
    {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
    match out.char_indices().nth(MAX_ERROR_CHARS) {
        Some((cut, _)) => format!("{}…", &out[..cut]),
        None => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn request_body_shape() {
        let request = ChatRequest {
            model: "m",
            messages: vec![
                ChatMessage {
                    role: "system",
                    content: Content::Text("s"),
                },
                ChatMessage {
                    role: "user",
                    content: Content::Parts(vec![
                        Part::Text { text: "u" },
                        Part::ImageUrl {
                            image_url: ImageUrl {
                                url: "data:image/png;base64,AA==",
                            },
                        },
                    ]),
                },
            ],
            stream: true,
        };
        assert_eq!(
            serde_json::to_string(&request).unwrap_or_default(),
            r#"{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"u"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AA=="}}]}],"stream":true}"#
        );
    }

    #[test]
    fn completion_content() {
        let body = br#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}]}"#;
        assert_eq!(parse_completion(body), Ok(("Hi".into(), Some("stop".into()))));
        let parts = br#"{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}}]}"#;
        assert_eq!(parse_completion(parts), Ok(("ab".into(), None)));
        let tool =
            br#"{"choices":[{"message":{"content":null,"tool_calls":[]},"finish_reason":"tool_calls"}]}"#;
        assert_eq!(
            parse_completion(tool),
            Ok((String::new(), Some("tool_calls".into())))
        );
    }

    #[test]
    fn malformed_completions() {
        for body in [
            &b""[..],
            b"not json",
            b"[]",
            b"{}",
            br#"{"choices":[]}"#,
            br#"{"choices":[{}]}"#,
            br#"{"choices":7}"#,
        ] {
            assert!(
                matches!(parse_completion(body), Err(WireError::Malformed(_))),
                "{body:?}"
            );
        }
        assert_eq!(
            parse_completion(br#"{"error":{"message":"quota exceeded","type":"x"}}"#),
            Err(WireError::Server("quota exceeded".into()))
        );
    }

    #[test]
    fn chunks() {
        let chunk =
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"He"},"finish_reason":null}]}"#;
        assert_eq!(
            parse_chunk(chunk),
            Ok(Delta {
                content: Some("He".into()),
                finish_reason: None
            })
        );
        let last = r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#;
        assert_eq!(
            parse_chunk(last),
            Ok(Delta {
                content: None,
                finish_reason: Some("stop".into())
            })
        );
        assert_eq!(
            parse_chunk(r#"{"choices":[],"usage":{"total_tokens":3}}"#),
            Ok(Delta::default())
        );
        assert_eq!(
            parse_chunk(r#"{"error":{"message":"boom","code":500}}"#),
            Err(WireError::Server("boom".into()))
        );
        assert!(matches!(parse_chunk("{"), Err(WireError::Malformed(_))));
    }

    #[test]
    fn error_messages_of_common_servers() {
        let cases: [(&[u8], Option<&str>); 9] = [
            (
                br#"{"error":{"message":"Incorrect API key provided.","type":"invalid_request_error"}}"#,
                Some("Incorrect API key provided."),
            ),
            (
                br#"{"error":"Not Found","message":"Cannot POST /x"}"#,
                Some("Cannot POST /x"),
            ),
            (br#"{"error":"model not loaded"}"#, Some("model not loaded")),
            (br#"{"detail":"Not authenticated"}"#, Some("Not authenticated")),
            (br#"{"error":{"code":1}}"#, None),
            (b"upstream  connect\nerror", Some("upstream connect error")),
            (b"", None),
            (b"   ", None),
            (b"\xff\xfe", None),
        ];
        for (body, expected) in cases {
            assert_eq!(error_message(body).as_deref(), expected, "{body:?}");
        }
    }

    #[test]
    fn long_error_messages_are_cut() {
        let body = format!(r#"{{"error":{{"message":"{}"}}}}"#, "é".repeat(1000));
        let message = error_message(body.as_bytes()).unwrap_or_default();
        assert_eq!(message.chars().count(), MAX_ERROR_CHARS + 1);
        assert!(message.ends_with('…'));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_completion(&body);
            let _ = parse_chunk(&String::from_utf8_lossy(&body));
            if let Some(message) = error_message(&body) {
                prop_assert!(!message.contains('\n') && message.chars().count() <= MAX_ERROR_CHARS + 1);
            }
        }
    }
}
