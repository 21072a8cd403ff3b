//! A gateway that a launchd job runs (`herald run --launchd`) and that cannot start for a reason only a
//! person can fix — the exit-78 failures: a broken `herald.toml`, a key nobody provides, a taken listen
//! address — waits here, idle, instead of exiting.
//!
//! **Invariant:** under launchd, exit 78 is never taken. launchd cannot exempt one exit code from
//! `KeepAlive = {SuccessfulExit = false}`: a process that exits 78 would be started again every
//! `ThrottleInterval`, forever. So the process keeps its lock and PID record, records `startup_failed`
//! with the reason (the state record's detail, a `startup_failed` event with `waiting`), answers the
//! control channel (a `stop` ends it with exit 0, which launchd leaves stopped; a `reload` retries at
//! once), its stop signals and stop markers, and re-reads `herald.toml` when it or the secrets store changes — a
//! fingerprint (length, modification time, content hash) compared once a second, the one poll in the
//! daemon, and only while nothing is served; a change counts once two looks in a row agree, so a file
//! caught half-written is never taken for the fix. A config that loads is handed back and the gateway starts
//! as usual; what to do with each thing heard is the pure [`decide`].

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use herald_home::config::Config;
use herald_home::lifecycle::EventKind;
use herald_home::records::GatewayState;
use herald_home::{ExitCode, Home};
use herald_process::control::{ReloadSummary, Request, Response};
use tokio::sync::mpsc;

use crate::control::{ControlCall, ControlServer};
use crate::marker::{self, MarkerCheck};
use crate::signals::{self, Disposition, SignalEvent};
use crate::startup::StartError;
use crate::state::RecordKeeper;

/// How often the watched files are compared with their last fingerprint.
const POLL: Duration = Duration::from_secs(1);
/// How long a reply to the `reload` that ends the wait is given to be written before the wait's runtime,
/// and the connection with it, ends.
const REPLY_FLUSH: Duration = Duration::from_millis(200);

/// How the wait ended.
#[derive(Debug)]
pub(crate) enum Waited {
    /// `herald.toml` now loads: start the gateway with it.
    Fixed(Box<Config>),
    /// Asked to stop while waiting: exit with `code` (0, or 75 for a restart) and `reason`.
    Stopped { code: ExitCode, reason: String },
}

/// What one file looked like: absent, or its length, modification time and content hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fingerprint {
    Absent,
    Present {
        len: u64,
        modified: Option<SystemTime>,
        hash: u64,
    },
    /// It exists but cannot be read (a change of that is a change too).
    Unreadable(String),
}

impl Fingerprint {
    pub(crate) fn of(path: &Path) -> Fingerprint {
        use std::hash::{Hash, Hasher};
        match std::fs::read(path) {
            Ok(bytes) => {
                let mut hasher = std::hash::DefaultHasher::new();
                bytes.hash(&mut hasher);
                Fingerprint::Present {
                    len: bytes.len() as u64,
                    modified: std::fs::metadata(path).and_then(|m| m.modified()).ok(),
                    hash: hasher.finish(),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Fingerprint::Absent,
            Err(e) => Fingerprint::Unreadable(e.kind().to_string()),
        }
    }
}

/// What the waiting process heard.
#[derive(Debug)]
pub(crate) enum Heard<'a> {
    Call(&'a Request),
    Signal(&'a SignalEvent),
    /// The poll looked for a stop marker (the stop ladder's second rung).
    Marker(&'a MarkerCheck),
    /// The poll found the watched files changed since the last look.
    FilesChanged,
}

/// What to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Answer with the waiting status (`startup_failed`).
    Reply,
    /// Refuse the call: nothing serves to act on (an adapter restart).
    Refuse(&'static str),
    /// Answer, then exit with this code (0 planned stop; 75 when a restart was asked for).
    Stop {
        code: ExitCode,
        source: String,
    },
    /// Read `herald.toml` again now (answering the call, if one asked, with the outcome).
    Retry,
    Nothing,
}

/// The pure decision: every stop source stops (exit 0, which launchd leaves stopped), a reload or a
/// changed file retries, a status question is answered with the wait.
pub(crate) fn decide(heard: &Heard<'_>) -> Step {
    match heard {
        Heard::Call(Request::Ping | Request::Status | Request::Drain) => Step::Reply,
        Heard::Call(Request::Stop { restart }) => Step::Stop {
            code: if *restart { ExitCode::Restart } else { ExitCode::Ok },
            source: "control_channel".into(),
        },
        Heard::Call(Request::Reload) => Step::Retry,
        Heard::Call(Request::RestartAdapter { .. }) => {
            Step::Refuse("the gateway is not serving (it waits for herald.toml to be fixed): no adapter runs")
        }
        Heard::Call(Request::CheckTurn) => Step::Refuse(
            "the gateway is not serving (it waits for herald.toml to be fixed): it takes no turns",
        ),
        Heard::Call(Request::RetryDelivery { .. }) => Step::Refuse(
            "the gateway is not serving (it waits for herald.toml to be fixed): nothing can be delivered",
        ),
        Heard::Signal(event) => match event.disposition {
            Disposition::Stop => Step::Stop {
                code: ExitCode::Ok,
                source: event.source.describe(),
            },
            Disposition::Reload => Step::Retry,
            Disposition::Absorb => Step::Nothing,
        },
        Heard::Marker(MarkerCheck::Stop(marker)) => Step::Stop {
            code: if marker.restart {
                ExitCode::Restart
            } else {
                ExitCode::Ok
            },
            source: "marker".into(),
        },
        Heard::Marker(MarkerCheck::None | MarkerCheck::Ignored { .. }) => Step::Nothing,
        Heard::FilesChanged => Step::Retry,
    }
}

/// The files whose change may fix the start: the config and the secrets store.
fn watched(home: &Home) -> [PathBuf; 2] {
    [home.config_file(), home.secrets_file()]
}

fn fingerprints(paths: &[PathBuf; 2]) -> [Fingerprint; 2] {
    [Fingerprint::of(&paths[0]), Fingerprint::of(&paths[1])]
}

/// The watched files as they were at some moment: a change after it is what the wait looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Baseline([Fingerprint; 2]);

impl Baseline {
    pub(crate) fn now(home: &Home) -> Baseline {
        Baseline(fingerprints(&watched(home)))
    }
}

/// Since when a change counts, so that none made while the start was failing is missed.
#[derive(Debug)]
pub(crate) enum Since {
    /// The files as they were before the failed attempt read them.
    Before(Baseline),
    /// Not known (the config was read by whoever started the process): the first settled look reads
    /// the config once more.
    Unknown,
}

/// Whether the files changed since the last attempt and have stayed as they are since the look before
/// (`seen`): the pure debounce of the poll.
pub(crate) fn settled_change<T: PartialEq>(tried: Option<&T>, seen: &T, now: &T) -> bool {
    now == seen && tried != Some(now)
}

/// Records the wait and blocks until `herald.toml` loads after a change (or a reload), or a stop arrives.
/// `reason` is why the start failed. `Err` only when the wait itself cannot be set up (no runtime, no
/// control channel, no signal handlers): the caller then fails the start as it would have.
pub(crate) fn until_fixed(
    keeper: &mut RecordKeeper,
    reason: &str,
    since: Since,
) -> Result<Waited, StartError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?;
    let waited = runtime.block_on(wait(keeper, reason.to_owned(), since));
    // Ends the control server's task (and with it the listener) before the gateway binds its own.
    runtime.shutdown_timeout(Duration::from_millis(500));
    waited
}

fn record_waiting(keeper: &mut RecordKeeper, reason: &str) {
    tracing::error!(
        "cannot start: {reason}; waiting for herald.toml (or the secrets) to change (run under launchd: \
         exiting 78 would be restarted every ThrottleInterval). `herald stop` ends the wait"
    );
    keeper.transition(GatewayState::StartupFailed, Some(reason.to_owned()));
    keeper.log(
        keeper
            .event(EventKind::StartupFailed)
            .with("error", reason)
            .with("waiting", "herald.toml"),
    );
}

async fn wait(keeper: &mut RecordKeeper, mut reason: String, since: Since) -> Result<Waited, StartError> {
    let home = keeper.home().clone();
    let server = ControlServer::bind(&home).map_err(|source| StartError::ControlChannel {
        endpoint: herald_process::control::endpoint(&home),
        source,
    })?;
    let (calls_tx, mut calls) = mpsc::channel::<ControlCall>(16);
    tokio::spawn(server.serve(calls_tx, keeper.pid()));
    let (signal_tx, mut signals) = mpsc::unbounded_channel::<SignalEvent>();
    signals::listen(signal_tx).map_err(StartError::Signals)?;

    record_waiting(keeper, &reason);
    let paths = watched(&home);
    // `tried`: the files as the last attempt read them; `seen`: as the last look saw them. A change is
    // acted on once two looks in a row agree, so a file caught half-written (truncated, then filled) is
    // never taken for the fix.
    let (mut tried, mut seen) = match since {
        Since::Before(Baseline(before)) => (Some(before.clone()), before),
        // Not known what the failed read saw: the first settled look retries.
        Since::Unknown => (None, fingerprints(&paths)),
    };
    // The first look a whole interval after the one above, so two looks never fall in one write.
    let mut poll = tokio::time::interval_at(tokio::time::Instant::now() + POLL, POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut call = None;
        let mut signal = None;
        let mut changed = false;
        let mut marker_check = MarkerCheck::None;
        tokio::select! {
            Some(c) = calls.recv() => call = Some(c),
            Some(s) = signals.recv() => signal = Some(s),
            _ = poll.tick() => {
                // No file notifications here: the same poll looks for a stop marker.
                marker_check = marker::check(&home, &[keeper.key()], herald_home::time::now_ms());
                if let MarkerCheck::Ignored { why } = &marker_check {
                    keeper.log(keeper.event(EventKind::MarkerIgnored).with("why", why.as_str()));
                }
                let now = fingerprints(&paths);
                if settled_change(tried.as_ref(), &seen, &now) {
                    changed = true;
                    tried = Some(now.clone());
                }
                seen = now;
            }
        }
        let heard = match (&call, &signal, &marker_check) {
            (Some(call), _, _) => Heard::Call(&call.request),
            (_, Some(signal), _) => Heard::Signal(signal),
            (_, _, MarkerCheck::Stop(_)) => Heard::Marker(&marker_check),
            _ if changed => Heard::FilesChanged,
            _ => continue,
        };
        match decide(&heard) {
            Step::Reply => answer(call, waiting_response(keeper)),
            Step::Refuse(why) => answer(call, Response::error(keeper.pid(), why)),
            Step::Stop { code, source } => {
                answer(call, waiting_response(keeper));
                keeper.log(
                    keeper
                        .event(EventKind::StopRequested)
                        .with("source", source.as_str())
                        .with("restart", code == ExitCode::Restart),
                );
                return Ok(Waited::Stopped {
                    code,
                    reason: format!("planned stop ({source}) while waiting for a valid herald.toml"),
                });
            }
            Step::Retry => match Config::load(&home.config_file()) {
                Ok((config, _)) => {
                    tracing::info!("herald.toml loads now; starting");
                    if let Some(call) = call {
                        let _ = call.reply.send(Response {
                            reload: Some(ReloadSummary {
                                applied: vec!["herald.toml (valid now: the gateway starts)".to_owned()],
                                restart_needed: Vec::new(),
                            }),
                            ..waiting_response(keeper)
                        });
                        // The connection's task writes the reply, and ends with this runtime: give it
                        // the moment it needs.
                        tokio::time::sleep(REPLY_FLUSH).await;
                    }
                    return Ok(Waited::Fixed(Box::new(config)));
                }
                Err(e) => {
                    let now = e.to_string();
                    if let Some(call) = call {
                        let _ = call
                            .reply
                            .send(Response::error(keeper.pid(), format!("still invalid: {now}")));
                    }
                    if now != reason {
                        reason = now;
                        record_waiting(keeper, &reason);
                    }
                }
            },
            Step::Nothing => {}
        }
    }
}

fn waiting_response(keeper: &RecordKeeper) -> Response {
    Response {
        ok: true,
        pid: keeper.pid(),
        state: Some(GatewayState::StartupFailed),
        gateway_pid: Some(keeper.gateway_pid()),
        in_flight: Some(0),
        queued: Some(0),
        uptime_ms: Some(herald_home::time::now_ms().saturating_sub(keeper.started_at_ms())),
        ..Response::default()
    }
}

fn answer(call: Option<ControlCall>, response: Response) {
    if let Some(call) = call {
        let _ = call.reply.send(response);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signals::StopSource;

    #[test]
    fn every_stop_source_stops_with_exit_0_and_a_restart_with_75() {
        assert_eq!(
            decide(&Heard::Call(&Request::Stop { restart: false })),
            Step::Stop {
                code: ExitCode::Ok,
                source: "control_channel".into()
            }
        );
        assert!(matches!(
            decide(&Heard::Call(&Request::Stop { restart: true })),
            Step::Stop {
                code: ExitCode::Restart,
                ..
            }
        ));
        let term = SignalEvent {
            source: StopSource::Signal("SIGTERM"),
            disposition: Disposition::Stop,
        };
        assert!(matches!(
            decide(&Heard::Signal(&term)),
            Step::Stop {
                code: ExitCode::Ok,
                ..
            }
        ));
    }

    #[test]
    fn a_marker_for_this_process_stops_it_and_others_are_not_obeyed() {
        let marker = |restart| {
            MarkerCheck::Stop(herald_home::records::StopMarker {
                version: 1,
                target: herald_home::records::ProcessKey {
                    pid: 1,
                    start_time: 2,
                },
                expires_at_ms: 1,
                requested_by: "test".into(),
                restart,
            })
        };
        assert!(matches!(
            decide(&Heard::Marker(&marker(false))),
            Step::Stop {
                code: ExitCode::Ok,
                ..
            }
        ));
        assert!(matches!(
            decide(&Heard::Marker(&marker(true))),
            Step::Stop {
                code: ExitCode::Restart,
                ..
            }
        ));
        let ignored = MarkerCheck::Ignored {
            why: "foreign".into(),
        };
        assert_eq!(decide(&Heard::Marker(&ignored)), Step::Nothing);
    }

    #[test]
    fn a_reload_or_a_changed_file_retries_and_questions_are_answered() {
        assert_eq!(decide(&Heard::Call(&Request::Reload)), Step::Retry);
        assert_eq!(decide(&Heard::FilesChanged), Step::Retry);
        let hup = SignalEvent {
            source: StopSource::Signal("SIGHUP"),
            disposition: Disposition::Reload,
        };
        assert_eq!(decide(&Heard::Signal(&hup)), Step::Retry);
        for request in [Request::Ping, Request::Status, Request::Drain] {
            assert_eq!(decide(&Heard::Call(&request)), Step::Reply);
        }
        let absorbed = SignalEvent {
            source: StopSource::Signal("SIGINT"),
            disposition: Disposition::Absorb,
        };
        assert_eq!(decide(&Heard::Signal(&absorbed)), Step::Nothing);
    }

    #[test]
    fn a_change_is_acted_on_once_two_looks_agree() {
        // Unchanged since the attempt: nothing to do.
        assert!(!settled_change(Some(&1), &1, &1));
        // Caught mid-write: different from the last look, wait for the next.
        assert!(!settled_change(Some(&1), &1, &2));
        // The same on two looks and not what was tried: retry.
        assert!(settled_change(Some(&1), &2, &2));
        // What the failed read saw is unknown: the first settled look retries, an unsettled one waits.
        assert!(settled_change(None, &1, &1));
        assert!(!settled_change(None, &1, &2));
    }

    #[test]
    fn a_fingerprint_changes_with_content_even_at_the_same_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.toml");
        assert_eq!(Fingerprint::of(&path), Fingerprint::Absent);
        std::fs::write(&path, "a = 1").unwrap();
        let first = Fingerprint::of(&path);
        assert_eq!(first, Fingerprint::of(&path), "an unchanged file reads the same");
        std::fs::write(&path, "a = 2").unwrap();
        assert_ne!(first, Fingerprint::of(&path));
    }
}
