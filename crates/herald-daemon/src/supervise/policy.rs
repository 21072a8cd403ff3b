//! When to restart a worker, and when to give up. Pure: time is passed in, so every rule is unit-tested.
//!
//! - Worker exit 0 → the monitor exits 0 (a planned stop reached the worker directly).
//! - 75 → restart at once (a restart was requested; not a failure, not counted by the breaker).
//! - 78 → fatal configuration: no restart, the monitor exits 78.
//! - Anything else (1, a panic's 101, a signal) is unexpected: restart at once, then after 1 s, 2 s, 4 s …
//!   capped at 30 s; the delay resets once a worker has run healthily for 60 s. More than `max_exits`
//!   unexpected exits within `window` trips the crash-loop breaker.
//! - After the monitor itself forwarded a planned stop, nothing is restarted whatever the exit code.
//! - A worker that cannot be started at all (the spawn itself fails) is tried again after 100 ms, 500 ms,
//!   2 s and 5 s before the monitor gives up with exit 1: process creation fails for passing reasons (an
//!   antivirus holding a freshly replaced executable, a full process table, Wine's `CreateProcess` under
//!   load), and a gateway should not end on one of them.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use herald_home::ExitCode;

pub const BACKOFF_CAP: Duration = Duration::from_secs(30);
pub const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// How a worker process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerExit {
    Code(i32),
    /// Killed by a signal (Unix).
    Signal(i32),
}

impl WorkerExit {
    /// A planned ending by the contract: 0 (planned stop) or 75 (restart requested).
    pub fn is_planned(self) -> bool {
        matches!(
            self,
            WorkerExit::Code(code) if matches!(ExitCode::from_code(code), Some(ExitCode::Ok | ExitCode::Restart))
        )
    }

    pub fn describe(self) -> String {
        match self {
            WorkerExit::Code(code) => format!("exit code {code}"),
            WorkerExit::Signal(signal) => format!("killed by signal {signal}{}", signal_name(signal)),
        }
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        6 => " (SIGABRT)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        15 => " (SIGTERM)",
        _ => "",
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The monitor exits with this code.
    Exit(ExitCode),
    Restart {
        delay: Duration,
        reason: String,
    },
    /// Too many unexpected exits: record `crash_looping` and exit 1.
    CrashLoop {
        exits: usize,
        reason: String,
    },
}

#[derive(Debug, Clone)]
pub struct RestartPolicy {
    pub max_exits: u32,
    pub window: Duration,
}

/// The supervisor's memory of recent exits.
#[derive(Debug)]
pub struct Supervisor {
    policy: RestartPolicy,
    unexpected: VecDeque<Instant>,
    consecutive: u32,
}

impl Supervisor {
    pub fn new(policy: RestartPolicy) -> Supervisor {
        Supervisor {
            policy,
            unexpected: VecDeque::new(),
            consecutive: 0,
        }
    }

    /// Decides what follows a worker exit. `ran_for`: how long the worker lived; `planned`: the monitor
    /// itself asked the worker to stop.
    pub fn on_exit(&mut self, exit: WorkerExit, ran_for: Duration, now: Instant, planned: bool) -> Decision {
        match (planned, exit) {
            (_, WorkerExit::Code(78)) => return Decision::Exit(ExitCode::Config),
            (true, WorkerExit::Code(0 | 75)) | (false, WorkerExit::Code(0)) => {
                return Decision::Exit(ExitCode::Ok);
            }
            (true, _) => return Decision::Exit(ExitCode::Failure),
            (false, WorkerExit::Code(75)) => {
                return Decision::Restart {
                    delay: Duration::ZERO,
                    reason: "restart requested (exit 75)".into(),
                };
            }
            (false, _) => {}
        }
        if ran_for >= HEALTHY_AFTER {
            self.consecutive = 0;
        }
        self.unexpected.push_back(now);
        while let Some(first) = self.unexpected.front() {
            if now.duration_since(*first) > self.policy.window {
                self.unexpected.pop_front();
            } else {
                break;
            }
        }
        let reason = format!("worker {}", exit.describe());
        if self.unexpected.len() > self.policy.max_exits as usize {
            return Decision::CrashLoop {
                exits: self.unexpected.len(),
                reason,
            };
        }
        let delay = match self.consecutive {
            0 => Duration::ZERO,
            n => Duration::from_secs(1u64 << (n - 1).min(5)).min(BACKOFF_CAP),
        };
        self.consecutive += 1;
        Decision::Restart { delay, reason }
    }
}

/// How long to wait before trying again after the `failures`-th spawn failure in a row (counting from
/// 1), or `None` when the monitor gives up.
pub fn spawn_retry_delay(failures: u32) -> Option<Duration> {
    const DELAYS_MS: [u64; 4] = [100, 500, 2_000, 5_000];
    let index = usize::try_from(failures.checked_sub(1)?).ok()?;
    DELAYS_MS.get(index).copied().map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_spawn_is_tried_four_more_times_within_eight_seconds() {
        let delays: Vec<Duration> = (1..).map_while(spawn_retry_delay).collect();
        assert_eq!(delays.len(), 4);
        assert!(delays.windows(2).all(|w| w[0] < w[1]));
        assert!(delays.iter().sum::<Duration>() < Duration::from_secs(8));
        assert_eq!(spawn_retry_delay(0), None);
        assert_eq!(spawn_retry_delay(5), None);
    }

    fn supervisor(max_exits: u32, window_secs: u64) -> Supervisor {
        Supervisor::new(RestartPolicy {
            max_exits,
            window: Duration::from_secs(window_secs),
        })
    }

    fn delay(d: &Decision) -> Duration {
        match d {
            Decision::Restart { delay, .. } => *delay,
            other => panic!("expected a restart, got {other:?}"),
        }
    }

    #[test]
    fn only_the_planned_codes_are_planned_exits() {
        assert!(WorkerExit::Code(0).is_planned());
        assert!(WorkerExit::Code(75).is_planned());
        for exit in [
            WorkerExit::Code(1),
            WorkerExit::Code(78),
            WorkerExit::Code(101),
            WorkerExit::Signal(9),
        ] {
            assert!(!exit.is_planned(), "{exit:?}");
        }
    }

    #[test]
    fn exit_codes_follow_the_contract() {
        let mut s = supervisor(5, 300);
        let now = Instant::now();
        let short = Duration::from_millis(10);
        assert_eq!(
            s.on_exit(WorkerExit::Code(0), short, now, false),
            Decision::Exit(ExitCode::Ok)
        );
        assert_eq!(
            s.on_exit(WorkerExit::Code(78), short, now, false),
            Decision::Exit(ExitCode::Config)
        );
        assert_eq!(
            delay(&s.on_exit(WorkerExit::Code(75), short, now, false)),
            Duration::ZERO
        );
        // Planned by the monitor: never restart.
        assert_eq!(
            s.on_exit(WorkerExit::Code(0), short, now, true),
            Decision::Exit(ExitCode::Ok)
        );
        assert_eq!(
            s.on_exit(WorkerExit::Code(75), short, now, true),
            Decision::Exit(ExitCode::Ok)
        );
        assert_eq!(
            s.on_exit(WorkerExit::Code(1), short, now, true),
            Decision::Exit(ExitCode::Failure)
        );
        assert_eq!(
            s.on_exit(WorkerExit::Signal(9), short, now, true),
            Decision::Exit(ExitCode::Failure)
        );
    }

    #[test]
    fn backoff_starts_at_zero_doubles_and_caps() {
        let mut s = supervisor(1000, 86_400);
        let start = Instant::now();
        let delays: Vec<u64> = (0..9)
            .map(|i| {
                let d = s.on_exit(
                    WorkerExit::Code(1),
                    Duration::from_millis(5),
                    start + Duration::from_secs(i),
                    false,
                );
                delay(&d).as_secs()
            })
            .collect();
        assert_eq!(delays, vec![0, 1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn healthy_running_resets_the_backoff() {
        let mut s = supervisor(1000, 86_400);
        let t = Instant::now();
        for i in 0..4 {
            s.on_exit(
                WorkerExit::Code(1),
                Duration::ZERO,
                t + Duration::from_secs(i),
                false,
            );
        }
        let d = s.on_exit(
            WorkerExit::Signal(9),
            HEALTHY_AFTER,
            t + Duration::from_secs(100),
            false,
        );
        assert_eq!(delay(&d), Duration::ZERO);
    }

    #[test]
    fn breaker_trips_on_more_than_max_exits_within_the_window() {
        let mut s = supervisor(3, 60);
        let t = Instant::now();
        for i in 0..3 {
            assert!(matches!(
                s.on_exit(
                    WorkerExit::Code(1),
                    Duration::ZERO,
                    t + Duration::from_secs(i),
                    false
                ),
                Decision::Restart { .. }
            ));
        }
        match s.on_exit(
            WorkerExit::Code(1),
            Duration::ZERO,
            t + Duration::from_secs(3),
            false,
        ) {
            Decision::CrashLoop { exits, reason } => {
                assert_eq!(exits, 4);
                assert!(reason.contains("exit code 1"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exits_outside_the_window_are_forgotten() {
        let mut s = supervisor(2, 10);
        let t = Instant::now();
        for i in [0, 1] {
            s.on_exit(
                WorkerExit::Code(1),
                Duration::ZERO,
                t + Duration::from_secs(i),
                false,
            );
        }
        let d = s.on_exit(
            WorkerExit::Code(1),
            Duration::ZERO,
            t + Duration::from_secs(30),
            false,
        );
        assert!(matches!(d, Decision::Restart { .. }), "{d:?}");
    }

    #[test]
    fn restart_requests_do_not_count_towards_the_breaker() {
        let mut s = supervisor(1, 60);
        let t = Instant::now();
        for _ in 0..10 {
            assert!(matches!(
                s.on_exit(WorkerExit::Code(75), Duration::ZERO, t, false),
                Decision::Restart { .. }
            ));
        }
    }
}
