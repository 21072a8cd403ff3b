//! What the serving gateway does with each thing its main loop hears, as a pure function: the loop in
//! `run` only waits, reads, and carries out the [`Step`] decided here.
//!
//! **Invariant:** every stop source ends in [`Step::Stop`] — the one `shutdown` path — and nothing else
//! does: a control-channel `stop`, a stop signal (OS signal, SCM control, the monitor gone), or a marker
//! for this process. Absorbed signals and ignored markers are logged, never obeyed. While draining, a
//! second stop signal cuts the drain short ([`DrainStep::CutShort`]); a second `stop` call is only
//! answered.

use herald_home::records::StopMarker;
use herald_process::control::Request;

use crate::marker::MarkerCheck;
use crate::signals::{Disposition, SignalEvent, StopSource};

/// A stop order: where it came from and whether a restart was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StopOrder {
    pub source: StopSource,
    pub restart: bool,
}

/// One thing the main loop heard.
#[derive(Debug)]
pub(crate) enum Heard<'a> {
    Call(&'a Request),
    Signal(&'a SignalEvent),
    /// A marker was checked (and consumed or removed by the check).
    Marker(&'a MarkerCheck),
    /// The heartbeat timer, or a push adapter's state changed: rewrite the state record.
    Heartbeat,
}

/// What to do about it while serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Answer the call with the gateway's status.
    Reply,
    /// Answer, then carry out a planned stop.
    Stop(StopOrder),
    /// Answer with the drain's outcome once it is over (the control channel's `drain`).
    Drain,
    /// Re-read the configuration and the secrets, apply what can change live, and answer with what was
    /// done (a control-channel `reload`, or SIGHUP: `source` names it).
    Reload(String),
    /// Restart one chat adapter inside the gateway and answer once it runs again (or why it cannot).
    RestartAdapter(String),
    /// Send a reply that was set aside again, and answer whether there was one.
    RetryDelivery(i64),
    /// Make one synthetic turn through the journal, and answer whether it went through.
    CheckTurn,
    /// Log a signal that was absorbed (a spurious Ctrl+C with no console).
    LogAbsorbed(String),
    /// Log a marker that was not obeyed.
    LogIgnoredMarker(String),
    /// Rewrite the state record.
    Heartbeat,
    Nothing,
}

pub(crate) fn while_serving(heard: &Heard<'_>) -> Step {
    match heard {
        Heard::Call(Request::Ping | Request::Status) => Step::Reply,
        Heard::Call(Request::Stop { restart }) => Step::Stop(StopOrder {
            source: StopSource::ControlChannel,
            restart: *restart,
        }),
        Heard::Call(Request::Drain) => Step::Drain,
        Heard::Call(Request::Reload) => Step::Reload("control_channel".into()),
        Heard::Call(Request::RestartAdapter { adapter }) => Step::RestartAdapter(adapter.clone()),
        Heard::Call(Request::RetryDelivery { turn_id }) => Step::RetryDelivery(*turn_id),
        Heard::Call(Request::CheckTurn) => Step::CheckTurn,
        Heard::Signal(event) => match event.disposition {
            Disposition::Stop => Step::Stop(StopOrder {
                source: event.source,
                restart: false,
            }),
            Disposition::Absorb => Step::LogAbsorbed(event.source.describe()),
            Disposition::Reload => Step::Reload(event.source.describe()),
        },
        Heard::Marker(MarkerCheck::Stop(StopMarker { restart, .. })) => Step::Stop(StopOrder {
            source: StopSource::Marker,
            restart: *restart,
        }),
        Heard::Marker(MarkerCheck::Ignored { why }) => Step::LogIgnoredMarker(why.clone()),
        Heard::Marker(MarkerCheck::None) => Step::Nothing,
        Heard::Heartbeat => Step::Heartbeat,
    }
}

/// What to do about what is heard while a drain runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DrainStep {
    /// Answer the call with the gateway's (draining) status.
    Reply,
    /// A call that asks for work the draining gateway no longer does: refused, with why (a status
    /// reply would tell its caller the work was done).
    Refuse(&'static str),
    /// A second stop signal means "now": cut the drain (cut turns resume after the restart).
    CutShort(String),
    Ignore,
}

pub(crate) fn while_draining(heard: &Heard<'_>) -> DrainStep {
    match heard {
        Heard::Call(Request::CheckTurn) => DrainStep::Refuse("the gateway is draining: it takes no turns"),
        Heard::Call(Request::RetryDelivery { .. }) => {
            DrainStep::Refuse("the gateway is draining: retry the delivery once it runs again")
        }
        Heard::Call(Request::RestartAdapter { .. }) => {
            DrainStep::Refuse("the gateway is draining: its adapters are stopping")
        }
        Heard::Call(_) => DrainStep::Reply,
        Heard::Signal(SignalEvent {
            source,
            disposition: Disposition::Stop,
        }) => DrainStep::CutShort(source.describe()),
        _ => DrainStep::Ignore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signals::ServiceControl;

    fn signal(source: StopSource, disposition: Disposition) -> SignalEvent {
        SignalEvent { source, disposition }
    }

    fn marker(restart: bool) -> MarkerCheck {
        MarkerCheck::Stop(StopMarker {
            version: 1,
            target: herald_home::records::ProcessKey {
                pid: 1,
                start_time: 2,
            },
            expires_at_ms: 1,
            requested_by: "test".into(),
            restart,
        })
    }

    #[test]
    fn every_stop_source_is_a_stop_order_and_nothing_else_is() {
        assert_eq!(
            while_serving(&Heard::Call(&Request::Stop { restart: true })),
            Step::Stop(StopOrder {
                source: StopSource::ControlChannel,
                restart: true
            })
        );
        for source in [
            StopSource::Signal("SIGTERM"),
            StopSource::MonitorGone,
            StopSource::Service(ServiceControl::Preshutdown),
        ] {
            assert_eq!(
                while_serving(&Heard::Signal(&signal(source, Disposition::Stop))),
                Step::Stop(StopOrder {
                    source,
                    restart: false
                })
            );
        }
        assert_eq!(
            while_serving(&Heard::Marker(&marker(true))),
            Step::Stop(StopOrder {
                source: StopSource::Marker,
                restart: true
            })
        );
        for heard in [
            Heard::Call(&Request::Ping),
            Heard::Call(&Request::Status),
            Heard::Call(&Request::Drain),
            Heard::Marker(&MarkerCheck::None),
            Heard::Marker(&MarkerCheck::Ignored {
                why: "expired".into(),
            }),
            Heard::Heartbeat,
        ] {
            assert!(!matches!(while_serving(&heard), Step::Stop(_)), "{heard:?}");
        }
    }

    #[test]
    fn sighup_and_the_reload_call_reload_and_never_stop() {
        let hup = signal(StopSource::Signal("SIGHUP"), Disposition::Reload);
        assert_eq!(
            while_serving(&Heard::Signal(&hup)),
            Step::Reload("signal:SIGHUP".into())
        );
        assert_eq!(
            while_serving(&Heard::Call(&Request::Reload)),
            Step::Reload("control_channel".into())
        );
        // While draining there is nothing to reload into: ignored, a reload call answered.
        assert_eq!(while_draining(&Heard::Signal(&hup)), DrainStep::Ignore);
        assert_eq!(while_draining(&Heard::Call(&Request::Reload)), DrainStep::Reply);
        assert!(matches!(
            while_draining(&Heard::Call(&Request::CheckTurn)),
            DrainStep::Refuse(_)
        ));
    }

    #[test]
    fn absorbed_signals_and_ignored_markers_are_logged_not_obeyed() {
        let absorbed = signal(StopSource::Signal("SIGINT"), Disposition::Absorb);
        assert_eq!(
            while_serving(&Heard::Signal(&absorbed)),
            Step::LogAbsorbed("signal:SIGINT".into())
        );
        assert_eq!(
            while_serving(&Heard::Marker(&MarkerCheck::Ignored {
                why: "foreign".into()
            })),
            Step::LogIgnoredMarker("foreign".into())
        );
    }

    #[test]
    fn during_a_drain_a_second_stop_signal_cuts_it_and_calls_are_answered() {
        let term = signal(StopSource::Signal("SIGTERM"), Disposition::Stop);
        assert_eq!(
            while_draining(&Heard::Signal(&term)),
            DrainStep::CutShort("signal:SIGTERM".into())
        );
        let absorbed = signal(StopSource::Signal("SIGINT"), Disposition::Absorb);
        assert_eq!(while_draining(&Heard::Signal(&absorbed)), DrainStep::Ignore);
        assert_eq!(
            while_draining(&Heard::Call(&Request::Stop { restart: false })),
            DrainStep::Reply
        );
        assert_eq!(while_draining(&Heard::Marker(&marker(false))), DrainStep::Ignore);
    }
}
