//! The HTTP request path, from raw bytes to the answer: any bytes sent to the local API — request line,
//! path, headers (Host, Origin, Content-Type, Authorization), body — get a well-formed HTTP response or a
//! closed connection, never a panic; every response the API itself writes is JSON; a request refused by
//! the browser guard never becomes a turn.
//!
//! The real router (browser guard, token, handlers) over the real engine and SQLite journal in a temp
//! dir, served by hyper on an in-memory duplex stream, on one runtime kept for the whole run.
#![no_main]

use std::sync::{Arc, OnceLock};

use herald_gateway::agent::echo::EchoAgent;
use herald_gateway::engine::Engine;
use herald_gateway::http::browser::BrowserPolicy;
use herald_gateway::http::{HttpLimits, HttpOptions, router};
use herald_gateway::turns::TurnTracker;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct World {
    runtime: tokio::runtime::Runtime,
    app: axum::Router,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = herald_journal::SqliteJournal::open(&dir.path().join("state.db")).unwrap();
        let app = runtime.block_on(async {
            let engine = Engine::new(Arc::new(journal), Arc::new(EchoAgent), TurnTracker::new());
            engine.set_serving(true);
            router(
                engine,
                &HttpOptions {
                    listen: "127.0.0.1:0".parse().unwrap(),
                    token: None,
                    max_body_bytes: 64 * 1024,
                    browser: BrowserPolicy::default(),
                    limits: HttpLimits::default(),
                },
            )
        });
        World { runtime, app, _dir: dir }
    })
}

fuzz_target!(|data: &[u8]| {
    let world = world();
    world.runtime.block_on(async {
        let (mut client, server) = tokio::io::duplex(256 * 1024);
        let service = TowerToHyperService::new(world.app.clone());
        let connection = tokio::spawn(
            hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(server), service),
        );
        let _ = client.write_all(data).await;
        let _ = client.shutdown().await;
        let mut response = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), client.read_to_end(&mut response)).await;
        let _ = connection.await;
        if response.is_empty() {
            return;
        }
        // The first response: status line, headers, and (by Content-Length) its body.
        let Some(head_end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
            panic!("an incomplete response: {:?}", String::from_utf8_lossy(&response));
        };
        let head = String::from_utf8_lossy(&response[..head_end]).to_ascii_lowercase();
        assert!(
            head.starts_with("http/1.1 ") || head.starts_with("http/1.0 "),
            "not an HTTP response: {head:?}"
        );
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let body = &response[head_end + 4..];
        // hyper answers requests it cannot parse itself (400, 414, 431: no body); every body the API
        // writes is JSON.
        if length > 0 && body.len() >= length {
            assert!(
                head.contains("content-type: application/json"),
                "a body that is not JSON: {head:?}"
            );
            assert!(
                serde_json::from_slice::<serde_json::Value>(&body[..length]).is_ok(),
                "{:?}",
                String::from_utf8_lossy(&body[..length])
            );
        }
    });
});
