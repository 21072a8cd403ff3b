//! The health board: where every chat adapter and the agent report how they are doing, and where the
//! daemon reads it (the state record, `status`, `status --deep`, `/readyz`, outage notices).
//!
//! **Invariant:** reporting is cheap and never waits. A state change (with its reason) is signalled, so
//! the state record is rewritten without polling; the per-message facts (`last_inbound`,
//! `last_outbound`, `last_error`) are only stored, and reach the record with its next write (a turn, a
//! change, the heartbeat), so a busy adapter costs one short lock per message and no write.
//!
//! **Invariant:** `since` moves only when the state changes, so "degraded since 12:03" stays true while
//! the reason text changes from one retry to the next.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use herald_home::records::{HealthRecord, HealthState};
use herald_home::sync::MutexExt;
use herald_home::time::now_ms;
use tokio::sync::watch;

/// Every adapter's and the agent's health. Cheap to clone; shared by the reporters and the readers.
#[derive(Debug, Clone, Default)]
pub struct HealthBoard {
    inner: Arc<Board>,
}

#[derive(Debug, Default)]
struct Board {
    entries: Mutex<Entries>,
    /// Bumped on every state change, so readers wake without polling.
    changes: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct Entries {
    adapters: BTreeMap<String, HealthRecord>,
    agent: Option<HealthRecord>,
}

/// Which entry a handle writes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    Adapter(String),
    Agent,
}

impl HealthBoard {
    pub fn new() -> HealthBoard {
        HealthBoard::default()
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        // Every critical section is a map lookup and a few field writes.
        self.inner.entries.lock_unpoisoned()
    }

    /// The handle of adapter `name`, which starts as `starting`.
    pub fn adapter(&self, name: &str) -> HealthHandle {
        let handle = HealthHandle {
            board: self.clone(),
            slot: Slot::Adapter(name.to_owned()),
        };
        handle.ensure(name);
        handle
    }

    /// The agent's handle; `backend` names it (`openai`). It starts as `starting`.
    pub fn agent(&self, backend: &str) -> HealthHandle {
        let handle = HealthHandle {
            board: self.clone(),
            slot: Slot::Agent,
        };
        handle.ensure(backend);
        handle
    }

    /// Every adapter, by name.
    pub fn adapters(&self) -> Vec<HealthRecord> {
        self.entries().adapters.values().cloned().collect()
    }

    /// The agent, once it has a handle.
    pub fn agent_record(&self) -> Option<HealthRecord> {
        self.entries().agent.clone()
    }

    /// Changes whenever a state (or its reason) does.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    fn changed(&self) {
        self.inner.changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// One adapter's (or the agent's) entry on the board.
#[derive(Debug, Clone)]
pub struct HealthHandle {
    board: HealthBoard,
    slot: Slot,
}

impl HealthHandle {
    /// The whole board this handle writes to (what `/status` reads).
    pub fn board(&self) -> &HealthBoard {
        &self.board
    }

    fn ensure(&self, name: &str) {
        let created = self.with(|_| ()).is_none();
        if created {
            let record = HealthRecord::new(name, HealthState::Starting, now_ms());
            let mut entries = self.board.entries();
            match &self.slot {
                Slot::Adapter(key) => {
                    entries.adapters.insert(key.clone(), record);
                }
                Slot::Agent => entries.agent = Some(record),
            }
            drop(entries);
            self.board.changed();
        }
    }

    /// Runs `f` on the entry (there is one once the handle exists, unless the slot was renamed).
    fn with<T>(&self, f: impl FnOnce(&mut HealthRecord) -> T) -> Option<T> {
        let mut entries = self.board.entries();
        let record = match &self.slot {
            Slot::Adapter(name) => entries.adapters.get_mut(name),
            Slot::Agent => entries.agent.as_mut(),
        };
        record.map(f)
    }

    /// Records the state and why. `since` moves only when the state changes; repeating the same state and
    /// reason is free. A state that is not healthy also becomes the `last_error`.
    pub fn set(&self, state: HealthState, message: Option<String>) {
        let now = now_ms();
        let changed = self
            .with(|r| {
                if r.state == state && r.message == message {
                    return false;
                }
                if r.state != state {
                    r.since_ms = now;
                }
                if !state.is_healthy()
                    && let Some(message) = &message
                {
                    r.last_error = Some(message.clone());
                    r.last_error_ms = Some(now);
                }
                r.state = state;
                r.message = message;
                true
            })
            .unwrap_or(false);
        if changed {
            self.board.changed();
        }
    }

    /// The agent's backend changed (a reload): the entry is renamed and starts over as `starting`.
    pub fn rename(&self, name: &str) {
        let now = now_ms();
        let changed = self
            .with(|r| {
                if r.name == name {
                    return false;
                }
                *r = HealthRecord::new(name, HealthState::Starting, now);
                true
            })
            .unwrap_or(false);
        if changed {
            self.board.changed();
        }
    }

    /// Something came in (an update polled, a turn handed to the agent); for a poller, a completed poll.
    pub fn inbound(&self) {
        let now = now_ms();
        self.with(|r| r.last_inbound_ms = Some(now));
    }

    /// Promises that, while connected, something comes in at least every `every` (a poller).
    pub fn expect_inbound_every(&self, every: std::time::Duration) {
        let every = u64::try_from(every.as_millis()).unwrap_or(u64::MAX);
        self.with(|r| r.inbound_every_ms = Some(every));
    }

    /// Something went out (a reply sent, an answer from the agent).
    pub fn outbound(&self) {
        let now = now_ms();
        self.with(|r| r.last_outbound_ms = Some(now));
    }

    /// An error that does not (yet) change the state: kept as the last error.
    pub fn error(&self, message: String) {
        let now = now_ms();
        self.with(|r| {
            r.last_error = Some(message);
            r.last_error_ms = Some(now);
        });
    }

    /// The adapter was restarted inside the gateway.
    pub fn restarted(&self) {
        self.with(|r| r.restarts = r.restarts.saturating_add(1));
        self.board.changed();
    }

    /// The people it serves were told it is failing (`Some`), or that it is back (`None`).
    pub fn noticed(&self, at_ms: Option<u64>) {
        self.with(|r| r.notice_sent_ms = at_ms);
        self.board.changed();
    }

    pub fn state(&self) -> Option<HealthState> {
        self.with(|r| r.state)
    }

    pub fn record(&self) -> Option<HealthRecord> {
        self.with(|r| r.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_moves_with_the_state_and_changes_are_signalled() {
        let board = HealthBoard::new();
        let mut changes = board.subscribe();
        let status = board.adapter("telegram");
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        status.set(HealthState::Starting, None);
        assert!(
            !changes.has_changed().unwrap(),
            "same state and message: no change"
        );
        status.set(HealthState::Degraded, Some("timeout".into()));
        let first = board.adapters()[0].clone();
        assert_eq!(first.state, HealthState::Degraded);
        assert_eq!(first.last_error.as_deref(), Some("timeout"));
        status.set(HealthState::Degraded, Some("refused".into()));
        let second = board.adapters()[0].clone();
        assert_eq!(second.since_ms, first.since_ms);
        assert_eq!(second.message.as_deref(), Some("refused"));
        assert!(changes.has_changed().unwrap());

        // Per-message facts are stored without a signal.
        changes.mark_unchanged();
        status.inbound();
        status.outbound();
        status.error("one bad send".into());
        assert!(!changes.has_changed().unwrap());
        let third = board.adapters()[0].clone();
        assert!(third.last_inbound_ms.is_some() && third.last_outbound_ms.is_some());
        assert_eq!(third.last_error.as_deref(), Some("one bad send"));

        // Back to connected: the last error stays for people to read.
        status.set(HealthState::Connected, None);
        let fourth = board.adapters()[0].clone();
        assert_eq!(fourth.state, HealthState::Connected);
        assert_eq!(fourth.last_error.as_deref(), Some("one bad send"));
    }

    #[test]
    fn the_agent_has_its_own_entry_and_a_new_backend_starts_over() {
        let board = HealthBoard::new();
        let agent = board.agent("echo");
        agent.set(HealthState::Degraded, Some("down".into()));
        assert!(board.adapters().is_empty());
        assert_eq!(board.agent_record().unwrap().state, HealthState::Degraded);
        agent.rename("openai");
        let record = board.agent_record().unwrap();
        assert_eq!(
            (record.name.as_str(), record.state),
            ("openai", HealthState::Starting)
        );
    }
}
