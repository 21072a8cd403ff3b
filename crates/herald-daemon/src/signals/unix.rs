//! Unix leaf: SIGTERM, SIGINT, SIGHUP through tokio's signal driver.

use std::io::{self, IsTerminal};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use super::{Disposition, SignalEvent, StopSource};

pub(super) fn listen(events: mpsc::UnboundedSender<SignalEvent>) -> io::Result<()> {
    for (kind, name) in [
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::hangup(), "SIGHUP"),
    ] {
        let mut stream = signal(kind)?;
        let events = events.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                let event = SignalEvent {
                    source: StopSource::Signal(name),
                    disposition: Disposition::Stop,
                };
                if events.send(event).is_err() {
                    return;
                }
            }
        });
    }
    Ok(())
}

pub(super) fn is_interactive() -> bool {
    io::stdin().is_terminal()
}
