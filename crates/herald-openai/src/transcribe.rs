//! Voice notes and audio made into text before a turn, with `POST …/audio/transcriptions` on the same
//! server as the chat endpoint (OpenAI's Whisper API; llama.cpp's, LocalAI's and vLLM's servers speak it
//! too), when `[agent.openai] transcribe_model` is set.
//!
//! **Invariant:** a transcription never fails its turn and never outlives it. Each file gets one attempt,
//! under the turn's own deadline; whatever goes wrong (no such endpoint, a refused file, a timeout) comes
//! back as a reason, and the model is told the voice note could not be transcribed and why — it still
//! answers the rest of the message. The API key travels only in the `Authorization` header, as for chat.

use std::time::Duration;

use herald_gateway::agent::Attachment;
use reqwest::Url;
use reqwest::header::{self, HeaderValue};
use tokio::time::Instant;

/// The most bytes of a transcription answer read (a long voice note is a few kilobytes of text).
const MAX_TRANSCRIPT_BYTES: usize = 1 << 20;

/// Whether an attachment is something to transcribe.
pub(crate) fn is_audio(attachment: &Attachment) -> bool {
    matches!(attachment.kind.as_str(), "voice" | "audio") || attachment.mime.starts_with("audio/")
}

/// The transcription endpoint beside a chat-completions endpoint (`…/v1/chat/completions` →
/// `…/v1/audio/transcriptions`).
pub(crate) fn endpoint(chat: &Url) -> Url {
    let mut url = chat.clone();
    let path = chat.path();
    let base = path.strip_suffix("/chat/completions").unwrap_or(path);
    url.set_path(&format!("{}/audio/transcriptions", base.trim_end_matches('/')));
    url
}

/// How to reach the transcription endpoint.
#[derive(Debug)]
pub(crate) struct Transcriber<'a> {
    pub client: &'a reqwest::Client,
    pub url: &'a Url,
    /// The URL as errors show it (no credentials).
    pub shown_url: &'a str,
    pub authorization: Option<&'a HeaderValue>,
    pub model: &'a str,
}

impl Transcriber<'_> {
    /// The text of one voice note or audio file, or why there is none. Bounded by `deadline`.
    pub async fn transcribe(&self, attachment: &Attachment, deadline: Instant) -> Result<String, String> {
        match tokio::time::timeout_at(deadline, self.request(attachment)).await {
            Ok(result) => result,
            Err(_elapsed) => Err("no answer within the turn's time".to_owned()),
        }
    }

    async fn request(&self, attachment: &Attachment) -> Result<String, String> {
        let path = attachment.path.clone();
        let bytes = tokio::task::spawn_blocking(move || std::fs::read(path))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            .map_err(|e| format!("the file cannot be read ({e})"))?;
        let name = attachment
            .name
            .clone()
            .unwrap_or_else(|| default_name(&attachment.mime).to_owned());
        let plausible =
            attachment.mime.contains('/') && attachment.mime.chars().all(|c| c.is_ascii_graphic());
        let mime = if plausible {
            attachment.mime.as_str()
        } else {
            "application/octet-stream"
        };
        let file = reqwest::multipart::Part::bytes(bytes)
            .file_name(name)
            .mime_str(mime)
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let form = reqwest::multipart::Form::new()
            .text("model", self.model.to_owned())
            .text("response_format", "json")
            .part("file", file);
        let mut post = self
            .client
            .post(self.url.clone())
            .header(header::ACCEPT, "application/json")
            .multipart(form);
        if let Some(authorization) = self.authorization {
            post = post.header(header::AUTHORIZATION, authorization.clone());
        }
        let mut response = post
            .send()
            .await
            .map_err(|e| format!("cannot reach {}: {}", self.shown_url, crate::root_cause(&e)))?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            format!(
                "the answer from {} was cut off: {}",
                self.shown_url,
                crate::root_cause(&e)
            )
        })? {
            if body.len() + chunk.len() > MAX_TRANSCRIPT_BYTES {
                return Err(format!("the answer from {} is too large", self.shown_url));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let detail = crate::wire::error_message(&body)
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            return Err(format!(
                "HTTP {} from {}{detail}",
                status.as_u16(),
                self.shown_url
            ));
        }
        let text = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("text").and_then(|t| t.as_str()).map(str::to_owned))
            .ok_or_else(|| format!("{} answered without a `text`", self.shown_url))?;
        let text = text.trim().to_owned();
        if text.is_empty() {
            Err("nothing was heard".to_owned())
        } else {
            Ok(text)
        }
    }
}

/// A file name the endpoint recognises the format by, for a file that came without one (Telegram's
/// voice notes are OGG/Opus).
fn default_name(mime: &str) -> &'static str {
    match mime {
        "audio/ogg" | "audio/opus" => "voice.ogg",
        "audio/mpeg" | "audio/mp3" => "audio.mp3",
        "audio/mp4" | "audio/m4a" | "audio/x-m4a" => "audio.m4a",
        "audio/wav" | "audio/x-wav" => "audio.wav",
        "audio/webm" => "audio.webm",
        "audio/flac" => "audio.flac",
        _ => "voice.ogg",
    }
}

/// How long a turn gives its transcriptions at most, of what remains of its budget: the answer needs
/// the rest.
pub(crate) fn share_of(remaining: Duration) -> Duration {
    remaining.mul_f64(0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_sits_beside_chat_completions() {
        let chat = Url::parse("http://127.0.0.1:8080/v1/chat/completions").unwrap();
        assert_eq!(
            endpoint(&chat).as_str(),
            "http://127.0.0.1:8080/v1/audio/transcriptions"
        );
        let odd = Url::parse("https://h/api/openai/chat/completions?x=1").unwrap();
        assert_eq!(
            endpoint(&odd).as_str(),
            "https://h/api/openai/audio/transcriptions?x=1"
        );
    }

    #[test]
    fn audio_is_recognised_by_kind_or_type() {
        let file = |kind: &str, mime: &str| Attachment {
            kind: kind.into(),
            path: "/x".into(),
            mime: mime.into(),
            name: None,
            size: 1,
        };
        assert!(is_audio(&file("voice", "audio/ogg")));
        assert!(is_audio(&file("audio", "application/octet-stream")));
        assert!(is_audio(&file("document", "audio/mpeg")));
        assert!(!is_audio(&file("photo", "image/jpeg")));
        assert_eq!(default_name("audio/ogg"), "voice.ogg");
        assert_eq!(default_name("audio/mpeg"), "audio.mp3");
    }
}
