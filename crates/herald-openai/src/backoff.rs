//! The wait before a retry when the server did not say how long: exponential, capped, with "equal
//! jitter" (half the step fixed, half random) so that many turns failing together do not retry together.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// `base * 2^retry`, capped at `max`, then scaled into `[step/2, step)` by the jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// 0.5 s, 1 s, 2 s, 4 s, … up to 8 s, each between half and all of that.
    pub const DEFAULT: Backoff = Backoff {
        base: Duration::from_millis(500),
        max: Duration::from_secs(8),
    };

    /// The wait before retry number `retry` (0 for the first retry). `jitter` is clamped to `[0, 1]`.
    pub fn delay(&self, retry: u32, jitter: f64) -> Duration {
        let step = self
            .base
            .checked_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX))
            .unwrap_or(self.max)
            .min(self.max);
        let jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        step / 2 + (step / 2).mul_f64(jitter)
    }
}

/// A random number in `[0, 1)`, good enough for jitter: std's per-instance random hash keys.
pub fn random_jitter() -> f64 {
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn schedule_doubles_and_caps() {
        let b = Backoff::DEFAULT;
        let full: Vec<Duration> = (0..6).map(|r| b.delay(r, 1.0)).collect();
        let secs = |ms| Duration::from_millis(ms);
        assert_eq!(
            full,
            [
                secs(500),
                secs(1000),
                secs(2000),
                secs(4000),
                secs(8000),
                secs(8000)
            ]
        );
        assert_eq!(b.delay(0, 0.0), secs(250));
        assert_eq!(b.delay(3, 0.5), secs(3000));
    }

    #[test]
    fn huge_retry_numbers_do_not_overflow() {
        let b = Backoff {
            base: Duration::from_secs(u64::MAX / 2),
            max: Duration::from_secs(60),
        };
        assert_eq!(b.delay(u32::MAX, 1.0), Duration::from_secs(60));
        assert_eq!(Backoff::DEFAULT.delay(1000, 1.0), Duration::from_secs(8));
    }

    #[test]
    fn random_jitter_is_in_range_and_varies() {
        let samples: Vec<f64> = (0..64).map(|_| random_jitter()).collect();
        assert!(samples.iter().all(|j| (0.0..1.0).contains(j)));
        assert!(samples.iter().any(|&j| j != samples[0]));
    }

    proptest! {
        #[test]
        fn delay_is_between_half_step_and_step(retry in 0u32..100, jitter in any::<f64>(), base_ms in 0u64..10_000, max_ms in 0u64..100_000) {
            let b = Backoff { base: Duration::from_millis(base_ms), max: Duration::from_millis(max_ms) };
            let step = b.delay(retry, 1.0);
            let d = b.delay(retry, jitter);
            prop_assert!(step <= b.max);
            prop_assert!(d <= step && d >= step / 2);
            prop_assert!(b.delay(retry, 1.0) <= b.delay(retry.saturating_add(1), 1.0));
        }
    }
}
