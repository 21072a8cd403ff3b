//! The Standard Webhooks receiver `ci/peers/webhook_receiver.py` (Python's hmac, written from the
//! specification): started by the test, or, when `HERALD_WEBHOOK_RECEIVER_URL` names a running one
//! (under Wine, where a Windows test cannot start a Linux python3), used as it is. Each test has names
//! of its own on it.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::support::{HttpResponse, http};

/// The secret every name on the receiver is given, and the variable a test's gateway reads it from.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const SECRET_VAR: &str = "HERALD_TEST_WEBHOOK_SECRET";

/// The receiver, and the process when this test started it.
pub struct Receiver {
    pub url: String,
    child: Option<Child>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Receiver {
    pub fn start() -> Receiver {
        if let Ok(url) = std::env::var("HERALD_WEBHOOK_RECEIVER_URL") {
            return Receiver { url, child: None };
        }
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ci/peers/webhook_receiver.py");
        // Port 0: the receiver takes a free port itself and says which. A port reserved here and
        // released for it could be taken by any other test's listener in between.
        let mut child = Command::new("python3")
            .arg(&script)
            .arg("0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 (needed for the webhook receiver)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("the webhook receiver's first line");
        let mut receiver = Receiver {
            url: String::new(),
            child: Some(child),
        };
        let port: u16 = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the webhook receiver said {line:?}, not its port"));
        receiver.url = format!("http://127.0.0.1:{port}");
        receiver
    }

    /// A name of this test's own on the receiver, verified with [`SECRET`].
    pub fn name(&self, prefix: &str) -> String {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("{prefix}-{}-{nanos}", std::process::id());
        let set = http(
            &self.url,
            "POST",
            &format!("/_secret/{name}"),
            &[],
            SECRET.as_bytes(),
        );
        assert_eq!(set.status, 204);
        name
    }

    pub fn down(&self, name: &str, down: bool) {
        let body: &[u8] = if down { b"1" } else { b"0" };
        assert_eq!(
            http(&self.url, "POST", &format!("/_down/{name}"), &[], body).status,
            204
        );
    }

    /// The receiver's signature of a message (its own implementation of the scheme).
    pub fn sign(&self, name: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
        let path = format!("/_sign/{name}?id={id}&timestamp={timestamp}");
        let signed = http(&self.url, "POST", &path, &[], body);
        assert_eq!(signed.status, 200, "{}", signed.body);
        signed.body
    }

    /// Posts `body` to the gateway at `gateway` as integration `hook`, with message id `id`, signed
    /// by the receiver as `name` (now).
    pub fn send(&self, gateway: &str, name: &str, hook: &str, id: &str, body: &str) -> HttpResponse {
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        let signature = self.sign(name, id, timestamp, body.as_bytes());
        let timestamp = timestamp.to_string();
        http(
            gateway,
            "POST",
            &format!("/v1/webhooks/{hook}"),
            &[
                ("Content-Type", "application/json"),
                ("webhook-id", id),
                ("webhook-timestamp", &timestamp),
                ("webhook-signature", &signature),
            ],
            body.as_bytes(),
        )
    }

    /// The callbacks `name` received, in order.
    pub fn log(&self, name: &str) -> Vec<serde_json::Value> {
        let got = http(&self.url, "GET", &format!("/_log/{name}"), &[], b"");
        got.body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}
