//! Counted nouns in the messages people read: `1 restart`, `2 restarts`, `0 restarts`.
//!
//! **Invariant:** every message that puts a number before a noun goes through [`count`], so no output
//! says `1 restarts`. Why here: the CLI, the lifecycle layer, the daemon and the gateway all word such
//! messages, and this crate is the one they all depend on.

/// `n` and the noun in the right number: `count(1, "restart", "restarts")` is `"1 restart"`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn one_is_singular_and_everything_else_plural() {
        assert_eq!(count(0, "restart", "restarts"), "0 restarts");
        assert_eq!(count(1, "restart", "restarts"), "1 restart");
        assert_eq!(count(2, "process", "processes"), "2 processes");
    }
}
