//! The wait before trying again: exponential, capped, with jitter chosen by the caller.
//!
//! **Invariant:** a wait never exceeds its cap by more than the jitter allows (`max`, or `1.1 × max`
//! for [`Jitter::Tenth`]), and never overflows however many retries came before, so a retry loop can
//! neither stall for ever nor panic. Jitter exists so that many tasks failing together (every turn
//! hitting one rate limit, say) do not retry together; a lone retrier needs none.
//!
//! Every retry loop in Herald uses this one type with its own parameters: the engine storing a reply
//! ([`Jitter::None`], 0.25 s to 5 s), the OpenAI backend ([`Backoff::DEFAULT`]), the Telegram and Matrix
//! adapters (1 s to 30 s, [`Jitter::Tenth`]); the adapters wait each step with [`pause`], which a stop
//! cuts short.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Waits `duration` unless `stop` turns true first (or already is): `true` when the whole wait passed,
/// `false` when the stop came — the caller's loop then ends. What every adapter's retry loop waits with.
pub async fn pause(duration: Duration, stop: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        () = tokio::time::sleep(duration) => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}

/// How a wait is spread around its step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Exactly the step.
    None,
    /// "Equal jitter": half the step fixed, half random — between `step / 2` and `step`.
    Equal,
    /// Within a tenth of the step either side — between `0.9 × step` and `1.1 × step`.
    Tenth,
}

/// `base * 2^retry`, capped at `max`, then spread by the jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    pub jitter: Jitter,
}

impl Backoff {
    /// 0.5 s, 1 s, 2 s, 4 s, … up to 8 s, each between half and all of that.
    pub const DEFAULT: Backoff = Backoff {
        base: Duration::from_millis(500),
        max: Duration::from_secs(8),
        jitter: Jitter::Equal,
    };

    /// The wait before retry number `retry` (0 for the first retry) without jitter.
    pub fn step(&self, retry: u32) -> Duration {
        self.base
            .checked_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX))
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// The wait before retry number `retry` (0 for the first retry). `random` (see [`random_jitter`])
    /// is clamped to `[0, 1]`; it places the wait within the jitter's range.
    pub fn delay(&self, retry: u32, random: f64) -> Duration {
        let step = self.step(retry);
        let random = if random.is_nan() {
            0.0
        } else {
            random.clamp(0.0, 1.0)
        };
        match self.jitter {
            Jitter::None => step,
            Jitter::Equal => step / 2 + (step / 2).mul_f64(random),
            Jitter::Tenth => step - step / 10 + (step / 5).mul_f64(random),
        }
    }

    /// A counter of consecutive retries over this schedule.
    pub fn retries(self) -> Retries {
        Retries {
            backoff: self,
            retry: 0,
        }
    }
}

/// Consecutive retries: each [`Retries::next_delay`] waits longer, until [`Retries::reset`] after a
/// success.
#[derive(Debug, Clone)]
pub struct Retries {
    backoff: Backoff,
    retry: u32,
}

impl Retries {
    /// The wait before the next retry (with fresh jitter); counts the retry.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.backoff.delay(self.retry, random_jitter());
        self.retry = self.retry.saturating_add(1);
        delay
    }

    /// Starts over from the first step (after a success).
    pub fn reset(&mut self) {
        self.retry = 0;
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

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn schedule_doubles_and_caps() {
        let b = Backoff::DEFAULT;
        let full: Vec<Duration> = (0..6).map(|r| b.delay(r, 1.0)).collect();
        assert_eq!(full, [ms(500), ms(1000), ms(2000), ms(4000), ms(8000), ms(8000)]);
        assert_eq!(b.delay(0, 0.0), ms(250));
        assert_eq!(b.delay(3, 0.5), ms(3000));
    }

    #[test]
    fn huge_retry_numbers_do_not_overflow() {
        let b = Backoff {
            base: Duration::from_secs(u64::MAX / 2),
            max: Duration::from_secs(60),
            jitter: Jitter::Equal,
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

    /// The engine's schedule for a reply it could not store: 0.25 s doubling to 5 s, exactly.
    #[test]
    fn without_jitter_the_step_is_the_wait() {
        let b = Backoff {
            base: ms(250),
            max: Duration::from_secs(5),
            jitter: Jitter::None,
        };
        let mut retries = b.retries();
        let waits: Vec<Duration> = (0..7).map(|_| retries.next_delay()).collect();
        assert_eq!(
            waits,
            [ms(250), ms(500), ms(1000), ms(2000), ms(4000), ms(5000), ms(5000)]
        );
        retries.reset();
        assert_eq!(retries.next_delay(), ms(250));
    }

    /// The Telegram adapter's schedule: 1 s, 2 s, 4 s … 30 s, each within a tenth either side.
    #[test]
    fn retries_grow_to_a_cap_and_reset() {
        let b = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(30),
            jitter: Jitter::Tenth,
        };
        assert_eq!(b.delay(0, 0.0), ms(900));
        assert_eq!(b.delay(0, 1.0), ms(1100));
        assert_eq!(b.delay(5, 0.5), ms(30_000));
        let mut retries = b.retries();
        let first = retries.next_delay();
        assert!(first >= ms(900) && first <= ms(1100), "{first:?}");
        for _ in 0..10 {
            retries.next_delay();
        }
        let capped = retries.next_delay();
        assert!(capped >= ms(27_000) && capped <= ms(33_000), "{capped:?}");
        retries.reset();
        assert!(retries.next_delay() <= ms(1100));
    }

    proptest! {
        #[test]
        fn delay_is_between_half_step_and_step(retry in 0u32..100, jitter in any::<f64>(), base_ms in 0u64..10_000, max_ms in 0u64..100_000) {
            let b = Backoff { base: Duration::from_millis(base_ms), max: Duration::from_millis(max_ms), jitter: Jitter::Equal };
            let step = b.delay(retry, 1.0);
            let d = b.delay(retry, jitter);
            prop_assert!(step <= b.max);
            prop_assert!(d <= step && d >= step / 2);
            prop_assert!(b.delay(retry, 1.0) <= b.delay(retry.saturating_add(1), 1.0));
        }

        #[test]
        fn every_jitter_stays_in_its_range(retry in 0u32..100, random in any::<f64>(), base_ms in 0u64..10_000, max_ms in 0u64..100_000) {
            let max = Duration::from_millis(max_ms);
            for jitter in [Jitter::None, Jitter::Equal, Jitter::Tenth] {
                let b = Backoff { base: Duration::from_millis(base_ms), max, jitter };
                let step = b.step(retry);
                let d = b.delay(retry, random);
                prop_assert!(step <= max);
                let (low, high) = match jitter {
                    Jitter::None => (step, step),
                    Jitter::Equal => (step / 2, step),
                    Jitter::Tenth => (step - step / 10, step - step / 10 + step / 5),
                };
                prop_assert!(d >= low && d <= high, "{jitter:?}: {d:?} not in {low:?}..={high:?}");
            }
        }
    }
}
