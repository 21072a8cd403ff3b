//! Files in chat messages: which file a message carries ([`incoming`], pure) and getting it into the
//! home's media store ([`fetch`]) before the message becomes a turn.
//!
//! **Invariant:** a file is downloaded once per stored name (`herald_home::media`: the name is Telegram's
//! `file_unique_id`), so an update handed over again after a crash does not download it again; a file over
//! the limit is never downloaded (the size Telegram states is checked first, and the download itself is
//! cut at the limit, whatever the server said).

use herald_gateway::agent::Attachment;
use herald_home::Home;
use serde_json::Value;

use crate::api::{ApiError, BotApi};

/// A file a message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Incoming {
    pub kind: &'static str,
    pub file_id: String,
    pub unique_id: String,
    pub size: Option<u64>,
    pub mime: String,
    pub name: Option<String>,
}

/// What fetching a file came to.
#[derive(Debug)]
pub(crate) enum Fetched {
    Stored(Attachment),
    /// Over the limit (bytes): not downloaded.
    TooBig {
        size: u64,
        max: u64,
    },
    Failed(ApiError),
    /// The media store refused it (a full disk, an unsafe folder).
    NotStored(String),
}

/// The file `message` carries, if any: the largest photo size within `max` bytes, a document, a voice
/// note, an audio file or a video.
pub(crate) fn incoming(message: &Value, max: u64) -> Option<Incoming> {
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    if let Some(sizes) = message.get("photo").and_then(Value::as_array) {
        let size_of = |p: &Value| p.get("file_size").and_then(Value::as_u64);
        let area = |p: &Value| {
            p.get("width").and_then(Value::as_u64).unwrap_or(0)
                * p.get("height").and_then(Value::as_u64).unwrap_or(0)
        };
        let fitting = sizes
            .iter()
            .filter(|p| size_of(p).is_none_or(|s| s <= max))
            .max_by_key(|p| area(p));
        let chosen = fitting.or_else(|| sizes.iter().min_by_key(|p| size_of(p)))?;
        return Some(Incoming {
            kind: "photo",
            file_id: text(chosen, "file_id")?,
            unique_id: text(chosen, "file_unique_id")?,
            size: size_of(chosen),
            mime: "image/jpeg".into(),
            name: None,
        });
    }
    for (key, kind, default_mime) in [
        ("document", "document", "application/octet-stream"),
        ("voice", "voice", "audio/ogg"),
        ("audio", "audio", "audio/mpeg"),
        ("video", "video", "video/mp4"),
    ] {
        if let Some(file) = message.get(key) {
            return Some(Incoming {
                kind,
                file_id: text(file, "file_id")?,
                unique_id: text(file, "file_unique_id")?,
                size: file.get("file_size").and_then(Value::as_u64),
                mime: text(file, "mime_type").unwrap_or_else(|| default_mime.to_owned()),
                name: text(file, "file_name"),
            });
        }
    }
    None
}

/// Gets `file` into the media store (unless a stored copy is there already) and describes it.
pub(crate) async fn fetch(api: &BotApi, home: &Home, chat: &str, file: &Incoming, max: u64) -> Fetched {
    if let Some(size) = file.size.filter(|s| *s > max) {
        return Fetched::TooBig { size, max };
    }
    let (file_path, stated) = match api.get_file(&file.file_id).await {
        Ok(found) => found,
        Err(e) => return Fetched::Failed(e),
    };
    let size = file.size.or(stated);
    if let Some(size) = size.filter(|s| *s > max) {
        return Fetched::TooBig { size, max };
    }
    let extension = extension_of(file.name.as_deref(), &file_path);
    let path = herald_home::media::path_for(home, crate::ADAPTER, chat, &file.unique_id, &extension);
    let attachment = |size: u64| Attachment {
        kind: file.kind.to_owned(),
        path: path.display().to_string(),
        mime: file.mime.clone(),
        name: file.name.clone(),
        size,
    };
    if herald_home::media::is_stored(&path, size) {
        let stored = std::fs::metadata(&path).map(|m| m.len()).unwrap_or_default();
        return Fetched::Stored(attachment(stored));
    }
    let bytes = match api.download(&file_path, max).await {
        Ok(bytes) => bytes,
        Err(ApiError::Rejected { status: 413, .. }) => {
            return Fetched::TooBig {
                size: size.unwrap_or(max + 1),
                max,
            };
        }
        Err(e) => return Fetched::Failed(e),
    };
    // Storing blocks on the disk: not on the runtime's threads.
    let (home, at) = (home.clone(), path.clone());
    let length = bytes.len() as u64;
    let stored = tokio::task::spawn_blocking(move || herald_home::media::store(&home, &at, &bytes)).await;
    match stored {
        Ok(Ok(())) => Fetched::Stored(attachment(length)),
        Ok(Err(e)) => Fetched::NotStored(e.to_string()),
        Err(e) => Fetched::NotStored(e.to_string()),
    }
}

/// The extension to store a file under: its own name's, else the server path's.
fn extension_of(name: Option<&str>, file_path: &str) -> String {
    let of = |text: &str| {
        text.rsplit_once('.')
            .map(|(_, ext)| ext.to_ascii_lowercase())
            .filter(|ext| !ext.is_empty() && ext.len() <= 10 && !ext.contains('/'))
    };
    name.and_then(of).or_else(|| of(file_path)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_largest_photo_within_the_limit_is_taken() {
        let message = json!({"photo": [
            {"file_id": "s", "file_unique_id": "us", "width": 90, "height": 90, "file_size": 1_000},
            {"file_id": "m", "file_unique_id": "um", "width": 800, "height": 800, "file_size": 50_000},
            {"file_id": "l", "file_unique_id": "ul", "width": 2560, "height": 2560, "file_size": 900_000},
        ], "caption": "look"});
        assert_eq!(incoming(&message, 100_000).unwrap().file_id, "m");
        assert_eq!(incoming(&message, 10_000_000).unwrap().file_id, "l");
        let tiny = incoming(&message, 10).unwrap();
        assert_eq!(
            (tiny.file_id.as_str(), tiny.size),
            ("s", Some(1_000)),
            "the smallest, to refuse"
        );
    }

    #[test]
    fn documents_and_voice_notes_keep_their_type_and_name() {
        let doc = json!({"document": {"file_id": "d", "file_unique_id": "ud", "file_name": "Report.PDF",
                                      "mime_type": "application/pdf", "file_size": 10}});
        let found = incoming(&doc, 100).unwrap();
        assert_eq!(
            (found.kind, found.mime.as_str(), found.name.as_deref()),
            ("document", "application/pdf", Some("Report.PDF"))
        );
        let voice = json!({"voice": {"file_id": "v", "file_unique_id": "uv", "duration": 3}});
        let found = incoming(&voice, 100).unwrap();
        assert_eq!((found.kind, found.mime.as_str()), ("voice", "audio/ogg"));
        assert_eq!(incoming(&json!({"text": "hi"}), 100), None);
        assert_eq!(extension_of(Some("Report.PDF"), "documents/file_3"), "pdf");
        assert_eq!(extension_of(None, "voice/file_9.oga"), "oga");
        assert_eq!(extension_of(None, "photos/noext"), "");
    }
}
