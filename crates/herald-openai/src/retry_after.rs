//! How long a server asked us to wait: `Retry-After` (delay-seconds or an IMF-fixdate HTTP-date, RFC 9110
//! §10.2.3) and OpenAI's `retry-after-ms`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest wait taken from a header; a larger value is read as this (the turn budget cuts it anyway).
const MAX_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

/// The wait the headers ask for: `retry-after-ms` first (it is more precise), then `retry-after`.
/// `None` when neither is present or parseable.
pub fn requested_wait(
    retry_after_ms: Option<&str>,
    retry_after: Option<&str>,
    now: SystemTime,
) -> Option<Duration> {
    retry_after_ms
        .and_then(parse_millis)
        .or_else(|| retry_after.and_then(|value| parse_retry_after(value, now)))
}

/// `retry-after-ms: 1500` (a non-negative number of milliseconds, fractions allowed).
pub fn parse_millis(value: &str) -> Option<Duration> {
    parse_number(value, 1e-3)
}

/// `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`. A date in the past means now.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Some(wait) = parse_number(value, 1.0) {
        return Some(wait);
    }
    let when = parse_http_date(value)?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO).min(MAX_WAIT))
}

/// A non-negative decimal number times `unit` seconds. RFC 9110 allows only digits for seconds, but
/// `1.5` is common enough from proxies to accept.
fn parse_number(value: &str, unit: f64) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let number: f64 = value.parse().ok()?;
    let secs = number * unit;
    if !secs.is_finite() {
        return None;
    }
    Some(Duration::try_from_secs_f64(secs).map_or(MAX_WAIT, |d| d.min(MAX_WAIT)))
}

/// Parses the preferred HTTP-date form, IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn parse_http_date(value: &str) -> Option<SystemTime> {
    let mut parts = value.split_ascii_whitespace();
    let weekday = parts.next()?;
    if weekday.len() != 4 || !weekday.ends_with(',') {
        return None;
    }
    let day: u32 = two_digits(parts.next()?)?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year = parts.next()?;
    if year.len() != 4 {
        return None;
    }
    let year: i64 = year.parse().ok()?;
    let mut clock = parts.next()?.split(':');
    let hour = two_digits(clock.next()?)?;
    let minute = two_digits(clock.next()?)?;
    let second = two_digits(clock.next()?)?;
    if clock.next().is_some() || parts.next()? != "GMT" || parts.next().is_some() {
        return None;
    }
    if !(1..=days_in_month(year, month)).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
    let secs = u64::try_from(secs).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

fn two_digits(s: &str) -> Option<u32> {
    if s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn seconds_form() {
        let now = at(0);
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("1.5", now), Some(Duration::from_millis(1500)));
        assert_eq!(parse_retry_after("99999999999999999999999", now), Some(MAX_WAIT));
    }

    #[test]
    fn garbage_is_none() {
        let now = at(0);
        for value in [
            "",
            " ",
            "-1",
            "abc",
            "1e3",
            "NaN",
            "inf",
            "1.2.3",
            ".",
            "Sun, 06 Nov 1994",
        ] {
            assert_eq!(parse_retry_after(value, now), None, "{value:?}");
        }
    }

    #[test]
    fn http_date_form() {
        // 1994-11-06T08:49:37Z is 784111777.
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(at(784_111_777))
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(at(0)));
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2000 23:59:59 GMT"),
            Some(at(951_868_799))
        );
        let now = at(784_111_777 - 30);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", at(784_111_800)),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn bad_dates_are_none() {
        for value in [
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Sun, 29 Feb 1900 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37 GMT extra",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1969 08:49:37 GMT",
        ] {
            assert_eq!(parse_http_date(value), None, "{value:?}");
        }
    }

    #[test]
    fn millis_header_wins_over_retry_after() {
        let now = at(0);
        assert_eq!(
            requested_wait(Some("250"), Some("9"), now),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            requested_wait(Some("junk"), Some("9"), now),
            Some(Duration::from_secs(9))
        );
        assert_eq!(requested_wait(None, None, now), None);
    }

    proptest! {
        #[test]
        fn never_panics_and_never_exceeds_max(value in ".{0,40}", now in 0u64..4_000_000_000) {
            if let Some(wait) = parse_retry_after(&value, at(now)) {
                prop_assert!(wait <= MAX_WAIT);
            }
            let _ = parse_millis(&value);
        }

        #[test]
        fn dates_round_trip_through_days_from_civil(days in 0i64..100_000, secs in 0u32..86_400) {
            // Format a date from its day number by walking the civil calendar, then parse it back.
            let mut year = 1970;
            let mut rest = days;
            loop {
                let len = if is_leap(year) { 366 } else { 365 };
                if rest < len { break; }
                rest -= len;
                year += 1;
            }
            let mut month = 1;
            loop {
                let len = i64::from(days_in_month(year, month));
                if rest < len { break; }
                rest -= len;
                month += 1;
            }
            let names = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
            let text = format!(
                "Mon, {:02} {} {} {:02}:{:02}:{:02} GMT",
                rest + 1, names[month as usize - 1], year, secs / 3600, secs / 60 % 60, secs % 60
            );
            let expected = at(u64::try_from(days).unwrap_or(0) * 86_400 + u64::from(secs));
            prop_assert_eq!(parse_http_date(&text), Some(expected));
        }
    }
}
