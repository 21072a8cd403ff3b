//! Serving the API on a TCP listener with every resource bounded: connections, time to send a request's
//! header (new and idle keep-alive connections alike), time to send its body, header size.
//!
//! Without bounds, a thousand idle or half-sent connections — from anyone who can reach the port, before
//! any token is checked — exhaust the process's file descriptors, and then the control channel, the
//! record writes and the journal fail with it. So:
//!
//! - **Connections.** At most [`HttpLimits::max_connections`] are open. At the cap, a new connection
//!   takes the slot of the *oldest connection that has not yet delivered a complete request* (an idle
//!   or slow-loris socket); only when every open connection is a client that has been served is the
//!   newcomer closed at once. So a flood cannot queue real clients behind it, and cannot push out a
//!   client already being served (whose turn may take as long as its agent). The cap is clamped to what
//!   the process's descriptor limit leaves after a reserve for everything else (see `herald-daemon`).
//! - **Header and idle time.** A connection that has not sent a complete request header within
//!   [`HttpLimits::idle_timeout`] — a slow-loris client, or a keep-alive connection with nothing more to
//!   ask — is closed (hyper's header read timeout, which also runs between keep-alive requests).
//! - **Body time.** A body must arrive within [`HttpLimits::body_timeout`].
//! - **Header size.** hyper refuses a request head (`431`) once its read buffer holds 64 KiB without a
//!   complete head; since it reads in growing chunks, a head of up to about twice that may arrive first.
//!
//! **Invariant:** every limit applies before the request reaches the router — before the browser guard and
//! the token — so nobody needs to be authorised to be bounded. In-flight requests are bounded by the
//! connection cap (HTTP/1.1 without pipelining: one request per connection at a time).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use herald_home::sync::MutexExt;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tower_service::Service;

use super::parse_errors::JsonParseErrors;

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

/// One open connection: whether it has delivered a complete request yet, and how to close it.
#[derive(Debug)]
struct Slot {
    served: Arc<AtomicBool>,
    abort: Option<AbortHandle>,
}

/// The open connections, oldest first (ids only grow).
#[derive(Debug, Default)]
struct Slots {
    next: u64,
    open: BTreeMap<u64, Slot>,
}

/// What to do with a connection that arrives while `open` are open and at most `cap` may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admit {
    Open,
    /// Take the slot of this connection (the oldest that has delivered no complete request).
    Evict(u64),
    /// Every slot serves a client: close the newcomer.
    Refuse,
}

impl Slots {
    fn admit(&self, cap: usize) -> Admit {
        if self.open.len() < cap {
            return Admit::Open;
        }
        self.open
            .iter()
            .find(|(_, slot)| !slot.served.load(Ordering::Relaxed))
            .map_or(Admit::Refuse, |(id, _)| Admit::Evict(*id))
    }
}

/// Serves `app` on `listener` within `limits` until `stop` turns true; then stops accepting and lets the
/// connections in progress finish (the caller bounds how long).
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
) {
    let cap = limits.max_connections.max(1);
    let slots = Arc::new(Mutex::new(Slots::default()));
    let graceful = GracefulShutdown::new();
    let app = app.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        limits.body_timeout,
    ));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    loop {
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
        let served = Arc::new(AtomicBool::new(false));
        let id = {
            let mut table = slots.lock_unpoisoned();
            match table.admit(cap) {
                Admit::Open => {}
                Admit::Evict(old) => {
                    if let Some(abort) = table.open.remove(&old).and_then(|slot| slot.abort) {
                        abort.abort();
                    }
                }
                Admit::Refuse => continue,
            }
            table.next += 1;
            let id = table.next;
            table.open.insert(
                id,
                Slot {
                    served: served.clone(),
                    abort: None,
                },
            );
            id
        };
        let _ = stream.set_nodelay(true);
        let service = MarkServed {
            app: app.clone(),
            served,
        };
        let connection =
            graceful.watch(http.serve_connection(TokioIo::new(JsonParseErrors::new(stream)), service));
        let table = slots.clone();
        let task = tokio::spawn(async move {
            // Errors here are the client's (reset, timed out, malformed): nothing to report.
            let _ = connection.await;
            table.lock_unpoisoned().open.remove(&id);
        });
        // A connection already over has removed its slot: nothing to keep then.
        if let Some(slot) = slots.lock_unpoisoned().open.get_mut(&id) {
            slot.abort = Some(task.abort_handle());
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Resolves once `stop` is true (the guard `wait_for` returns is not kept across an await).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// The router, marking its connection served once a request has arrived whole (head and body).
#[derive(Clone)]
struct MarkServed {
    app: Router,
    served: Arc<AtomicBool>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for MarkServed {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        let served = self.served.clone();
        let request = request.map(|body| {
            if body.is_end_stream() {
                served.store(true, Ordering::Relaxed);
            }
            axum::body::Body::new(WholeMarks { body, served })
        });
        let mut app = self.app.clone();
        Box::pin(async move { app.call(request).await })
    }
}

/// A request body that marks its connection served when it has been received to the end.
struct WholeMarks {
    body: Incoming,
    served: Arc<AtomicBool>,
}

impl Body for WholeMarks {
    type Data = hyper::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.body.is_end_stream() {
            self.served.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(served: &[bool]) -> Slots {
        let mut table = Slots::default();
        for &s in served {
            table.next += 1;
            table.open.insert(
                table.next,
                Slot {
                    served: Arc::new(AtomicBool::new(s)),
                    abort: None,
                },
            );
        }
        table
    }

    #[test]
    fn below_the_cap_everyone_gets_in() {
        assert_eq!(slots(&[true, false]).admit(3), Admit::Open);
    }

    #[test]
    fn at_the_cap_the_oldest_connection_without_a_request_goes() {
        // 1 served, 2 idle, 3 served, 4 idle: the oldest unserved is 2.
        assert_eq!(slots(&[true, false, true, false]).admit(4), Admit::Evict(2));
    }

    #[test]
    fn clients_being_served_are_never_pushed_out() {
        assert_eq!(slots(&[true, true, true]).admit(3), Admit::Refuse);
    }
}
