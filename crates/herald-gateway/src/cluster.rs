//! Gateways sharing one journal: what a replica knows of its standing and of the others.
//!
//! **Invariant:** a turn is run by the replica that owns it, and ownership moves only by adoption: a
//! replica whose lease (renewed every third of its TTL) ran out is removed from the registry and its
//! turns are taken, in one transaction, by a replica that serves their adapters. A replica that finds
//! itself removed has lost every turn it had: it stops at once ([`Cluster::lost`]), so a turn it was
//! running (paused past its lease, say) is never finished twice — the journal refuses its late reply
//! anyway ([`crate::journal::JournalErrorKind::Fenced`]). Until then, a turn starts its agent only
//! while the replica's lease is known to be current ([`Cluster::holds_lease`]).
//!
//! **Invariant:** a push adapter (a poller and its deliveries) runs on the one replica holding its
//! lease ([`Cluster::take_lease`]); the others wait, and the first to find it free (its holder stopped,
//! or its lease ran out) takes it with the next fence. Its poll never outlasts the lease
//! ([`Cluster::lease_left`]), so two replicas never poll the same bot at once, and a holder paused past
//! its lease cannot commit a cursor or a delivery mark afterwards: the journal refuses writes under an
//! old fence.
//!
//! A journal that only one gateway uses has no cluster (`Journal::cluster` is `None`), and everything
//! here is absent from its path.

use std::fmt;
use std::time::Duration;

use tokio::sync::watch;

use crate::journal::Pending;

pub use herald_home::records::{ClusterView, ReplicaView};

/// What a journal shared by several gateways tells the one it serves.
pub trait Cluster: Send + Sync + fmt::Debug {
    /// How often to look for turns to adopt (a third of the lease TTL).
    fn adopt_every(&self) -> Duration;

    /// Whether this replica's lease is known to be current right now (measured on this machine's
    /// monotonic clock from the last renewal it sent, so a process that was paused does not believe in
    /// a lease that ran out meanwhile).
    fn holds_lease(&self) -> bool;

    /// Becomes `Some(why)` once another replica has taken this one's turns: it must stop serving.
    fn lost(&self) -> watch::Receiver<Option<String>>;

    /// The registry as last read (at every renewal); `None` before the first.
    fn view(&self) -> watch::Receiver<Option<ClusterView>>;

    /// How long a lease lasts without a renewal.
    fn lease_ttl(&self) -> Duration;

    /// How long this replica's leases (its own, and the push adapters' it holds) are surely current
    /// from now, on this machine's clock; zero once lost. A poller asks for no more than this.
    fn lease_left(&self) -> Duration;

    /// Takes the lease of push adapter `adapter` (its poller and its deliveries), unless another live
    /// replica holds it: `true` when this replica now runs it. Each holder gets a new fence, which the
    /// journal checks on every cursor commit and delivery mark of the adapter.
    fn take_lease(&self, adapter: &str) -> Pending<bool>;

    /// Whether this replica holds `adapter`'s lease.
    fn leads(&self, adapter: &str) -> bool;
}
