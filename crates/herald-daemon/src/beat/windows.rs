//! Windows leaf of `beat`: a writer thread owns stdout and writes what a one-slot channel hands it, so
//! a pipe the monitor does not read blocks that thread, never the main loop.

use std::io::{self, Write};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};

#[derive(Debug)]
pub(super) struct BeatPipe(SyncSender<u8>);

impl BeatPipe {
    pub(super) fn on_stdout() -> io::Result<BeatPipe> {
        let (beats, to_write) = sync_channel::<u8>(1);
        std::thread::Builder::new()
            .name("herald-beat".into())
            .spawn(move || {
                let mut out = io::stdout().lock();
                while let Ok(beat) = to_write.recv() {
                    if out.write_all(&[beat]).and_then(|()| out.flush()).is_err() {
                        return;
                    }
                }
            })?;
        Ok(BeatPipe(beats))
    }

    /// Hands the beat over; when the slot is taken (the writer is stuck on a full pipe) it is dropped.
    pub(super) fn send(&self, beat: u8) -> io::Result<()> {
        match self.0.try_send(beat) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(io::Error::from(io::ErrorKind::WouldBlock)),
            Err(TrySendError::Disconnected(_)) => Err(io::Error::from(io::ErrorKind::BrokenPipe)),
        }
    }
}
