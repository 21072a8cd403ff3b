//! Telling a service manager that the gateway is ready, alive, or stopping: `sd_notify` under systemd
//! ([`systemd`]), the SCM's service status under Windows ([`scm`]), nothing otherwise.
//!
//! **Invariant:** the notifier is chosen once, by whoever starts the process — the binary from the
//! environment ([`Notifier::from_env`]), the Windows Service entry point with its SCM session — and
//! handed down in [`crate::RunOptions`]; no part of the daemon reaches a manager through a global. Every
//! notification is best effort and never blocks or fails the gateway.

pub mod scm;
pub mod systemd;

use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;

use crate::signals::SignalEvent;
pub use scm::ScmSession;
pub use systemd::SdNotify;

/// Who hears about the gateway's readiness.
#[derive(Debug, Clone, Default)]
pub enum Notifier {
    /// No manager listens (a terminal, `herald start`, a logon task, a worker).
    #[default]
    None,
    /// systemd, through `NOTIFY_SOCKET` (a `Type=notify` unit).
    Systemd(SdNotify),
    /// The Windows SCM: this process is a Windows Service.
    Scm(Arc<ScmSession>),
}

impl Notifier {
    /// systemd when it asked for notifications, else none (the SCM is chosen by the service entry point).
    pub fn from_env() -> Notifier {
        SdNotify::from_env().map_or(Notifier::None, Notifier::Systemd)
    }

    /// The gateway serves: `READY=1` / `SERVICE_RUNNING`.
    pub fn ready(&self) {
        match self {
            Notifier::None => {}
            Notifier::Systemd(sd) => sd.ready(),
            Notifier::Scm(session) => session.ready(),
        }
    }

    /// A planned stop began: `STOPPING=1` / `SERVICE_STOP_PENDING`.
    pub fn stopping(&self) {
        match self {
            Notifier::None => {}
            Notifier::Systemd(sd) => sd.stopping(),
            Notifier::Scm(session) => session.stopping(),
        }
    }

    /// The watchdog ticker: `Some` only when systemd watches this process (`WatchdogSec`); pinged from
    /// the main loop, so a wedged loop stops the pings and systemd restarts the process.
    pub fn watchdog(&self) -> Watchdog {
        let sd = match self {
            Notifier::Systemd(sd) => sd.clone(),
            _ => return Watchdog(None),
        };
        Watchdog(systemd::watchdog_interval().map(|period| {
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            (interval, sd)
        }))
    }

    /// The process's stop channel: SCM Stop and Preshutdown arrive on it as stop requests (a control that
    /// came first is delivered now). No-op for the others.
    pub fn attach(&self, events: UnboundedSender<SignalEvent>) {
        if let Notifier::Scm(session) = self {
            session.attach(events);
        }
    }

    /// A Windows Service whose start is still pending: a monitor then reports [`Self::ready`] when its
    /// worker serves.
    pub fn awaiting_ready(&self) -> bool {
        matches!(self, Notifier::Scm(session) if session.starting())
    }
}

/// The watchdog pings of one loop.
#[derive(Debug)]
pub struct Watchdog(Option<(tokio::time::Interval, SdNotify)>);

impl Watchdog {
    /// Waits for the next tick and pings; forever when no watchdog is asked for (for a `select!` branch).
    pub async fn tick(&mut self) {
        self.due().await;
        self.ping();
    }

    /// Waits for the next tick without pinging (a monitor pings only while its worker beats); forever
    /// when no watchdog is asked for.
    pub async fn due(&mut self) {
        match &mut self.0 {
            Some((interval, _)) => {
                interval.tick().await;
            }
            None => std::future::pending::<()>().await,
        }
    }

    /// One `WATCHDOG=1`, when a watchdog is asked for.
    pub fn ping(&self) {
        if let Some((_, sd)) = &self.0 {
            sd.watchdog();
        }
    }
}
