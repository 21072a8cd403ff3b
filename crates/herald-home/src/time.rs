//! Wall-clock timestamps as they appear in records: milliseconds since the Unix epoch, and RFC 3339 text
//! for people. Records store the integer so that comparisons never depend on parsing text.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now. A clock before 1970 reads as 0 rather than panicking.
pub fn now_ms() -> u64 {
    system_time_to_ms(SystemTime::now())
}

/// Milliseconds since the Unix epoch for `time` (0 for times before the epoch).
pub fn system_time_to_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// RFC 3339 UTC text with millisecond precision, e.g. `2026-11-24T03:57:55.123Z`.
pub fn rfc3339_ms(ms: u64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_millis(time).to_string()
}

/// A compact human duration (`3m12s`), whole seconds.
pub fn human_duration(duration: Duration) -> String {
    humantime::format_duration(Duration::from_secs(duration.as_secs()))
        .to_string()
        .replace(' ', "")
}
