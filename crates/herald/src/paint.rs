//! Colour on standard output, decided once per stream.
//!
//! **Invariant:** an ANSI escape code is written only when the stream is a terminal and `NO_COLOR` is
//! not set (to any value, empty included: <https://no-color.org>). Why: output that is piped, redirected
//! or captured by a script or a test must be plain text, and a person who asked for no colour gets none.
//!
//! Usage: `let paint = Paint::stdout();` then `paint.verdict("PASS")` (green PASS, yellow WARN/SKIP, red
//! FAIL, anything else unchanged) or `paint.pass(text)`, `paint.warn(text)`, `paint.fail(text)`,
//! `paint.dim(text)` for any text.

use std::io::IsTerminal;

/// Whether (and how) text for one stream is coloured. Cheap to copy; decide once, then use everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paint {
    colour: bool,
}

const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

impl Paint {
    /// Colour for standard output: only on a terminal, and never with `NO_COLOR` set.
    pub fn stdout() -> Paint {
        Paint::decide(
            std::io::stdout().is_terminal(),
            std::env::var_os("NO_COLOR").is_some(),
        )
    }

    /// Colour for standard error, by the same rule.
    pub fn stderr() -> Paint {
        Paint::decide(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").is_some(),
        )
    }

    /// The rule itself: a terminal, and no `NO_COLOR`.
    pub fn decide(is_terminal: bool, no_color_set: bool) -> Paint {
        Paint {
            colour: is_terminal && !no_color_set,
        }
    }

    /// Never colours (for text that goes into files or JSON).
    pub fn plain() -> Paint {
        Paint { colour: false }
    }

    /// Whether this paint writes escape codes at all.
    pub fn is_colour(self) -> bool {
        self.colour
    }

    /// A verdict word coloured by what it means: `PASS`/`OK` green, `WARN`/`SKIP` yellow, `FAIL`/`ERROR`
    /// red; any other word unchanged.
    pub fn verdict(self, word: &str) -> String {
        match word {
            "PASS" | "OK" => self.pass(word),
            "WARN" | "SKIP" => self.warn(word),
            "FAIL" | "ERROR" => self.fail(word),
            other => other.to_owned(),
        }
    }

    /// Green text (a passed check).
    pub fn pass(self, text: &str) -> String {
        self.wrap(GREEN, text)
    }

    /// Yellow text (a warning, a skipped check).
    pub fn warn(self, text: &str) -> String {
        self.wrap(YELLOW, text)
    }

    /// Red text (a failed check).
    pub fn fail(self, text: &str) -> String {
        self.wrap(RED, text)
    }

    /// Dimmed text (secondary detail).
    pub fn dim(self, text: &str) -> String {
        self.wrap(DIM, text)
    }

    fn wrap(self, code: &str, text: &str) -> String {
        if self.colour {
            format!("{code}{text}{RESET}")
        } else {
            text.to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Paint;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(Paint::decide(true, false).is_colour());
        assert!(!Paint::decide(true, true).is_colour());
        assert!(!Paint::decide(false, false).is_colour());
        assert!(!Paint::decide(false, true).is_colour());
    }

    #[test]
    fn verdict_words_are_coloured_by_meaning_and_plain_without_colour() {
        let on = Paint::decide(true, false);
        assert_eq!(on.verdict("PASS"), "\x1b[32mPASS\x1b[0m");
        assert_eq!(on.verdict("SKIP"), "\x1b[33mSKIP\x1b[0m");
        assert_eq!(on.verdict("FAIL"), "\x1b[31mFAIL\x1b[0m");
        assert_eq!(on.verdict("maybe"), "maybe");
        let off = Paint::plain();
        for word in ["PASS", "WARN", "SKIP", "FAIL"] {
            assert_eq!(off.verdict(word), word);
        }
        assert_eq!(off.dim("x"), "x");
    }
}
