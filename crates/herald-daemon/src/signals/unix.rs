//! Unix leaf: SIGTERM, SIGINT (stop) and SIGHUP (reload) through tokio's signal driver.

use std::io::{self, IsTerminal};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use super::{Disposition, SignalEvent, StopSource};

pub(super) fn listen(events: mpsc::UnboundedSender<SignalEvent>) -> io::Result<()> {
    for (kind, name, disposition) in [
        (SignalKind::terminate(), "SIGTERM", Disposition::Stop),
        (SignalKind::interrupt(), "SIGINT", Disposition::Stop),
        (SignalKind::hangup(), "SIGHUP", Disposition::Reload),
    ] {
        let mut stream = signal(kind)?;
        let events = events.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                let event = SignalEvent {
                    source: StopSource::Signal(name),
                    disposition,
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
