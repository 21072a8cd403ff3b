//! Splitting a reply into messages Telegram accepts.
//!
//! Telegram refuses a message over 4096 characters (counted in UTF-16 code units). A long reply is cut
//! into parts of at most that many, preferring a paragraph break, then a line break, then a space, so
//! parts read naturally; a single unbroken run is cut where it must be. No character is lost or split.
//!
//! A cut inside a code block (a ```` ``` ```` fence) would leave one part with an unclosed block and the
//! next with code shown as text: [`split_reply`] closes the block at the end of the part and opens it
//! again, with its language, at the start of the next.

/// The largest message Telegram accepts, in UTF-16 code units.
pub const MAX_MESSAGE_CHARS: usize = 4096;

/// Cuts `text` into parts of at most `max` UTF-16 code units. An empty text is one empty part.
pub fn split_message(text: &str, max: usize) -> Vec<String> {
    let max = max.max(2);
    let mut parts = Vec::new();
    let mut rest = text;
    while utf16_len(rest) > max {
        // The longest prefix within the limit, on a char boundary.
        let mut units = 0;
        let mut hard = 0;
        for (i, c) in rest.char_indices() {
            if units + c.len_utf16() > max {
                break;
            }
            units += c.len_utf16();
            hard = i + c.len_utf8();
        }
        let window = &rest[..hard];
        // A natural break in the second half of the window, if there is one.
        let min = hard / 2;
        let cut = ["\n\n", "\n", " "]
            .iter()
            .find_map(|sep| window.rfind(sep).filter(|&i| i >= min).map(|i| i + sep.len()))
            .unwrap_or(hard);
        parts.push(rest[..cut].trim_end().to_owned());
        rest = &rest[cut..];
    }
    parts.push(rest.to_owned());
    parts.retain(|p| !p.is_empty());
    if parts.is_empty() {
        parts.push(String::new());
    }
    parts
}

/// Room kept in each part for a fence closed at its end and reopened at the next one's start.
const FENCE_ROOM: usize = 48;
/// A fence line longer than this is reopened without its language (it would not fit the room).
const FENCE_LINE_MAX: usize = 40;

/// Cuts a reply into messages of at most `max` UTF-16 code units, never leaving a code block open
/// across two of them (see the module docs).
pub fn split_reply(text: &str, max: usize) -> Vec<String> {
    if !text.contains("```") || utf16_len(text) <= max {
        return split_message(text, max);
    }
    let mut open: Option<String> = None;
    let mut parts = Vec::new();
    for raw in split_message(text, max.saturating_sub(FENCE_ROOM).max(2)) {
        let mut part = String::new();
        if let Some(fence) = &open {
            part.push_str(fence);
            part.push('\n');
        }
        part.push_str(&raw);
        for line in raw.lines() {
            let line = line.trim();
            if line.starts_with("```") {
                open = match open {
                    Some(_) => None,
                    None if line.len() <= FENCE_LINE_MAX => Some(line.to_owned()),
                    None => Some("```".to_owned()),
                };
            }
        }
        if open.is_some() {
            if !part.ends_with('\n') {
                part.push('\n');
            }
            part.push_str("```");
        }
        parts.push(part);
    }
    parts
}

fn utf16_len(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_block_cut_in_two_is_closed_and_reopened() {
        let code: Vec<String> = (0..400).map(|i| format!("let x{i} = {i};")).collect();
        let text = format!("Here:\n```rust\n{}\n```\nDone.", code.join("\n"));
        let parts = split_reply(&text, MAX_MESSAGE_CHARS);
        assert!(parts.len() >= 2, "{}", parts.len());
        for part in &parts {
            assert!(utf16_len(part) <= MAX_MESSAGE_CHARS);
            assert_eq!(part.matches("```").count() % 2, 0, "balanced fences: {part}");
        }
        assert!(parts[1].starts_with("```rust\n"), "reopened with its language");
        assert!(parts.last().unwrap().ends_with("Done."));
        // Nothing lost: every line of code is in some part.
        let all = parts.concat();
        assert!(code.iter().all(|line| all.contains(line.as_str())));
    }

    #[test]
    fn short_text_is_one_part() {
        assert_eq!(split_message("hello", MAX_MESSAGE_CHARS), vec!["hello"]);
    }

    #[test]
    fn long_text_is_cut_at_line_breaks_within_the_limit() {
        let line = "x".repeat(100);
        let text = vec![line.clone(); 100].join("\n");
        let parts = split_message(&text, MAX_MESSAGE_CHARS);
        assert!(parts.len() >= 3, "{}", parts.len());
        assert!(parts.iter().all(|p| utf16_len(p) <= MAX_MESSAGE_CHARS));
        assert!(
            parts.iter().all(|p| p.split('\n').all(|l| l == line)),
            "cut inside a line"
        );
        assert_eq!(parts.concat().replace('\n', "").len(), 100 * 100);
    }

    #[test]
    fn an_unbroken_run_is_cut_hard_without_splitting_characters() {
        let text = "é🙂".repeat(3000);
        let parts = split_message(&text, MAX_MESSAGE_CHARS);
        assert!(parts.iter().all(|p| utf16_len(p) <= MAX_MESSAGE_CHARS));
        assert_eq!(parts.concat(), text);
    }
}
