//! Who gets in, and how hard a stranger may guess at a pairing code.
//!
//! **Invariant:** access is decided in one place, in one order — the config's lists
//! (`admin_users`, `allowed_users`), then a grant made by pairing (`herald_home::access`), then
//! `allow_all` — and a stranger who guesses at codes is slowed down per user *and* overall, so many
//! accounts guessing together get no further than one. Pure: the adapter reads the grant and the
//! clock and passes them in.

use std::collections::HashMap;
use std::time::Duration;

use herald_home::access::{AccessLevel, Grant};
use tokio::time::Instant;

/// Wrong codes one user may send within [`GUESS_WINDOW`].
pub const GUESSES_PER_USER: usize = 5;
/// Wrong codes everyone together may send within [`GUESS_WINDOW`].
pub const GUESSES_OVERALL: usize = 30;
pub const GUESS_WINDOW: Duration = Duration::from_secs(15 * 60);

/// The config's part of access (`[telegram] allowed_users`, `admin_users`, `allow_all`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lists {
    pub allowed_users: Vec<i64>,
    pub admin_users: Option<Vec<i64>>,
    pub allow_all: bool,
}

/// Whether `user` is in, at which level, and why (in words for `/whoami`).
pub fn decide(lists: &Lists, grant: Option<&Grant>, user: i64) -> Option<(AccessLevel, String)> {
    if lists
        .admin_users
        .as_ref()
        .is_some_and(|admins| admins.contains(&user))
    {
        return Some((AccessLevel::Admin, "listed in [telegram] admin_users".into()));
    }
    if lists.allowed_users.contains(&user) {
        let level = if lists.admin_users.is_none() {
            AccessLevel::Admin
        } else {
            AccessLevel::User
        };
        return Some((level, "listed in [telegram] allowed_users".into()));
    }
    if let Some(grant) = grant {
        return Some((
            grant.level,
            "paired with a code from `herald pair telegram`".into(),
        ));
    }
    lists
        .allow_all
        .then(|| (AccessLevel::User, "[telegram] allow_all is on".into()))
}

/// Wrong pairing codes seen lately, per user and overall.
#[derive(Debug, Default)]
pub struct GuessLimiter {
    per_user: HashMap<i64, Vec<Instant>>,
    overall: Vec<Instant>,
}

/// What the limiter says about a guess about to be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guess {
    Allowed,
    /// This user guessed wrong too often: try again after this long.
    UserLimited(Duration),
    /// Everyone together did: pairing is paused for this long.
    Paused(Duration),
}

impl GuessLimiter {
    /// Whether `user` may try a code now.
    pub fn check(&mut self, user: i64, now: Instant) -> Guess {
        self.forget(now);
        if let Some(wait) = wait_for(&self.overall, GUESSES_OVERALL, now) {
            return Guess::Paused(wait);
        }
        match self
            .per_user
            .get(&user)
            .and_then(|seen| wait_for(seen, GUESSES_PER_USER, now))
        {
            Some(wait) => Guess::UserLimited(wait),
            None => Guess::Allowed,
        }
    }

    /// Records a wrong code from `user`.
    pub fn wrong(&mut self, user: i64, now: Instant) {
        self.per_user.entry(user).or_default().push(now);
        self.overall.push(now);
    }

    fn forget(&mut self, now: Instant) {
        let fresh = |t: &Instant| now.saturating_duration_since(*t) < GUESS_WINDOW;
        self.overall.retain(fresh);
        self.per_user.retain(|_, seen| {
            seen.retain(fresh);
            !seen.is_empty()
        });
    }
}

/// How long until fewer than `limit` of `seen` fall in the window, if there are that many now.
fn wait_for(seen: &[Instant], limit: usize, now: Instant) -> Option<Duration> {
    if seen.len() < limit {
        return None;
    }
    let oldest_counted = seen[seen.len() - limit];
    Some(GUESS_WINDOW.saturating_sub(now.saturating_duration_since(oldest_counted)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(level: AccessLevel) -> Grant {
        Grant {
            version: 1,
            adapter: "telegram".into(),
            user: "9".into(),
            level,
            name: None,
            granted_ms: 0,
        }
    }

    #[test]
    fn the_lists_come_first_then_pairing_then_allow_all() {
        let mut lists = Lists {
            allowed_users: vec![1],
            ..Lists::default()
        };
        assert_eq!(
            decide(&lists, None, 1).unwrap().0,
            AccessLevel::Admin,
            "no admin list: allowed are admins"
        );
        assert_eq!(decide(&lists, None, 2), None, "default deny");
        assert_eq!(
            decide(&lists, Some(&grant(AccessLevel::User)), 9).unwrap().0,
            AccessLevel::User
        );
        lists.admin_users = Some(vec![3]);
        assert_eq!(decide(&lists, None, 1).unwrap().0, AccessLevel::User);
        assert_eq!(
            decide(&lists, None, 3).unwrap().0,
            AccessLevel::Admin,
            "admins need not be allowed too"
        );
        lists.allow_all = true;
        assert_eq!(decide(&lists, None, 77).unwrap().0, AccessLevel::User);
        assert_eq!(
            decide(&lists, Some(&grant(AccessLevel::Admin)), 9).unwrap().0,
            AccessLevel::Admin
        );
    }

    #[test]
    fn wrong_codes_are_limited_per_user_and_overall() {
        let start = Instant::now();
        let mut limiter = GuessLimiter::default();
        for _ in 0..GUESSES_PER_USER {
            assert_eq!(limiter.check(1, start), Guess::Allowed);
            limiter.wrong(1, start);
        }
        assert!(matches!(limiter.check(1, start), Guess::UserLimited(w) if w == GUESS_WINDOW));
        assert_eq!(
            limiter.check(2, start),
            Guess::Allowed,
            "others are not held up by one"
        );
        assert_eq!(
            limiter.check(1, start + GUESS_WINDOW),
            Guess::Allowed,
            "the window passes"
        );
        let mut limiter = GuessLimiter::default();
        for user in 0..GUESSES_OVERALL as i64 {
            limiter.wrong(100 + user, start);
        }
        assert!(
            matches!(limiter.check(5000, start), Guess::Paused(_)),
            "many accounts together"
        );
    }
}
