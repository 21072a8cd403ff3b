//! The local control channel: a Unix domain socket (Unix) or a named pipe (Windows), for the current user
//! only.
//!
//! **Invariant:** the server never answers on behalf of the gateway. Each request is forwarded to the
//! gateway's main loop and answered from there, so a reply to `ping` proves the loop that would carry out
//! a stop is alive; a wedged gateway times out instead of looking healthy.

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
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

pub use protocol::{DrainSummary, ProtocolError, Request, Response};

/// How long a connected client may take to send its request line.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The endpoint a home's control channel uses on this OS, as text for records and messages.
pub fn endpoint(home: &Home) -> String {
    os::endpoint(home)
}

/// A request from a client, waiting for the main loop's answer.
#[derive(Debug)]
pub struct ControlCall {
    pub request: Request,
    pub reply: oneshot::Sender<Response>,
}

/// A bound control channel.
#[derive(Debug)]
pub struct ControlServer {
    listener: os::Listener,
}

impl ControlServer {
    /// Binds the home's endpoint. The caller must hold the instance lock: any existing socket is stale
    /// and is replaced.
    pub fn bind(home: &Home) -> io::Result<ControlServer> {
        Ok(ControlServer {
            listener: os::Listener::bind(home)?,
        })
    }

    /// Accepts connections until the task is dropped, forwarding each request to `calls`.
    pub async fn serve(mut self, calls: mpsc::Sender<ControlCall>, my_pid: u32) {
        loop {
            match self.listener.accept().await {
                Ok(stream) => {
                    tokio::spawn(handle_connection(stream, calls.clone(), my_pid));
                }
                Err(e) => {
                    tracing::warn!("control channel accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Removes the endpoint (the socket file on Unix).
    pub fn cleanup(home: &Home) {
        os::cleanup(home);
    }
}

async fn handle_connection<S>(stream: S, calls: mpsc::Sender<ControlCall>, my_pid: u32)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (read, mut write) = tokio::io::split(stream);
    let mut reader = BufReader::new(read).take(protocol::MAX_REQUEST_BYTES as u64 + 2);
    loop {
        let mut line = Vec::new();
        match tokio::time::timeout(REQUEST_READ_TIMEOUT, reader.read_until(b'\n', &mut line)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
        }
        let response = match protocol::parse_request(&line) {
            Ok(request) => {
                let (reply, answer) = oneshot::channel();
                if calls.send(ControlCall { request, reply }).await.is_err() {
                    Response::error(my_pid, "the gateway is shutting down")
                } else {
                    answer
                        .await
                        .unwrap_or_else(|_| Response::error(my_pid, "the gateway is shutting down"))
                }
            }
            Err(e) => Response::error(my_pid, e.to_string()),
        };
        if write.write_all(&protocol::to_line(&response)).await.is_err() {
            return;
        }
        let _ = write.flush().await;
        if !line.ends_with(b"\n") {
            return;
        }
    }
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
