//! A minimal control-channel client: one `{"op":"ping"}` line over the gateway's Unix socket, one JSON
//! line back. Only the worker-restart figure uses it, and that figure is Linux-only.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Connects to `socket`, sends a ping and returns the parsed reply. Nothing blocks past `deadline`.
pub fn ping(socket: &Path, deadline: Instant) -> io::Result<Value> {
    let stream = UnixStream::connect(socket)?;
    // A zero timeout would mean "block forever" to the socket API, so never go below 1 ms.
    let remaining = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream.set_read_timeout(Some(remaining))?;
    stream.set_write_timeout(Some(remaining))?;
    (&stream).write_all(b"{\"op\":\"ping\"}\n")?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the control channel closed without replying",
        ));
    }
    serde_json::from_str(&line).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("reply is not JSON ({e}): {line:?}"),
        )
    })
}
