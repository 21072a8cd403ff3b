//! OS stop signals, turned into stop requests.
//!
//! Unix: SIGTERM and SIGINT request a planned stop; SIGHUP a reload of `herald.toml` and the secrets
//! (what nginx and sshd users expect), never a stop. Windows: console control events. A
//! process started detached (no console, no TTY) can still receive spurious Ctrl+C / Ctrl+Break events
//! from console plumbing — a known storm that silently killed detached gateways — so those are absorbed
//! (and logged) when there is no console; an interactive Ctrl+C still stops the gateway. Close, logoff and
//! shutdown events always stop it, since Windows ends the process shortly after anyway.

#[cfg(unix)]
#[path = "unix.rs"]
mod os;
#[cfg(windows)]
#[path = "windows.rs"]
mod os;

use tokio::sync::mpsc;

/// What asked the gateway to stop; recorded in the lifecycle log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSource {
    Signal(&'static str),
    Console(ConsoleEvent),
    ControlChannel,
    Marker,
    /// A supervised worker's monitor went away (its stdin pipe closed).
    MonitorGone,
    /// The Windows Service Control Manager sent a control (the gateway runs as a service).
    Service(ServiceControl),
}

/// The SCM controls that stop a gateway running as a Windows Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceControl {
    /// `SERVICE_CONTROL_STOP` (`herald stop`, `sc stop`, the Services console).
    Stop,
    /// `SERVICE_CONTROL_PRESHUTDOWN`: the machine is shutting down.
    Preshutdown,
}

impl StopSource {
    pub fn describe(self) -> String {
        match self {
            StopSource::Signal(name) => format!("signal:{name}"),
            StopSource::Console(event) => format!("console:{}", event.as_str()),
            StopSource::ControlChannel => "control_channel".into(),
            StopSource::Marker => "marker".into(),
            StopSource::MonitorGone => "monitor_gone".into(),
            StopSource::Service(ServiceControl::Stop) => "scm:stop".into(),
            StopSource::Service(ServiceControl::Preshutdown) => "scm:preshutdown".into(),
        }
    }
}

/// Windows console control events (a type on every OS so the decision below is testable everywhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleEvent {
    CtrlC,
    CtrlBreak,
    Close,
    Logoff,
    Shutdown,
}

impl ConsoleEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsoleEvent::CtrlC => "ctrl_c",
            ConsoleEvent::CtrlBreak => "ctrl_break",
            ConsoleEvent::Close => "ctrl_close",
            ConsoleEvent::Logoff => "ctrl_logoff",
            ConsoleEvent::Shutdown => "ctrl_shutdown",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Stop,
    Absorb,
    /// Re-read the configuration and the secrets (SIGHUP, as nginx and sshd do).
    Reload,
}

/// What to do with a console event. `interactive`: the process has a console window a person can type in.
pub fn console_disposition(event: ConsoleEvent, interactive: bool) -> Disposition {
    match event {
        ConsoleEvent::CtrlC | ConsoleEvent::CtrlBreak if !interactive => Disposition::Absorb,
        _ => Disposition::Stop,
    }
}

/// A signal as delivered to the main loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalEvent {
    pub source: StopSource,
    pub disposition: Disposition,
}

/// Starts listening; events arrive on `events` for the life of the runtime.
pub fn listen(events: mpsc::UnboundedSender<SignalEvent>) -> std::io::Result<()> {
    os::listen(events)
}

/// Whether a person can send this process an interrupt from a terminal or console.
pub fn is_interactive() -> bool {
    os::is_interactive()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detached_processes_absorb_interrupts_but_not_close_or_shutdown() {
        for event in [ConsoleEvent::CtrlC, ConsoleEvent::CtrlBreak] {
            assert_eq!(console_disposition(event, false), Disposition::Absorb);
            assert_eq!(console_disposition(event, true), Disposition::Stop);
        }
        for event in [ConsoleEvent::Close, ConsoleEvent::Logoff, ConsoleEvent::Shutdown] {
            assert_eq!(console_disposition(event, false), Disposition::Stop);
            assert_eq!(console_disposition(event, true), Disposition::Stop);
        }
    }

    #[test]
    fn sources_describe_themselves_for_the_log() {
        assert_eq!(StopSource::Signal("SIGTERM").describe(), "signal:SIGTERM");
        assert_eq!(
            StopSource::Console(ConsoleEvent::Close).describe(),
            "console:ctrl_close"
        );
        assert_eq!(StopSource::Marker.describe(), "marker");
    }
}
