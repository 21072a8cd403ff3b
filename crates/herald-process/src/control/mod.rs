//! The client side of the local control channel: a Unix domain socket (Unix) or a named pipe (Windows),
//! for the current user only. The server lives in `herald-daemon`; both speak [`protocol`].
//!
//! **Invariant:** the client talks only to its own user's gateway (peer uid on Unix; on Windows the
//! pipe's DACL admits only this user, so a foreign server cannot be reached by name and squatting is
//! refused by the server creating the first instance), and every call is bounded by its timeout, so a
//! wedged gateway costs the caller the timeout and never more.

pub mod protocol;

#[cfg(unix)]
#[path = "unix.rs"]
mod os;
#[cfg(windows)]
#[path = "windows.rs"]
mod os;

use std::io;
use std::time::Duration;

use herald_home::Home;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

pub use protocol::{AgentStatus, DrainSummary, ProtocolError, ReloadSummary, Request, Response};

/// The endpoint a home's control channel uses on this OS, as text for records and messages.
pub fn endpoint(home: &Home) -> String {
    os::endpoint(home)
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no gateway is listening on {endpoint}")]
    NotListening { endpoint: String },
    #[error("the control channel did not answer within {0:?}")]
    Timeout(Duration),
    #[error("refusing a control channel served by {0}: not this user's gateway")]
    WrongPeer(String),
    #[error("control channel I/O failed: {0}")]
    Io(#[from] io::Error),
    #[error("the gateway sent a malformed reply: {0}")]
    BadReply(String),
}

/// Sends one request and waits for the reply, all within `timeout`. Blocking: it runs its own small
/// runtime so synchronous commands (`status`, `stop`) can use it.
pub fn call(home: &Home, request: Request, timeout: Duration) -> Result<Response, ClientError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(call_async(home, request, timeout))
}

/// The async form of [`call`].
pub async fn call_async(home: &Home, request: Request, timeout: Duration) -> Result<Response, ClientError> {
    match tokio::time::timeout(timeout, async {
        let stream = os::connect(home).await?;
        let (read, mut write) = tokio::io::split(stream);
        write.write_all(&protocol::to_line(&request)).await?;
        write.flush().await?;
        let mut line = Vec::new();
        BufReader::new(read)
            .take(1024 * 1024)
            .read_until(b'\n', &mut line)
            .await?;
        serde_json::from_slice::<Response>(&line).map_err(|e| ClientError::BadReply(e.to_string()))
    })
    .await
    {
        Ok(result) => result,
        Err(_) => Err(ClientError::Timeout(timeout)),
    }
}
