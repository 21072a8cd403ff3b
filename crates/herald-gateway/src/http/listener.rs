//! Serving the API on a TCP listener with every resource bounded: connections, time to send a request's
//! header (new and idle keep-alive connections alike), time to send its body, header size.
//!
//! Without bounds, a thousand idle or half-sent connections — from anyone who can reach the port, before
//! any token is checked — exhaust the process's file descriptors, and then the control channel, the
//! record writes and the journal fail with it. So:
//!
//! - **Connections.** At most [`HttpLimits::max_connections`] are open; at the cap the listener stops
//!   accepting (new clients wait in the kernel's backlog) until one closes. The cap is clamped to what the
//!   process's descriptor limit leaves after a reserve for everything else (see `herald-daemon`).
//! - **Header and idle time.** A connection that has not sent a complete request header within
//!   [`HttpLimits::idle_timeout`] — a slow-loris client, or a keep-alive connection with nothing more to
//!   ask — is closed (hyper's header read timeout, which also runs between keep-alive requests).
//! - **Body time.** A body must arrive within [`HttpLimits::body_timeout`]; a client that announced more
//!   than it sends gets `408` and the connection closes.
//! - **Header size.** At most 64 KiB of request head.
//!
//! **Invariant:** every limit applies before the request reaches the router — before the browser guard and
//! the token — so nobody needs to be authorised to be bounded. In-flight requests are bounded by the
//! connection cap (HTTP/1.1 without pipelining: one request per connection at a time).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// The bounds of the HTTP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub max_connections: usize,
    /// Longest wait for a complete request header, on a new or an idle keep-alive connection.
    pub idle_timeout: Duration,
    /// Longest time to receive a request body.
    pub body_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 256,
            idle_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// The largest request head accepted (hyper answers `431` beyond it).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Pause after a failed `accept` (out of descriptors, say) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `app` on `listener` within `limits` until `stop` turns true; then stops accepting and lets the
/// connections in progress finish (the caller bounds how long).
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let app = app.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        limits.body_timeout,
    ));
    let service = TowerToHyperService::new(app.into_service::<hyper::body::Incoming>());
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    loop {
        // A free slot first: at the cap nothing more is accepted (no descriptor is spent on it).
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = stopped(&mut stop) => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("HTTP accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = http.serve_connection(TokioIo::new(stream), service.clone());
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Errors here are the client's (reset, timed out, malformed): nothing to report.
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Resolves once `stop` is true (the guard `wait_for` returns is not kept across an await).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
