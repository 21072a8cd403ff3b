//! Push adapters (Telegram, ...): chat services the gateway pulls messages from and pushes replies to.
//!
//! **Invariant:** an adapter's life follows the gateway's, in this order: [`PushAdapter::attach`]
//! registers its outbox with the engine *before* unfinished turns are resumed (so no resumed reply goes
//! past it), [`PushAdapter::open`] starts taking messages once they are, taking stops by itself when a
//! drain begins ([`crate::TurnTracker::drain_signal`]), and [`PushAdapter::close`] runs after the drain.
//! The daemon never knows which service an adapter talks to; the binary builds them (their HTTP clients
//! build C, like the journal), and the daemon only sees this trait and the [`crate::health::HealthBoard`].
//!
//! **Invariant:** an adapter is its own supervisor. Its tasks run with their own backoff, a task that
//! fails is restarted alone ([`PushAdapter::restart`] does the same by hand), and what it knows of its
//! health — connected, degraded, bad credentials, a conflict — is on the board for everyone to read. The
//! gateway process restarts only when its event loop is wedged (the monitor's watchdog), never because
//! one chat service is down.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use herald_home::config::Config;
use herald_home::secrets::Variables;

use crate::engine::Engine;
use crate::health::HealthHandle;

/// A boxed future, as trait objects return them.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A chat adapter that pulls messages and pushes replies. Shared (`Arc`) between the host and the tasks
/// that restart it, so every method takes `&self`.
pub trait PushAdapter: Send + Sync + fmt::Debug {
    /// The adapter name its sessions are stored under (`telegram`).
    fn name(&self) -> &'static str;

    /// Registers the outbox and starts delivering replies, including those an earlier process stored
    /// but never delivered. Takes no messages yet. Called inside the runtime.
    fn attach(&self, engine: &Arc<Engine>, health: HealthHandle);

    /// Starts taking messages (after unfinished turns were resumed).
    fn open(&self);

    /// Whether it runs on one replica at a time when several share the journal (see
    /// [`crate::cluster`]): a poller of a service (Telegram, Matrix), which two replicas must never
    /// poll at once. An adapter whose messages come through the HTTP API (webhooks) runs on every
    /// replica, each delivering the replies of the turns it ran.
    fn leased(&self) -> bool {
        true
    }

    /// Stops taking and delivering, drops its connections and starts again — alone: the rest of the
    /// gateway keeps serving. Replies not yet delivered stay in the journal and are sent by the new run.
    /// `Err` says why it cannot (not attached, closing).
    fn restart(&self) -> BoxFuture<Result<(), String>>;

    /// Tells the people this adapter serves something about the gateway (an outage notice), best effort.
    /// The default has no one to tell.
    fn announce(&self, _text: String) -> BoxFuture<()> {
        Box::pin(async {})
    }

    /// Whether [`Self::announce`] reaches anyone (the adapter has people to tell and its notices are on).
    fn announces(&self) -> bool {
        false
    }

    /// After the drain: stops taking and delivering within `grace`. Replies not delivered by then stay
    /// marked undelivered in the journal and are sent after the next start.
    fn close(&self, grace: Duration) -> BoxFuture<()>;

    /// A reload: applies what of `config` (and the secrets in `variables`) it can while running, and
    /// returns the dotted keys it applies live; any other change to its section needs a restart.
    fn reconfigure(&self, _config: &Config, _variables: &Variables) -> Vec<&'static str> {
        Vec::new()
    }
}
