//! A server-sent events parser that is fed bytes as they arrive.
//!
//! It follows the WHATWG event-stream rules: lines end with CRLF, LF or CR (a CRLF split across two
//! chunks still counts once); a line starting with `:` is a comment (servers send them as keep-alives);
//! `field: value` lines build an event and an empty line dispatches it; a `data` field may repeat, its
//! values joined with `\n`; a leading byte-order mark is skipped. Lines are split on bytes and decoded
//! only whole, so a UTF-8 character split across chunks arrives intact.
//!
//! The one departure from the spec is [`SseParser::finish`]: at the end of the stream it dispatches an
//! event whose blank line never came, because some servers end with `data: [DONE]` and no blank line.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event` field, when one was given (`message` is the spec's default).
    pub event: Option<String>,
    /// The `data` fields, joined with `\n`.
    pub data: String,
}

/// Incremental parser: [`push`](SseParser::push) each chunk, then [`finish`](SseParser::finish).
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the line not yet ended.
    line: Vec<u8>,
    /// The last chunk ended with CR, so an LF that starts the next one belongs to it.
    after_cr: bool,
    /// Whether the first line has begun (a byte-order mark is skipped only there).
    started: bool,
    event: Option<String>,
    data: String,
    /// At least one `data` field was seen for the pending event.
    has_data: bool,
}

impl SseParser {
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Feeds one chunk and returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        let mut rest = chunk;
        if !self.started && !rest.is_empty() {
            // The BOM may itself be split across chunks; wait for three bytes before deciding.
            self.line.extend_from_slice(rest);
            if self.line.len() < 3 && b"\xEF\xBB\xBF".starts_with(&self.line) {
                return events;
            }
            self.started = true;
            let buffered = std::mem::take(&mut self.line);
            let buffered = buffered.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&buffered);
            self.scan(buffered, &mut events);
            return events;
        }
        if self.after_cr {
            self.after_cr = false;
            if let Some(stripped) = rest.strip_prefix(b"\n") {
                rest = stripped;
            }
        }
        self.scan(rest, &mut events);
        events
    }

    /// Ends the stream: a last line without its line end is taken as a line, and an event still
    /// pending is dispatched.
    pub fn finish(mut self) -> Option<SseEvent> {
        let mut events = Vec::new();
        if !self.started {
            let buffered = std::mem::take(&mut self.line);
            let buffered = buffered.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&buffered);
            self.scan(buffered, &mut events);
        }
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, &mut events);
        }
        self.line_done(b"", &mut events);
        events.pop()
    }

    fn scan(&mut self, mut bytes: &[u8], events: &mut Vec<SseEvent>) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
            let ending = bytes[end];
            if self.line.is_empty() {
                self.line_done(&bytes[..end], events);
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(&bytes[..end]);
                self.line_done(&line, events);
                line.clear();
                self.line = line;
            }
            bytes = &bytes[end + 1..];
            if ending == b'\r' {
                match bytes.first() {
                    Some(b'\n') => bytes = &bytes[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        self.line.extend_from_slice(bytes);
    }

    fn line_done(&mut self, line: &[u8], events: &mut Vec<SseEvent>) {
        if line.is_empty() {
            let event = self.event.take();
            if std::mem::take(&mut self.has_data) {
                let data = std::mem::take(&mut self.data);
                events.push(SseEvent { event, data });
            }
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&String::from_utf8_lossy(value));
                self.has_data = true;
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            // `id` and `retry` serve reconnection, which a one-shot completion does not do.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_chunks(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        for chunk in chunks {
            events.extend(parser.push(chunk));
        }
        events.extend(parser.finish());
        events
    }

    fn data(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn parses_openai_style_stream() {
        let stream = b"data: {\"a\":1}\n\ndata: {\"a\":2}\n\ndata: [DONE]\n\n";
        assert_eq!(
            data(&parse_chunks(&[stream])),
            ["{\"a\":1}", "{\"a\":2}", "[DONE]"]
        );
    }

    #[test]
    fn comments_keepalives_and_unknown_fields_are_ignored() {
        let stream = b": keep-alive\n\n:\nid: 7\nretry: 100\nfoo\ndata: x\n\n: ping\n\n";
        assert_eq!(data(&parse_chunks(&[stream])), ["x"]);
    }

    #[test]
    fn all_line_endings_are_accepted() {
        for stream in [
            &b"data: a\r\n\r\ndata: b\r\n\r\n"[..],
            b"data: a\r\rdata: b\r\r",
            b"data: a\n\ndata: b\n\n",
        ] {
            assert_eq!(data(&parse_chunks(&[stream])), ["a", "b"], "{stream:?}");
        }
    }

    #[test]
    fn crlf_split_between_chunks_is_one_line_end() {
        let events = parse_chunks(&[b"data: a\r", b"\n", b"\r", b"\ndata: b\r\n\r\n"]);
        assert_eq!(data(&events), ["a", "b"]);
    }

    #[test]
    fn multiple_data_lines_join_with_newline() {
        let events = parse_chunks(&[b"data: one\ndata:two\ndata\n\n"]);
        assert_eq!(data(&events), ["one\ntwo\n"]);
    }

    #[test]
    fn event_field_is_kept_and_reset() {
        let events = parse_chunks(&[b"event: error\ndata: {}\n\ndata: x\n\n"]);
        assert_eq!(events[0].event.as_deref(), Some("error"));
        assert_eq!(events[1].event, None);
    }

    #[test]
    fn blank_lines_without_data_dispatch_nothing() {
        assert!(parse_chunks(&[b"\n\n\r\n\r\revent: x\n\n"]).is_empty());
    }

    #[test]
    fn utf8_split_across_chunks_survives() {
        let stream = "data: héllo ✓\n\n".as_bytes();
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(data(&parse_chunks(&[a, b])), ["héllo ✓"], "cut at {cut}");
        }
    }

    #[test]
    fn byte_order_mark_is_skipped_even_when_split() {
        let stream = b"\xEF\xBB\xBFdata: x\n\n";
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(data(&parse_chunks(&[a, b])), ["x"], "cut at {cut}");
        }
    }

    #[test]
    fn finish_dispatches_an_unterminated_last_event() {
        assert_eq!(
            data(&parse_chunks(&[b"data: a\n\ndata: [DONE]"])),
            ["a", "[DONE]"]
        );
        assert_eq!(data(&parse_chunks(&[b"data: [DONE]\n"])), ["[DONE]"]);
        assert!(parse_chunks(&[b""]).is_empty());
        assert!(parse_chunks(&[]).is_empty());
    }

    /// Cuts `bytes` at the given (sorted, deduplicated) positions.
    fn cut<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.sort_unstable();
        points.dedup();
        let mut chunks = Vec::new();
        let mut start = 0;
        for point in points {
            chunks.push(&bytes[start..point]);
            start = point;
        }
        chunks.push(&bytes[start..]);
        chunks
    }

    fn line_ending() -> impl Strategy<Value = &'static str> {
        prop_oneof![Just("\n"), Just("\r\n"), Just("\r")]
    }

    proptest! {
        /// Any byte stream gives the same events however it is cut into chunks.
        #[test]
        fn chunking_never_changes_events(
            bytes in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'\r'), Just(b':'), Just(b' '), any::<u8>(),
                            Just(b'd'), Just(b'a'), Just(b't')],
                0..200),
            prefix in proptest::collection::vec(
                prop_oneof![Just(&b"data: "[..]), Just(&b"\n"[..]), Just(&b"\r"[..]), Just(&b"\xEF\xBB\xBF"[..])],
                0..8),
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
        ) {
            let mut stream: Vec<u8> = prefix.concat();
            stream.extend_from_slice(&bytes);
            let whole = parse_chunks(&[&stream]);
            let pieces = cut(&stream, &cuts);
            prop_assert_eq!(parse_chunks(&pieces), whole);
        }

        /// A well-formed stream of payloads, with any line endings, comments and keep-alives between
        /// them, gives back exactly those payloads under any chunking.
        #[test]
        fn payloads_survive_any_framing_and_chunking(
            payloads in proptest::collection::vec("[^\r\n]{0,30}", 0..10),
            endings in proptest::collection::vec(line_ending(), 40),
            comments in proptest::collection::vec(proptest::option::of("[^\r\n]{0,10}"), 10),
            cuts in proptest::collection::vec(any::<usize>(), 0..30),
        ) {
            let mut stream = String::new();
            let mut e = endings.iter().cycle();
            for (i, payload) in payloads.iter().enumerate() {
                if let Some(comment) = &comments[i % comments.len()] {
                    stream.push(':');
                    stream.push_str(comment);
                    stream.push_str(e.next().unwrap_or(&"\n"));
                }
                // The same ending twice: a CR then an LF would be one CRLF, not two line ends.
                let ending = e.next().unwrap_or(&"\n");
                stream.push_str("data: ");
                stream.push_str(payload);
                stream.push_str(ending);
                stream.push_str(ending);
            }
            let pieces = cut(stream.as_bytes(), &cuts);
            let events = parse_chunks(&pieces);
            prop_assert_eq!(data(&events), payloads.iter().map(String::as_str).collect::<Vec<_>>());
        }
    }
}
