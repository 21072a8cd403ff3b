//! Pacing of outgoing Telegram messages, pure (no I/O, no clock of its own: every call is given `now`).
//!
//! **Invariant:** no message part leaves before [`Pacer::reserve`] has given it a slot, and the slots
//! handed out keep every limit at once: at most `per_second` overall, and per chat at most
//! `per_chat_per_second` (a private chat, id > 0) or `per_group_per_minute` (a group or supergroup, id
//! < 0). Each limit is a bucket of one token (slots evenly spaced, no burst, and [`MARGIN_PERCENT`]
//! wider than the limit), so a server that counts over any window of its own choosing never sees more
//! than the configured rate, even when a send reaches it a little late. Slots are booked in the order asked for, so every waiting chat gets its
//! turn (no herd racing for the next token, no chat starved).
//!
//! **Why:** the Bot API answers 429 with `retry_after` beyond about 30 messages a second overall, one a
//! second per chat and twenty a minute per group, and a bot that keeps provoking 429s is throttled
//! harder. Sending at the limit, not into it, is both faster and politer than retrying.
//!
//! **429s:** a `retry_after` holds its chat (nothing more to it until the time is up). Telegram does not
//! say whether a 429 was for the chat or for the bot as a whole; two different chats refused within
//! [`GLOBAL_EVIDENCE`] of each other are taken as the overall limit, and then every chat is held.
//!
//! [`Lanes`] is the other pure half of delivery: a FIFO per chat, at most one reply per chat in flight,
//! and chats with work taken in the order they became ready.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// Two 429s from different chats within this time mean the bot as a whole is over its limit.
pub const GLOBAL_EVIDENCE: Duration = Duration::from_secs(1);
/// How much wider than the limit slots are spaced. The server counts arrivals, not slots: a send that
/// leaves or arrives late (a busy machine, a slow hop) closes the gap to the next one, and at exactly
/// the limit a late first send and an on-time thirty-first would put 31 in one second. 5 % tolerates
/// 50 ms of such jitter at 30/s (measured: 47 429s in 1 500 replies at the exact rate, none at 5 %).
pub const MARGIN_PERCENT: u64 = 5;
/// Chats remembered beyond this many are forgotten once idle (their slots are in the past).
const PRUNE_ABOVE: usize = 4096;

/// The limits, from `[telegram] send_per_second`, `send_per_chat_per_second` and
/// `send_per_group_per_minute` (each at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub per_second: u32,
    pub per_chat_per_second: u32,
    pub per_group_per_minute: u32,
}

impl Default for Limits {
    /// Telegram's published limits for bots.
    fn default() -> Self {
        Limits {
            per_second: 30,
            per_chat_per_second: 1,
            per_group_per_minute: 20,
        }
    }
}

impl Limits {
    /// The least time between two messages to the bot as a whole.
    pub fn overall_interval(&self) -> Duration {
        spacing(1, self.per_second)
    }

    /// The least time between two messages to `chat`: group and supergroup ids are negative, and a
    /// group is held to both its own limit and the per-chat one.
    pub fn chat_interval(&self, chat: i64) -> Duration {
        let private = spacing(1, self.per_chat_per_second);
        if chat < 0 {
            private.max(spacing(60, self.per_group_per_minute))
        } else {
            private
        }
    }
}

/// `seconds / count` widened by [`MARGIN_PERCENT`], rounded up to the nanosecond.
fn spacing(seconds: u64, count: u32) -> Duration {
    let count = u64::from(count.max(1));
    Duration::from_nanos((seconds * 10_000_000 * (100 + MARGIN_PERCENT)).div_ceil(count))
}

/// Per chat: the earliest next slot, and a 429's hold.
#[derive(Debug, Clone, Copy)]
struct Chat {
    next: Instant,
    held_until: Option<Instant>,
}

/// The slot book (see the module docs).
#[derive(Debug)]
pub struct Pacer {
    limits: Limits,
    /// The earliest next overall slot.
    next: Option<Instant>,
    /// Everything held until then (a 429 judged global).
    held_until: Option<Instant>,
    chats: HashMap<i64, Chat>,
    /// The last 429: which chat, when.
    last_refusal: Option<(i64, Instant)>,
}

impl Pacer {
    pub fn new(limits: Limits) -> Pacer {
        Pacer {
            limits,
            next: None,
            held_until: None,
            chats: HashMap::new(),
            last_refusal: None,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Books the next slot for one message to `chat` and returns when it is (`now` or later). The
    /// caller sends at that instant, not before; a slot it does not use is simply lost.
    pub fn reserve(&mut self, chat: i64, now: Instant) -> Instant {
        let at = self.earliest(chat, now);
        self.book(chat, at);
        at
    }

    /// As [`Pacer::reserve`] for a message that is worth sending only soon (a draft's edit, a
    /// courtesy answer): books the slot only if it comes within `within` of `now`, else books nothing
    /// and returns `None` — the message is skipped rather than queued behind the replies.
    pub fn reserve_within(&mut self, chat: i64, now: Instant, within: Duration) -> Option<Instant> {
        let at = self.earliest(chat, now);
        if at > now + within {
            return None;
        }
        self.book(chat, at);
        Some(at)
    }

    /// The earliest slot for `chat` from `now`, booking nothing.
    fn earliest(&mut self, chat: i64, now: Instant) -> Instant {
        if self.chats.len() > PRUNE_ABOVE {
            self.chats
                .retain(|_, c| c.next > now || c.held_until.is_some_and(|h| h > now));
        }
        let chat_state = self.chats.get(&chat).copied();
        let mut at = now;
        for floor in [
            self.next,
            self.held_until,
            chat_state.map(|c| c.next),
            chat_state.and_then(|c| c.held_until),
        ]
        .into_iter()
        .flatten()
        {
            at = at.max(floor);
        }
        at
    }

    fn book(&mut self, chat: i64, at: Instant) {
        let chat_state = self.chats.get(&chat).copied();
        self.next = Some(at + self.limits.overall_interval());
        self.chats.insert(
            chat,
            Chat {
                next: at + self.limits.chat_interval(chat),
                held_until: chat_state.and_then(|c| c.held_until).filter(|h| *h > at),
            },
        );
    }

    /// The earliest moment anything may go to `chat`, given the holds alone (not booking a slot).
    pub fn held_until(&self, chat: i64) -> Option<Instant> {
        let own = self.chats.get(&chat).and_then(|c| c.held_until);
        match (own, self.held_until) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// A 429 for `chat` at `now` asking to wait `retry_after`: holds the chat, and everything when
    /// another chat was refused within [`GLOBAL_EVIDENCE`]. Returns whether the hold is global.
    pub fn refused(&mut self, chat: i64, retry_after: Duration, now: Instant) -> bool {
        let until = now + retry_after;
        let entry = self.chats.entry(chat).or_insert(Chat {
            next: now,
            held_until: None,
        });
        entry.held_until = Some(entry.held_until.map_or(until, |h| h.max(until)));
        let global = self
            .last_refusal
            .is_some_and(|(other, at)| other != chat && now.saturating_duration_since(at) <= GLOBAL_EVIDENCE);
        if global {
            self.held_until = Some(self.held_until.map_or(until, |h| h.max(until)));
        }
        self.last_refusal = Some((chat, now));
        global
    }
}

/// Replies waiting, one FIFO per chat; at most one per chat is out at a time (see the module docs).
#[derive(Debug)]
pub struct Lanes<T> {
    queues: HashMap<i64, VecDeque<(i64, T)>>,
    busy: HashSet<i64>,
    /// Chats with a reply waiting and none out, in the order they became so.
    ready: VecDeque<i64>,
}

impl<T> Default for Lanes<T> {
    fn default() -> Self {
        Lanes {
            queues: HashMap::new(),
            busy: HashSet::new(),
            ready: VecDeque::new(),
        }
    }
}

impl<T> Lanes<T> {
    /// Queues `item` of `chat` in `order` (a turn id): behind everything of the chat with a lower or
    /// equal order, ahead of anything waiting with a higher one — replies handed over a moment out of
    /// order (two turns of a chat finishing in one commit) still leave in turn order when both wait.
    pub fn push(&mut self, chat: i64, order: i64, item: T) {
        let queue = self.queues.entry(chat).or_default();
        if queue.is_empty() && !self.busy.contains(&chat) {
            self.ready.push_back(chat);
        }
        let at = queue.iter().rposition(|(o, _)| *o <= order).map_or(0, |i| i + 1);
        queue.insert(at, (order, item));
    }

    /// The next reply to start: the oldest of the chat that has waited longest with none out. Its chat
    /// is busy until [`Lanes::done`].
    pub fn start_next(&mut self) -> Option<(i64, T)> {
        while let Some(chat) = self.ready.pop_front() {
            if let Some((_, item)) = self.queues.get_mut(&chat).and_then(VecDeque::pop_front) {
                self.busy.insert(chat);
                return Some((chat, item));
            }
        }
        None
    }

    /// The reply out for `chat` is finished: the chat's next may start.
    pub fn done(&mut self, chat: i64) {
        self.busy.remove(&chat);
        match self.queues.get(&chat) {
            Some(queue) if !queue.is_empty() => self.ready.push_back(chat),
            _ => {
                self.queues.remove(&chat);
            }
        }
    }

    /// Replies waiting (not out).
    pub fn waiting(&self) -> usize {
        self.queues.values().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn slots_keep_the_overall_rate_and_each_chats() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(Limits {
            per_second: 10,
            per_chat_per_second: 1,
            per_group_per_minute: 20,
        });
        // Ten distinct chats at once: 100 ms apart.
        let slots: Vec<Duration> = (1..=10).map(|c| pacer.reserve(c, t0) - t0).collect();
        // (Each spacing is 5 % wider than the limit: see MARGIN_PERCENT.)
        assert_eq!(slots, (0..10).map(|i| ms(105 * i)).collect::<Vec<_>>());
        // A second message to chat 1 waits for its own second, not just the overall slot.
        assert_eq!(pacer.reserve(1, t0) - t0, ms(1050));
        // A group: three seconds apart (20 a minute).
        let first = pacer.reserve(-5, t0 + ms(2000)) - t0;
        assert_eq!(first, ms(2000));
        assert_eq!(pacer.reserve(-5, t0 + ms(2000)) - t0, ms(5150));
        // A late caller gets `now`, and the next slot counts from there.
        assert_eq!(pacer.reserve(77, t0 + ms(9000)) - t0, ms(9000));
        assert_eq!(pacer.reserve(78, t0 + ms(9000)) - t0, ms(9105));
    }

    #[test]
    fn any_one_second_window_holds_at_most_the_limit() {
        let t0 = Instant::now();
        let limits = Limits::default();
        let mut pacer = Pacer::new(limits);
        let mut slots = Vec::new();
        for i in 0..300i64 {
            // 60 chats, five messages each, asked for in bursts.
            slots.push((i % 60, pacer.reserve(i % 60, t0 + ms(i as u64 / 50 * 700))));
        }
        for (i, (_, at)) in slots.iter().enumerate() {
            let window = slots
                .iter()
                .filter(|(_, s)| *s >= *at && *s < *at + Duration::from_secs(1))
                .count();
            assert!(window <= 30, "{window} in the second after slot {i}");
        }
        for chat in 0..60 {
            let mine: Vec<Instant> = slots
                .iter()
                .filter(|(c, _)| *c == chat)
                .map(|(_, s)| *s)
                .collect();
            assert!(
                mine.windows(2).all(|w| w[1] - w[0] >= Duration::from_secs(1)),
                "chat {chat}"
            );
        }
    }

    #[test]
    fn a_refusal_holds_its_chat_and_two_chats_refused_together_hold_everything() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(Limits::default());
        assert!(!pacer.refused(1, Duration::from_secs(5), t0));
        assert_eq!(pacer.held_until(1), Some(t0 + Duration::from_secs(5)));
        assert_eq!(pacer.held_until(2), None);
        assert_eq!(pacer.reserve(1, t0), t0 + Duration::from_secs(5));
        assert_eq!(
            pacer.reserve(2, t0),
            t0 + Duration::from_secs(5) + Limits::default().overall_interval()
        );
        // The same chat again is still its own trouble; another chat within a second is everyone's.
        assert!(!pacer.refused(1, Duration::from_secs(1), t0 + ms(100)));
        assert!(pacer.refused(3, Duration::from_secs(7), t0 + ms(600)));
        assert_eq!(pacer.held_until(9), Some(t0 + ms(7600)));
        assert!(pacer.reserve(9, t0 + ms(700)) >= t0 + ms(7600));
        // Far apart: not global.
        let mut pacer = Pacer::new(Limits::default());
        pacer.refused(1, Duration::from_secs(1), t0);
        assert!(!pacer.refused(2, Duration::from_secs(1), t0 + Duration::from_secs(3)));
        assert_eq!(pacer.held_until(3), None);
    }

    #[test]
    fn a_message_worth_sending_only_soon_is_skipped_behind_a_queue_and_books_nothing() {
        let mut pacer = Pacer::new(Limits::default());
        let t0 = Instant::now();
        assert_eq!(pacer.reserve_within(5, t0, ms(1000)), Some(t0));
        // Five replies queued for chat 5: its next slot is seconds away.
        for _ in 0..5 {
            pacer.reserve(5, t0);
        }
        assert_eq!(pacer.reserve_within(5, t0, ms(1000)), None);
        // Skipping booked nothing: the next reply's slot is where it would have been.
        let next = pacer.reserve(5, t0);
        assert!(
            next >= t0 + ms(6 * 1050) && next < t0 + ms(6 * 1050 + 1),
            "{:?}",
            next - t0
        );
        // Another chat waits for the overall pace only: once the booked slots are past, at once.
        let later = next + ms(100);
        assert_eq!(pacer.reserve_within(6, later, ms(1000)), Some(later));
    }

    #[test]
    fn a_hold_is_forgotten_once_passed() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(Limits::default());
        pacer.refused(1, Duration::from_secs(2), t0);
        assert_eq!(
            pacer.reserve(1, t0 + Duration::from_secs(3)),
            t0 + Duration::from_secs(3)
        );
        assert_eq!(pacer.held_until(1), None);
    }

    #[test]
    fn group_ids_are_negative_and_held_to_both_limits() {
        let limits = Limits {
            per_second: 30,
            per_chat_per_second: 1,
            per_group_per_minute: 600,
        };
        assert_eq!(limits.chat_interval(-100_123), ms(1050));
        assert_eq!(limits.chat_interval(5), ms(1050));
        assert_eq!(Limits::default().chat_interval(-1), ms(3150));
        assert_eq!(
            Limits::default().overall_interval(),
            Duration::from_nanos(35_000_000)
        );
    }

    #[test]
    fn lanes_keep_each_chats_order_and_one_out_per_chat() {
        let mut lanes = Lanes::default();
        lanes.push(1, 10, "1a");
        lanes.push(2, 11, "2a");
        lanes.push(1, 12, "1b");
        assert_eq!(lanes.start_next(), Some((1, "1a")));
        assert_eq!(lanes.start_next(), Some((2, "2a")));
        assert_eq!(lanes.start_next(), None, "chat 1 has one out");
        lanes.push(3, 13, "3a");
        lanes.done(1);
        assert_eq!(lanes.start_next(), Some((3, "3a")), "chat 3 became ready first");
        assert_eq!(lanes.start_next(), Some((1, "1b")));
        assert_eq!(lanes.waiting(), 0);
        lanes.done(1);
        lanes.done(2);
        lanes.done(3);
        assert_eq!(lanes.start_next(), None);
        assert!(lanes.queues.is_empty() && lanes.busy.is_empty());
        lanes.push(2, 20, "2b");
        assert_eq!(lanes.start_next(), Some((2, "2b")));
        // Handed over out of order while waiting: sent in turn order.
        lanes.push(2, 23, "2d");
        lanes.push(2, 22, "2c");
        lanes.push(2, 24, "2e");
        lanes.done(2);
        assert_eq!(lanes.start_next(), Some((2, "2c")));
        lanes.done(2);
        assert_eq!(lanes.start_next(), Some((2, "2d")));
        lanes.done(2);
        assert_eq!(lanes.start_next(), Some((2, "2e")));
    }
}
