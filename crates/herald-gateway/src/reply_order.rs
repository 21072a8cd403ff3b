//! The order in which committed replies reach their adapter's outbox: within a session, turn order.
//!
//! **Invariant:** a session's reply is handed to its outbox only after every earlier turn of the session
//! that was storing its reply at the same time has been handed over (or has ended without a reply).
//!
//! **Why:** turns of one session may run at once (the line is first in, first out per session, not one
//! at a time), and the journal commits the replies of several turns in one batch. Every turn waiting on
//! that commit wakes at the same moment, in no particular order, so without this a chat could be sent
//! the answer to its second message before the answer to its first. Only turns already *storing* hold
//! later ones back — for the few milliseconds of a commit — never a turn whose agent is still at work:
//! a slow answer does not delay a quick one that was asked later.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::journal::SessionKey;

/// What each session is storing, and the committed replies held for an earlier one.
#[derive(Debug)]
pub(crate) struct ReplyOrder<T> {
    sessions: HashMap<SessionKey, Storing<T>>,
}

#[derive(Debug)]
struct Storing<T> {
    /// Turns whose reply is being committed.
    committing: BTreeSet<i64>,
    /// Committed replies waiting for an earlier turn's, by turn.
    held: BTreeMap<i64, T>,
}

impl<T> Default for ReplyOrder<T> {
    fn default() -> Self {
        ReplyOrder {
            sessions: HashMap::new(),
        }
    }
}

impl<T> ReplyOrder<T> {
    /// Turn `turn_id` of `session` starts storing its reply.
    pub(crate) fn begin(&mut self, session: &SessionKey, turn_id: i64) {
        self.sessions
            .entry(session.clone())
            .or_insert_with(|| Storing {
                committing: BTreeSet::new(),
                held: BTreeMap::new(),
            })
            .committing
            .insert(turn_id);
    }

    /// Turn `turn_id` has stored its reply (`Some`: to hand over) or ended without one (`None`).
    /// Returns the replies that may now be handed over, in turn order.
    pub(crate) fn end(&mut self, session: &SessionKey, turn_id: i64, reply: Option<T>) -> Vec<T> {
        let Some(storing) = self.sessions.get_mut(session) else {
            return reply.into_iter().collect();
        };
        storing.committing.remove(&turn_id);
        if let Some(reply) = reply {
            storing.held.insert(turn_id, reply);
        }
        let first_open = storing.committing.first().copied();
        let mut ready = Vec::new();
        while let Some(entry) = storing.held.first_entry() {
            if first_open.is_some_and(|open| open < *entry.key()) {
                break;
            }
            ready.push(entry.remove());
        }
        if storing.committing.is_empty() && storing.held.is_empty() {
            self.sessions.remove(session);
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(id: &str) -> SessionKey {
        SessionKey::new("telegram", id)
    }

    #[test]
    fn replies_committed_together_are_handed_over_in_turn_order() {
        let mut order = ReplyOrder::default();
        order.begin(&chat("a"), 1);
        order.begin(&chat("a"), 2);
        // Turn 2's task wakes first: it waits for turn 1.
        assert!(order.end(&chat("a"), 2, Some("second")).is_empty());
        assert_eq!(order.end(&chat("a"), 1, Some("first")), vec!["first", "second"]);
        assert!(order.sessions.is_empty(), "nothing is left behind");
    }

    #[test]
    fn a_turn_ending_without_a_reply_releases_the_later_ones() {
        let mut order = ReplyOrder::default();
        order.begin(&chat("a"), 1);
        order.begin(&chat("a"), 2);
        order.begin(&chat("a"), 3);
        assert!(order.end(&chat("a"), 3, Some(3)).is_empty());
        assert!(order.end(&chat("a"), 2, Some(2)).is_empty());
        assert_eq!(order.end(&chat("a"), 1, None), vec![2, 3]);
    }

    #[test]
    fn sessions_do_not_wait_for_each_other_nor_for_later_turns() {
        let mut order = ReplyOrder::default();
        order.begin(&chat("a"), 1);
        order.begin(&chat("b"), 2);
        order.begin(&chat("a"), 5);
        assert_eq!(order.end(&chat("b"), 2, Some("b2")), vec!["b2"]);
        assert_eq!(order.end(&chat("a"), 1, Some("a1")), vec!["a1"]);
        assert_eq!(order.end(&chat("a"), 5, Some("a5")), vec!["a5"]);
        // A turn that never began storing (a stopped turn's notice) goes at once.
        assert_eq!(order.end(&chat("c"), 9, Some("c9")), vec!["c9"]);
    }
}
