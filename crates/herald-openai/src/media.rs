//! Files that came with a message, made into what a chat-completions endpoint takes: pictures as image
//! parts (`data:` URLs, the vision format), voice notes as their transcript when there is one (see
//! [`crate::transcribe`]), every other file as a line of the message naming it.
//!
//! **Invariant:** a file that cannot be read never fails the turn: the message says the file could not be
//! read instead, and the agent answers what it has. Pictures over [`MAX_IMAGE_BYTES`] are named, not sent
//! (an endpoint refuses the whole request over its limit).

use base64::Engine as _;
use herald_gateway::agent::{Attachment, TurnRequest};

/// The largest picture sent inline (most endpoints take 20 MB a request).
pub const MAX_IMAGE_BYTES: u64 = 15 << 20;

/// The user's text (with a line per file that is not sent as a picture) and the pictures as `data:` URLs.
/// `transcripts` holds, by attachment, what a voice note said or why it could not be transcribed.
pub(crate) async fn prepare(
    request: &TurnRequest,
    transcripts: &[Option<Result<String, String>>],
) -> (String, Vec<String>) {
    let mut text = request.message.clone();
    let mut images = Vec::new();
    for (index, attachment) in request.attachments.iter().enumerate() {
        match transcripts.get(index).and_then(Option::as_ref) {
            Some(Ok(heard)) if text.trim().is_empty() => {
                // A voice note alone: what it said is the message.
                heard.clone_into(&mut text);
                continue;
            }
            Some(Ok(heard)) => {
                text.push_str(&format!("\n[{} message, transcribed: {heard}]", attachment.kind));
                continue;
            }
            Some(Err(why)) => {
                note(&mut text, attachment, &format!("could not be transcribed: {why}"));
                continue;
            }
            None => {}
        }
        let picture = attachment.mime.starts_with("image/") && attachment.size <= MAX_IMAGE_BYTES;
        if picture {
            let path = attachment.path.clone();
            let read = tokio::task::spawn_blocking(move || std::fs::read(path))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            match read {
                Ok(bytes) => {
                    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
                    images.push(format!("data:{};base64,{encoded}", attachment.mime));
                    continue;
                }
                Err(e) => {
                    tracing::warn!(path = %attachment.path, "cannot read an attached picture: {e}");
                    note(&mut text, attachment, "could not be read");
                    continue;
                }
            }
        }
        note(&mut text, attachment, &format!("stored at {}", attachment.path));
    }
    (text, images)
}

fn note(text: &mut String, attachment: &Attachment, what: &str) {
    if !text.is_empty() {
        text.push('\n');
    }
    let name = attachment.name.as_deref().unwrap_or(&attachment.kind);
    text.push_str(&format!(
        "[attached {}: {name} ({}, {} bytes) — {what}]",
        attachment.kind, attachment.mime, attachment.size
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(attachments: Vec<Attachment>) -> TurnRequest {
        TurnRequest {
            adapter: "telegram".into(),
            chat_id: "1".into(),
            turn_id: 1,
            turn: 1,
            message: "look".into(),
            history: Vec::new(),
            attachments,
        }
    }

    #[tokio::test]
    async fn pictures_go_inline_and_other_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let picture = dir.path().join("p.png");
        std::fs::write(&picture, b"\x89PNG").unwrap();
        let (text, images) = prepare(
            &request(vec![
                Attachment {
                    kind: "photo".into(),
                    path: picture.display().to_string(),
                    mime: "image/png".into(),
                    name: None,
                    size: 4,
                },
                Attachment {
                    kind: "document".into(),
                    path: "/nowhere/report.pdf".into(),
                    mime: "application/pdf".into(),
                    name: Some("report.pdf".into()),
                    size: 9,
                },
                Attachment {
                    kind: "photo".into(),
                    path: "/nowhere/gone.png".into(),
                    mime: "image/png".into(),
                    name: None,
                    size: 9,
                },
            ]),
            &[],
        )
        .await;
        assert_eq!(images, ["data:image/png;base64,iVBORw=="]);
        assert!(
            text.starts_with("look\n[attached document: report.pdf (application/pdf, 9 bytes)"),
            "{text}"
        );
        assert!(text.contains("could not be read"), "{text}");
    }

    #[tokio::test]
    async fn a_transcript_is_the_message_or_a_line_of_it() {
        let voice = Attachment {
            kind: "voice".into(),
            path: "/nowhere/v.ogg".into(),
            mime: "audio/ogg".into(),
            name: None,
            size: 9,
        };
        let mut alone = request(vec![voice.clone()]);
        alone.message = String::new();
        let heard = [Some(Ok("turn on the lights".to_owned()))];
        assert_eq!(prepare(&alone, &heard).await.0, "turn on the lights");
        let (text, _) = prepare(&request(vec![voice.clone()]), &heard).await;
        assert_eq!(text, "look\n[voice message, transcribed: turn on the lights]");
        let failed = [Some(Err("HTTP 404".to_owned()))];
        let (text, _) = prepare(&request(vec![voice]), &failed).await;
        assert!(text.contains("could not be transcribed: HTTP 404"), "{text}");
    }
}
