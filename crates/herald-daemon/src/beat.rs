//! The worker's side of the watchdog (`crate::supervise::watchdog`): one byte on its stdout — a pipe its
//! monitor reads — every interval the monitor chose, written from the main loop's `select!`, so a wedged
//! loop stops the beats.
//!
//! **Invariant:** a beat never holds up the main loop. On Unix the pipe is non-blocking (`O_NONBLOCK`):
//! a full pipe (a stopped monitor, 64 KiB of beats unread) drops the beat at once. On Windows the byte
//! is handed to a writer thread through a one-slot channel: when the thread is blocked on a full pipe, the
//! slot is taken and the beat is dropped. Either way the main loop spends one system call (or one channel
//! send) per beat, and a dropped beat only matters to a monitor that is not reading anyway.
//!
//! The interval is decided by the monitor and passed in [`BEAT_ENV`] (milliseconds), never read from
//! the config by the worker, so the two cannot disagree; a worker started without it does not beat.
//!
//! The pace comes from a clock thread (`herald-beat`) that sleeps an interval and then hands the main
//! loop a tick through a one-slot channel, rather than from a tokio timer in the loop: the loop runs on
//! the thread that called `block_on`, which is not the runtime's timer driver, so a tokio timer there
//! costs the driver thread a wake-up to fire it and another to take the next deadline. A beat then costs
//! three: the clock thread, the main loop, the monitor's read — the least that proves the loop turns.

use std::time::Duration;

#[cfg(unix)]
#[path = "beat/unix.rs"]
mod os;
#[cfg(windows)]
#[path = "beat/windows.rs"]
mod os;

/// The environment variable through which a monitor tells its worker how often to beat (milliseconds).
pub const BEAT_ENV: &str = "HERALD_BEAT_MS";

/// The beat written (any byte would do; a line break keeps a stdout shown by hand readable).
const BEAT: u8 = b'\n';

/// The beats of one worker's main loop.
#[derive(Debug)]
pub struct Beat(Option<(tokio::sync::mpsc::Receiver<()>, os::BeatPipe)>);

impl Beat {
    /// No beats (a standalone gateway, or a worker whose monitor asked for none).
    pub fn none() -> Beat {
        Beat(None)
    }

    /// The beats a worker's monitor asked for in [`BEAT_ENV`], on stdout; the first is sent at once.
    pub fn from_env() -> Beat {
        let Some(period) = std::env::var(BEAT_ENV).ok().as_deref().and_then(period_from) else {
            return Beat::none();
        };
        match os::BeatPipe::on_stdout().and_then(|pipe| Ok((clock(period)?, pipe))) {
            Ok((ticks, pipe)) => {
                if let Err(e) = pipe.send(BEAT) {
                    tracing::debug!("first beat not sent: {e}");
                }
                Beat(Some((ticks, pipe)))
            }
            Err(e) => {
                tracing::warn!("cannot beat for the monitor's watchdog: {e}");
                Beat::none()
            }
        }
    }

    /// Waits for the next tick and sends the beat; forever when there are no beats (for a `select!`
    /// branch).
    pub async fn tick(&mut self) {
        match &mut self.0 {
            Some((ticks, pipe)) => {
                if ticks.recv().await.is_none() {
                    // The clock thread is gone (it cannot be, short of a panic): no more beats.
                    self.0 = None;
                    return;
                }
                if let Err(e) = pipe.send(BEAT) {
                    tracing::debug!("beat not sent: {e}");
                }
            }
            None => std::future::pending::<()>().await,
        }
    }
}

/// The clock thread: a tick every `period`. A tick the loop has not taken yet is not doubled (one
/// slot); the thread ends at the first tick after the loop dropped its receiver.
fn clock(period: Duration) -> std::io::Result<tokio::sync::mpsc::Receiver<()>> {
    let (ticks, taken) = tokio::sync::mpsc::channel(1);
    std::thread::Builder::new()
        .name("herald-beat".into())
        .spawn(move || {
            loop {
                std::thread::sleep(period);
                if let Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) = ticks.try_send(()) {
                    return;
                }
            }
        })?;
    Ok(taken)
}

/// The period in [`BEAT_ENV`]: a whole number of milliseconds, not zero.
fn period_from(value: &str) -> Option<Duration> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_period_is_whole_positive_milliseconds() {
        assert_eq!(period_from("2000"), Some(Duration::from_secs(2)));
        assert_eq!(period_from(" 500\n"), Some(Duration::from_millis(500)));
        assert_eq!(period_from("0"), None);
        assert_eq!(period_from("-1"), None);
        assert_eq!(period_from("2s"), None);
    }
}
