//! Windows leaf: console control events through tokio, and console detection.

use std::io;

use tokio::signal::windows;
use tokio::sync::mpsc;
use windows_sys::Win32::System::Console::GetConsoleWindow;

use super::{ConsoleEvent, SignalEvent, StopSource, console_disposition};

pub(super) fn listen(events: mpsc::UnboundedSender<SignalEvent>) -> io::Result<()> {
    let interactive = is_interactive();
    macro_rules! forward {
        ($ctor:path, $event:expr) => {{
            let mut stream = $ctor()?;
            let events = events.clone();
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    let event = SignalEvent {
                        source: StopSource::Console($event),
                        disposition: console_disposition($event, interactive),
                    };
                    if events.send(event).is_err() {
                        return;
                    }
                }
            });
        }};
    }
    forward!(windows::ctrl_c, ConsoleEvent::CtrlC);
    forward!(windows::ctrl_break, ConsoleEvent::CtrlBreak);
    forward!(windows::ctrl_close, ConsoleEvent::Close);
    forward!(windows::ctrl_logoff, ConsoleEvent::Logoff);
    forward!(windows::ctrl_shutdown, ConsoleEvent::Shutdown);
    Ok(())
}

pub(super) fn is_interactive() -> bool {
    // SAFETY: GetConsoleWindow has no preconditions; null means this process has no console window.
    !unsafe { GetConsoleWindow() }.is_null()
}
