//! Windows command lines: quoting arguments so `CommandLineToArgvW` (and the MSVC runtime, and Rust's
//! `std::env::args`) reads back exactly the intended words, and a parser that reads them the same way.
//!
//! **Invariant:** `parse_windows_args(&join_windows_args(args)) == args` for every list of arguments (a
//! property test checks it). The rules: an argument is quoted unless it consists only of characters that
//! are plain in both `CommandLineToArgvW` and cmd.exe (`A-Z a-z 0-9 - _ . / \ :`); inside quotes a `"` is
//! written `\"`, and backslashes are doubled only where they precede a `"` (including the closing one), so
//! `C:\dir\` becomes `"C:\dir\\"`. Conservative quoting keeps the output safe to embed in a `.cmd` line too
//! (cmd.exe treats `& | < > ( ) ^ , ; =` and spaces specially outside quotes).

/// The characters that never need quotes.
fn plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | '\\' | ':')
}

/// One argument, quoted for `CommandLineToArgvW` when needed.
pub fn quote_windows_arg(arg: &str) -> String {
    if !arg.is_empty() && arg.chars().all(plain) {
        return arg.to_owned();
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('"');
    let mut backslashes = 0usize;
    for c in arg.chars() {
        match c {
            '\\' => backslashes += 1,
            '"' => {
                out.extend(std::iter::repeat_n('\\', backslashes * 2 + 1));
                out.push('"');
                backslashes = 0;
            }
            c => {
                out.extend(std::iter::repeat_n('\\', backslashes));
                out.push(c);
                backslashes = 0;
            }
        }
    }
    out.extend(std::iter::repeat_n('\\', backslashes * 2));
    out.push('"');
    out
}

/// Arguments joined into one command-line tail (the part after the program).
pub fn join_windows_args(args: &[String]) -> String {
    args.iter()
        .map(|a| quote_windows_arg(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Splits a command-line tail the way `CommandLineToArgvW` splits everything after `argv[0]` (current
/// Windows, and Wine's implementation): `2n` backslashes before a `"` are `n` backslashes and a quote
/// toggle, `2n+1` are `n` backslashes and a literal `"`, other backslashes are literal; inside quotes, `""`
/// is a literal `"` (the "triple quote" rule). Spaces and tabs separate arguments outside quotes.
pub fn parse_windows_args(line: &str) -> Vec<String> {
    let chars: Vec<char> = line.chars().collect();
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < chars.len() && matches!(chars[i], ' ' | '\t') {
            i += 1;
        }
        if i >= chars.len() {
            return args;
        }
        let mut arg = String::new();
        // 0: outside quotes; 1: inside quotes (Wine's `qcount`).
        let mut qcount = 0u32;
        let mut backslashes = 0usize;
        while i < chars.len() {
            let c = chars[i];
            if matches!(c, ' ' | '\t') && qcount == 0 {
                break;
            }
            match c {
                '\\' => {
                    arg.push('\\');
                    backslashes += 1;
                    i += 1;
                }
                '"' => {
                    for _ in 0..backslashes.div_ceil(2) {
                        arg.pop();
                    }
                    if backslashes % 2 == 1 {
                        arg.push('"');
                    } else {
                        qcount += 1;
                    }
                    i += 1;
                    backslashes = 0;
                    while i < chars.len() && chars[i] == '"' {
                        qcount += 1;
                        if qcount == 3 {
                            arg.push('"');
                            qcount = 0;
                        }
                        i += 1;
                    }
                    if qcount == 2 {
                        qcount = 0;
                    }
                }
                c => {
                    arg.push(c);
                    backslashes = 0;
                    i += 1;
                }
            }
        }
        args.push(arg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn known_command_lines_split_like_windows() {
        // Examples from Microsoft's "Parsing C++ command-line arguments" table.
        assert_eq!(parse_windows_args(r#""a b c" d e"#), v(&["a b c", "d", "e"]));
        assert_eq!(
            parse_windows_args(r#""ab\"c" "\\" d"#),
            v(&[r#"ab"c"#, "\\", "d"])
        );
        assert_eq!(
            parse_windows_args(r#"a\\\b d"e f"g h"#),
            v(&[r"a\\\b", "de fg", "h"])
        );
        assert_eq!(parse_windows_args(r#"a\\\"b c d"#), v(&[r#"a\"b"#, "c", "d"]));
        assert_eq!(parse_windows_args(r#"a\\\\"b c" d e"#), v(&[r"a\\b c", "d", "e"]));
        // CommandLineToArgvW (unlike the 2008+ MSVC runtime) leaves the quotes after `""` inside quotes.
        assert_eq!(parse_windows_args(r#"a"b"" c d"#), v(&[r#"ab""#, "c", "d"]));
        assert_eq!(parse_windows_args(r#""" x"#), v(&["", "x"]));
    }

    #[test]
    fn quoting_is_minimal_and_safe() {
        assert_eq!(quote_windows_arg("run"), "run");
        assert_eq!(
            quote_windows_arg(r"C:\Program Files\h"),
            r#""C:\Program Files\h""#
        );
        assert_eq!(quote_windows_arg(r"C:\dir\"), r#"C:\dir\"#);
        assert_eq!(quote_windows_arg(r"C:\my dir\"), r#""C:\my dir\\""#);
        assert_eq!(quote_windows_arg(r#"a"b"#), r#""a\"b""#);
        assert_eq!(quote_windows_arg(""), r#""""#);
        assert_eq!(quote_windows_arg("a&b"), r#""a&b""#);
    }
}
