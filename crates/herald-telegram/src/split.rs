//! Splitting a reply into messages Telegram accepts.
//!
//! Telegram refuses a message over 4096 characters (counted in UTF-16 code units). A long reply is cut
//! into parts of at most that many, preferring a paragraph break, then a line break, then a space, so
//! parts read naturally; a single unbroken run is cut where it must be. No character is lost or split.

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

fn utf16_len(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

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
