//! Outage notices: when the agent or a chat adapter has been failing for a while, the people the gateway
//! serves are told — once per outage, in one line, through every adapter that can reach them — and told
//! again when it works.
//!
//! **Invariant:** a notice is never a storm. One per outage (an outage lasts from the first unhealthy
//! state seen to the first healthy one), none for an outage shorter than the threshold, and after one was
//! sent, none for the same part within [`QUIET`] — a part that flaps is reported once an hour at most,
//! and its recovery only when its failure was. The decision is pure (time passed in); the daemon only
//! wakes it on a board change or at the one deadline it names, so a healthy gateway has no timer for it.
//!
//! A notice names what fails and its state word, never the error text: that may hold an internal
//! address, and the people in a chat are not the operator (`herald status` has the details).

use std::collections::BTreeMap;
use std::time::Duration;

use herald_home::records::{HealthRecord, HealthState};

/// The least time between two failure notices about one part.
pub const QUIET: Duration = Duration::from_secs(3600);

/// What fails: the agent, or one chat adapter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    Agent,
    Adapter(String),
}

/// One notice to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub part: Part,
    /// True: it is failing; false: it works again.
    pub failing: bool,
    pub text: String,
}

#[derive(Debug, Clone, Default)]
struct Outage {
    /// When the current outage began (the `since` of the first unhealthy state seen); none while healthy.
    since_ms: Option<u64>,
    /// A failure notice went out for the current outage.
    told: bool,
    /// When the last failure notice went out.
    last_notice_ms: Option<u64>,
}

/// The memory of the notices sent.
#[derive(Debug, Clone)]
pub struct OutageNotices {
    after: Duration,
    outages: BTreeMap<Part, Outage>,
}

impl OutageNotices {
    /// Notices for outages longer than `after` (zero: never any).
    pub fn new(after: Duration) -> OutageNotices {
        OutageNotices {
            after,
            outages: BTreeMap::new(),
        }
    }

    /// Looks at every part's health at `now_ms`: the notices to send now, and when to look again even if
    /// nothing changes (the earliest moment a failing part crosses the threshold).
    pub fn review(&mut self, parts: &[(Part, &HealthRecord)], now_ms: u64) -> (Vec<Notice>, Option<u64>) {
        let mut notices = Vec::new();
        let mut next: Option<u64> = None;
        if self.after.is_zero() {
            return (notices, None);
        }
        let after_ms = u64::try_from(self.after.as_millis()).unwrap_or(u64::MAX);
        let quiet_ms = u64::try_from(QUIET.as_millis()).unwrap_or(u64::MAX);
        for (part, record) in parts {
            let outage = self.outages.entry(part.clone()).or_default();
            let failing = !record.state.is_healthy();
            if !failing {
                // `starting` and `stopped` say nothing yet: the outage ends when it works again.
                if record.state == HealthState::Connected {
                    if outage.told {
                        notices.push(Notice {
                            part: part.clone(),
                            failing: false,
                            text: recovered_text(part, record),
                        });
                    }
                    outage.since_ms = None;
                    outage.told = false;
                }
                continue;
            }
            let since = *outage.since_ms.get_or_insert(record.since_ms);
            if outage.told {
                continue;
            }
            let due = since.saturating_add(after_ms);
            let quiet_until = outage.last_notice_ms.map_or(0, |at| at.saturating_add(quiet_ms));
            if now_ms < due {
                next = Some(next.map_or(due, |n| n.min(due)));
            } else if now_ms < quiet_until {
                // Told of an outage of this part within the hour: this one is told only if it lasts
                // past that hour.
                next = Some(next.map_or(quiet_until, |n| n.min(quiet_until)));
            } else {
                outage.told = true;
                outage.last_notice_ms = Some(now_ms);
                notices.push(Notice {
                    part: part.clone(),
                    failing: true,
                    text: failing_text(part, record, now_ms.saturating_sub(since)),
                });
            }
        }
        (notices, next)
    }
}

fn what(part: &Part, record: &HealthRecord) -> String {
    match part {
        Part::Agent => format!("the agent ({})", record.name),
        Part::Adapter(name) if name == "telegram" => "receiving Telegram messages".to_owned(),
        Part::Adapter(name) => format!("the {name} adapter"),
    }
}

fn failing_text(part: &Part, record: &HealthRecord, for_ms: u64) -> String {
    let minutes = for_ms / 60_000;
    let duration = if minutes >= 1 {
        herald_home::words::count(minutes, "minute", "minutes")
    } else {
        herald_home::words::count((for_ms / 1000).max(1), "second", "seconds")
    };
    let consequence = match part {
        Part::Agent => "replies may fail until it works again",
        Part::Adapter(_) => "messages may be late until it works again",
    };
    format!(
        "Herald notice: {} has been failing for {duration} ({}); {consequence}. You will get a message \
         when it does. The operator can see why with `herald status`.",
        what(part, record),
        record.state
    )
}

fn recovered_text(part: &Part, record: &HealthRecord) -> String {
    let what = what(part, record);
    let mut chars = what.chars();
    let what = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
        None => what,
    };
    format!("Herald notice: {what} works again.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(state: HealthState, since_ms: u64) -> HealthRecord {
        HealthRecord::new("openai", state, since_ms)
    }

    #[test]
    fn one_notice_per_outage_after_the_threshold_and_one_when_it_is_over() {
        let mut notices = OutageNotices::new(Duration::from_secs(60));
        let healthy = record(HealthState::Connected, 0);
        assert_eq!(notices.review(&[(Part::Agent, &healthy)], 1_000), (vec![], None));

        let failing = record(HealthState::Degraded, 10_000);
        let (sent, next) = notices.review(&[(Part::Agent, &failing)], 10_000);
        assert!(sent.is_empty());
        assert_eq!(next, Some(70_000), "look again when the threshold is crossed");

        // Another unhealthy state within the same outage keeps its start.
        let conflict = record(HealthState::Misconfigured, 30_000);
        assert!(notices.review(&[(Part::Agent, &conflict)], 30_000).0.is_empty());
        let (sent, next) = notices.review(&[(Part::Agent, &conflict)], 70_000);
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(sent[0].failing);
        assert!(
            sent[0]
                .text
                .contains("the agent (openai) has been failing for 1 minute"),
            "{}",
            sent[0].text
        );
        assert!(sent[0].text.contains("misconfigured"));
        assert_eq!(next, None);
        assert!(
            notices.review(&[(Part::Agent, &conflict)], 200_000).0.is_empty(),
            "once"
        );

        let back = record(HealthState::Connected, 300_000);
        let (sent, _) = notices.review(&[(Part::Agent, &back)], 300_000);
        assert_eq!(sent.len(), 1);
        assert!(!sent[0].failing);
        assert_eq!(sent[0].text, "Herald notice: The agent (openai) works again.");
        assert!(notices.review(&[(Part::Agent, &back)], 300_001).0.is_empty());
    }

    #[test]
    fn a_short_outage_is_not_told_and_a_flapping_part_is_told_once_an_hour() {
        let mut notices = OutageNotices::new(Duration::from_secs(60));
        let part = Part::Adapter("telegram".into());
        let blip = record(HealthState::Degraded, 0);
        assert!(notices.review(&[(part.clone(), &blip)], 0).0.is_empty());
        let ok = record(HealthState::Connected, 30_000);
        assert!(
            notices.review(&[(part.clone(), &ok)], 30_000).0.is_empty(),
            "never told, never 'back'"
        );

        let down = record(HealthState::Conflict, 100_000);
        notices.review(&[(part.clone(), &down)], 100_000);
        let (sent, _) = notices.review(&[(part.clone(), &down)], 160_000);
        assert_eq!(sent.len(), 1);
        assert!(
            sent[0].text.contains("receiving Telegram messages"),
            "{}",
            sent[0].text
        );
        let ok = record(HealthState::Connected, 200_000);
        assert_eq!(notices.review(&[(part.clone(), &ok)], 200_000).0.len(), 1);

        // Down again ten minutes later: within the quiet hour, not told (and so no "back" either).
        let again = record(HealthState::Degraded, 800_000);
        notices.review(&[(part.clone(), &again)], 800_000);
        let (sent, next) = notices.review(&[(part.clone(), &again)], 900_000);
        assert!(sent.is_empty());
        assert_eq!(
            next,
            Some(160_000 + 3_600_000),
            "told only if it lasts past the quiet hour"
        );
        let ok = record(HealthState::Connected, 950_000);
        assert!(notices.review(&[(part.clone(), &ok)], 950_000).0.is_empty());
    }

    #[test]
    fn zero_means_never() {
        let mut notices = OutageNotices::new(Duration::ZERO);
        let down = record(HealthState::Degraded, 0);
        assert_eq!(
            notices.review(&[(Part::Agent, &down)], u64::MAX / 2),
            (vec![], None)
        );
    }
}
