//! hyper's own error responses, given the JSON bodies every other error of the API has.
//!
//! When a request cannot be parsed — a malformed request line or header, a target or a head too large —
//! hyper answers by itself (`400`, `414` or `431`, with an empty body and `connection: close`) before any
//! service sees a request, and offers no hook to shape that answer. A client of this API is promised a
//! JSON error body on every 4xx, so the connection's writes pass through [`JsonParseErrors`], which
//! recognises those responses and rewrites them to carry one.
//!
//! **Invariant:** only hyper's parse-error responses are rewritten. They are recognised by status *and*
//! an empty body: every response the router writes for these statuses carries a JSON body (see
//! `http::error`), so it can never match. Any other write passes through untouched, byte for byte.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The statuses hyper answers parse errors with, and the JSON body each gets.
const REWRITES: [(&[u8], &str); 3] = [
    (
        b"400 ",
        r#"{"error":"bad_request","message":"the request is not valid HTTP/1.1"}"#,
    ),
    (
        b"414 ",
        r#"{"error":"uri_too_long","message":"the request target is too long"}"#,
    ),
    (
        b"431 ",
        r#"{"error":"header_too_large","message":"the request head (request line and headers) is too large"}"#,
    ),
];

/// A connection's stream, whose writes of hyper's parse-error responses get a JSON body.
#[derive(Debug)]
pub(super) struct JsonParseErrors<S> {
    inner: S,
    /// A rewritten response not yet fully written (written before anything else).
    pending: Vec<u8>,
}

impl<S> JsonParseErrors<S> {
    pub(super) fn new(inner: S) -> JsonParseErrors<S> {
        JsonParseErrors {
            inner,
            pending: Vec::new(),
        }
    }
}

/// The JSON body for a write that starts with the status line of one of hyper's parse-error statuses.
/// Cheap: every response goes through it, and only these few are looked at further.
fn candidate(start: &[u8]) -> Option<&'static str> {
    let status = start.strip_prefix(b"HTTP/1.")?.get(2..)?;
    REWRITES
        .iter()
        .find(|(code, _)| status.starts_with(code))
        .map(|(_, body)| *body)
}

/// The response `head` (a whole write starting with a status line) with a JSON body, when it is one of
/// hyper's parse-error responses.
fn rewrite(head: &[u8]) -> Option<Vec<u8>> {
    let body = candidate(head)?;
    let end = find(head, b"\r\n\r\n")? + 2;
    let (fields, rest) = head.split_at(end);
    let lower = fields.to_ascii_lowercase();
    if find(&lower, b"\r\ncontent-length: 0\r\n").is_none() || find(&lower, b"\r\ncontent-type:").is_some() {
        return None;
    }
    let at = find(&lower, b"\r\ncontent-length: 0\r\n")? + 2;
    let mut out = Vec::with_capacity(head.len() + body.len() + 48);
    out.extend_from_slice(&fields[..at]);
    out.extend_from_slice(
        format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&fields[at + "content-length: 0\r\n".len()..]);
    out.extend_from_slice(rest);
    out.extend_from_slice(body.as_bytes());
    Some(out)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl<S: AsyncWrite + Unpin> JsonParseErrors<S> {
    /// Writes what is pending; ready once nothing is.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.pending) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.pending.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Takes `bytes` (all of them) as a rewritten response to write, when it is one.
    fn take_rewritten(
        &mut self,
        cx: &mut Context<'_>,
        bytes: &[u8],
        consumed: usize,
    ) -> Option<Poll<io::Result<usize>>> {
        let rewritten = rewrite(bytes)?;
        self.pending = rewritten;
        Some(match self.poll_pending(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            // The rest goes out with the next write or flush: hyper flushes before it closes.
            Poll::Ready(Ok(())) | Poll::Pending => Poll::Ready(Ok(consumed)),
        })
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonParseErrors<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonParseErrors<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.poll_pending(cx)?.is_pending() {
            return Poll::Pending;
        }
        if candidate(buf).is_some()
            && let Some(done) = this.take_rewritten(cx, buf, buf.len())
        {
            return done;
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.poll_pending(cx)?.is_pending() {
            return Poll::Pending;
        }
        // A parse-error response has no body: its head is the first (and only) non-empty slice.
        if let Some(first) = bufs.iter().find(|b| !b.is_empty())
            && candidate(first).is_some()
        {
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            if let Some(done) = this.take_rewritten(cx, &all, all.len()) {
                return done;
            }
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_pending(cx)?.is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_pending(cx)?.is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYPER_431: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n\
                               content-length: 0\r\ndate: Thu, 26 Nov 2026 15:39:45 GMT\r\n\r\n";

    #[test]
    fn hypers_empty_parse_errors_get_a_json_body() {
        for (head, code) in [
            (HYPER_431.to_vec(), "header_too_large"),
            (
                String::from_utf8_lossy(HYPER_431)
                    .replace("431 Request Header Fields Too Large", "400 Bad Request")
                    .into_bytes(),
                "bad_request",
            ),
            (
                String::from_utf8_lossy(HYPER_431)
                    .replace("431 Request Header Fields Too Large", "414 URI Too Long")
                    .into_bytes(),
                "uri_too_long",
            ),
        ] {
            let out = String::from_utf8(rewrite(&head).expect("rewritten")).unwrap();
            let (fields, body) = out.split_once("\r\n\r\n").unwrap();
            let json: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(json["error"], code, "{out}");
            assert!(fields.contains("\r\ncontent-type: application/json\r\n"), "{out}");
            assert!(
                fields.contains(&format!("\r\ncontent-length: {}\r\n", body.len())),
                "{out}"
            );
            assert!(fields.contains("\r\nconnection: close\r\n"), "{out}");
            assert!(!fields.contains("content-length: 0"), "{out}");
        }
    }

    #[test]
    fn every_other_write_passes_untouched() {
        for other in [
            // The router's own errors have bodies already.
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 40\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            // A body chunk that happens to look like a status line, without a head's end.
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
            b"{\"text\": \"HTTP/1.1 400 \"}",
            b"",
        ] {
            assert_eq!(rewrite(other), None, "{}", String::from_utf8_lossy(other));
        }
    }

    #[tokio::test]
    async fn a_rewritten_response_is_written_whole_even_through_short_writes() {
        use tokio::io::AsyncWriteExt;
        let (client, server) = tokio::io::duplex(16);
        let mut stream = JsonParseErrors::new(server);
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut client = client;
            let mut all = Vec::new();
            client.read_to_end(&mut all).await.unwrap();
            all
        });
        stream.write_all(HYPER_431).await.unwrap();
        stream.flush().await.unwrap();
        stream.shutdown().await.unwrap();
        drop(stream);
        let all = String::from_utf8(reader.await.unwrap()).unwrap();
        assert!(all.ends_with(r#"is too large"}"#), "{all}");
        assert!(all.starts_with("HTTP/1.1 431 "), "{all}");
    }
}
