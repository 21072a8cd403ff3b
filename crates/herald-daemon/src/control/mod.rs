//! The server side of the local control channel: a Unix domain socket (Unix) or a named pipe (Windows),
//! for the current user only. The protocol and the client are `herald_process::control`.
//!
//! **Invariant:** the server is bounded — at most `MAX_CONNECTIONS` at once, each with a deadline for its
//! request line — and it never answers on behalf of the gateway. Each request is forwarded to the
//! gateway's main loop and answered from there, so a reply to `ping` proves the loop that would carry out
//! a stop is alive; a wedged gateway times out instead of looking healthy.

#[cfg(unix)]
#[path = "unix.rs"]
mod os;
#[cfg(windows)]
#[path = "windows.rs"]
mod os;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use herald_home::Home;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{Semaphore, mpsc, oneshot};

use herald_process::control::{Request, Response, protocol};

/// How long a connected client may take to send its request line.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Most control connections served at once; more wait to be accepted. Its clients are this user's
/// commands (`status`, `stop`), each one short request.
const MAX_CONNECTIONS: usize = 16;

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
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            match self.listener.accept().await {
                Ok(stream) => {
                    let calls = calls.clone();
                    tokio::spawn(async move {
                        handle_connection(stream, calls, my_pid).await;
                        drop(permit);
                    });
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
