//! A TCP stand-in for a network that goes dead under a live connection (a laptop changing networks, a
//! NAT forgetting a mapping): in front of a real server, it relays bytes both ways until [`StallProxy::stall`];
//! from then on every connection it holds — and every one it accepts while stalled — takes bytes and
//! never answers, never closing, as a half-open TCP connection does. After [`StallProxy::heal`], new
//! connections are relayed again; the stalled ones stay dead for good, so only a client that opens a
//! fresh connection recovers.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub struct StallProxy {
    pub url: String,
    stalled: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
}

impl StallProxy {
    /// Relays to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> StallProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stalled = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (flag, count, upstream) = (stalled.clone(), accepted.clone(), upstream.to_owned());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let dead = Arc::new(AtomicBool::new(flag.load(Ordering::SeqCst)));
                let server = if dead.load(Ordering::SeqCst) {
                    None
                } else {
                    TcpStream::connect(&upstream).ok()
                };
                let Some(server) = server else {
                    // Accepted while stalled: swallow whatever comes, answer nothing, never close.
                    std::thread::spawn(move || swallow(client));
                    continue;
                };
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let (flag, dead) = (flag.clone(), dead.clone());
                    std::thread::spawn(move || relay(from, to, &flag, &dead));
                }
            }
        });
        StallProxy {
            url,
            stalled,
            accepted,
        }
    }

    /// The network goes dead: nothing is relayed any more, on any connection.
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }

    /// New connections are relayed again (the stalled ones stay dead).
    pub fn heal(&self) {
        self.stalled.store(false, Ordering::SeqCst);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn swallow(mut stream: TcpStream) {
    let mut sink = [0u8; 4096];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}

/// Copies `from` to `to` until either end closes; once the network stalls, this connection is dead: bytes
/// are read and dropped, and the other end never hears of it.
fn relay(mut from: TcpStream, mut to: TcpStream, stalled: &AtomicBool, dead: &AtomicBool) {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if stalled.load(Ordering::SeqCst) {
            dead.store(true, Ordering::SeqCst);
        }
        if dead.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&chunk[..n]).is_err() {
            break;
        }
    }
    if !dead.load(Ordering::SeqCst) {
        let _ = to.shutdown(Shutdown::Write);
    }
}
