//! Push adapters (Telegram, ...): chat services the gateway pulls messages from and pushes replies to,
//! and the board where they report how they are doing.
//!
//! **Invariant:** an adapter's life follows the gateway's, in this order: [`PushAdapter::attach`]
//! registers its outbox with the engine *before* unfinished turns are resumed (so no resumed reply goes
//! past it), [`PushAdapter::open`] starts taking messages once they are, taking stops by itself when a
//! drain begins ([`crate::TurnTracker::drain_signal`]), and [`PushAdapter::close`] runs after the drain.
//! The daemon never knows which service an adapter talks to; the binary builds them (their HTTP clients
//! build C, like the journal), and the daemon only sees this trait and the [`AdapterBoard`].

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use herald_home::config::Config;
use herald_home::records::{AdapterRecord, AdapterState};
use herald_home::secrets::Variables;
use herald_home::sync::MutexExt;
use herald_home::time::now_ms;
use tokio::sync::watch;

use crate::engine::Engine;

/// A boxed future, as trait objects return them.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A chat adapter that pulls messages and pushes replies.
pub trait PushAdapter: Send + fmt::Debug {
    /// The adapter name its sessions are stored under (`telegram`).
    fn name(&self) -> &'static str;

    /// Registers the outbox and starts delivering replies, including those an earlier process stored
    /// but never delivered. Takes no messages yet. Called inside the runtime.
    fn attach(&mut self, engine: &Arc<Engine>, status: AdapterStatus);

    /// Starts taking messages (after unfinished turns were resumed).
    fn open(&mut self);

    /// After the drain: stops taking and delivering within `grace`. Replies not delivered by then stay
    /// marked undelivered in the journal and are sent after the next start.
    fn close(self: Box<Self>, grace: Duration) -> BoxFuture<()>;

    /// A reload: applies what of `config` (and the secrets in `variables`) it can while running, and
    /// returns the dotted keys it applies live; any other change to its section needs a restart.
    fn reconfigure(&self, _config: &Config, _variables: &Variables) -> Vec<&'static str> {
        Vec::new()
    }
}

/// The state of every push adapter, shared by the adapters (writers) and the record keeper (reader).
/// Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct AdapterBoard {
    inner: Arc<Board>,
}

#[derive(Debug, Default)]
struct Board {
    records: Mutex<BTreeMap<String, AdapterRecord>>,
    /// Bumped on every state change, so the state record is rewritten without polling.
    changes: watch::Sender<u64>,
}

impl AdapterBoard {
    pub fn new() -> AdapterBoard {
        AdapterBoard::default()
    }

    fn records(&self) -> MutexGuard<'_, BTreeMap<String, AdapterRecord>> {
        // Every critical section is one map operation.
        self.inner.records.lock_unpoisoned()
    }

    /// A handle for one adapter, which starts as `starting`.
    pub fn status(&self, name: &str) -> AdapterStatus {
        let status = AdapterStatus {
            board: self.clone(),
            name: name.to_owned(),
        };
        status.set(AdapterState::Starting, None);
        status
    }

    /// Every adapter, by name.
    pub fn snapshot(&self) -> Vec<AdapterRecord> {
        self.records().values().cloned().collect()
    }

    /// Changes whenever an adapter's state or message does.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }
}

/// One adapter's entry on the board.
#[derive(Debug, Clone)]
pub struct AdapterStatus {
    board: AdapterBoard,
    name: String,
}

impl AdapterStatus {
    /// Records the adapter's state. `since` moves only when the state changes; a changed message alone
    /// is recorded without moving it. Repeating the same state and message is free.
    pub fn set(&self, state: AdapterState, message: Option<String>) {
        let changed = {
            let mut records = self.board.records();
            match records.get_mut(&self.name) {
                Some(r) if r.state == state && r.message == message => false,
                Some(r) => {
                    if r.state != state {
                        r.since_ms = now_ms();
                    }
                    r.state = state;
                    r.message = message;
                    true
                }
                None => {
                    records.insert(
                        self.name.clone(),
                        AdapterRecord {
                            name: self.name.clone(),
                            state,
                            message,
                            since_ms: now_ms(),
                        },
                    );
                    true
                }
            }
        };
        if changed {
            self.board.inner.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    pub fn state(&self) -> Option<AdapterState> {
        self.board.records().get(&self.name).map(|r| r.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_moves_with_the_state_and_changes_are_signalled() {
        let board = AdapterBoard::new();
        let mut changes = board.subscribe();
        let status = board.status("telegram");
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        status.set(AdapterState::Starting, None);
        assert!(
            !changes.has_changed().unwrap(),
            "same state and message: no change"
        );
        status.set(AdapterState::Retrying, Some("timeout".into()));
        let first = board.snapshot()[0].clone();
        assert_eq!(first.state, AdapterState::Retrying);
        status.set(AdapterState::Retrying, Some("refused".into()));
        let second = board.snapshot()[0].clone();
        assert_eq!(second.since_ms, first.since_ms);
        assert_eq!(second.message.as_deref(), Some("refused"));
        assert!(changes.has_changed().unwrap());
    }
}
