//! This gateway among the replicas sharing the database: its row in `herald_replicas`, the lease it
//! renews, the push adapters it runs alone, and what it last saw of the others.
//!
//! **Invariant:** ownership of a turn moves only through `herald_adopt`, which first removes the owner's
//! registry row (a replica whose lease ran out) in the same transaction. So a replica whose row still
//! exists owns every turn it had — a renewal after a pause or an outage is safe as long as the row is
//! there — and a replica whose row is gone has lost them all: it says so ([`Cluster::lost`]) and the
//! gateway stops. Until a renewal confirms the lease, [`Cluster::holds_lease`] is measured on this
//! machine's monotonic clock, from the moment the last successful renewal was *sent*, less a tenth of
//! the TTL: never later than the database's own expiry.
//!
//! **Invariant:** a push adapter that reads its chat service (Telegram, Matrix) runs on the one replica
//! that holds its lease (`herald_leases`, renewed with the replica's own), and each holder gets a new fence.
//! The adapter's cursor commits and delivery marks are stored only under the current fence by its
//! holder (`herald_fenced`): a holder that was paused past its lease and replaced cannot commit. A
//! replica that finds a lease it held taken stops, as one whose turns were taken does. Several replicas
//! serve HTTP, and each sends the webhook callbacks of the turns it owns (`herald_claim_replies` gives
//! it those of replicas that are gone).
//!
//! A replica that was itself cut off past its lease adopts nothing for one more TTL after it is back,
//! so replicas returning together from a database outage give each other time to renew instead of
//! taking each other's turns.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::collections::BTreeMap;

use herald_gateway::cluster::{Cluster, ClusterView, ReplicaView};
use herald_gateway::journal::{Completion, JournalError, Pending};
use herald_home::sync::MutexExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_postgres::Client;

use super::connect::{Connector, ReplicaOptions};

/// Registers this gateway; returns its replica id.
pub(super) async fn register(
    client: &Client,
    replica: &ReplicaOptions,
) -> Result<i64, tokio_postgres::Error> {
    let row = client
        .query_one(
            "INSERT INTO herald_replicas (name, pid, version, started_ms, seen_at, lease_until)
             VALUES ($1, $2, $3, $4, now(), now() + $5 * interval '1 millisecond')
             RETURNING id",
            &[
                &replica.name,
                &i64::from(std::process::id()),
                &herald_home::VERSION,
                &(herald_home::time::now_ms() as i64),
                &(ttl_ms(replica.lease_ttl) as f64),
            ],
        )
        .await?;
    Ok(row.get(0))
}

/// A request to take a push adapter's lease, answered with whether it was taken.
pub(super) struct TakeLease {
    name: String,
    done: Completion<bool>,
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

/// This replica's standing, shared by the journal, its renewal task and the engine.
#[derive(Debug)]
pub(super) struct Membership {
    pub(super) me: i64,
    ttl: Duration,
    /// Until when the lease is surely current (see the module docs).
    held_until: Mutex<Instant>,
    /// No adoption before this (after this replica was itself cut off past its lease).
    adopt_after: Mutex<Instant>,
    lost: watch::Sender<Option<String>>,
    view: watch::Sender<Option<ClusterView>>,
    /// The push adapters' leases this replica holds, with the fence each was taken under (a replica
    /// keeps a lease until it stops: losing one stops it).
    leases: Mutex<BTreeMap<String, i64>>,
    takes: mpsc::UnboundedSender<TakeLease>,
}

impl Membership {
    pub(super) fn new(
        me: i64,
        ttl: Duration,
        registered_at: Instant,
    ) -> (Arc<Membership>, mpsc::UnboundedReceiver<TakeLease>) {
        let (takes, requests) = mpsc::unbounded_channel();
        let membership = Arc::new(Membership {
            me,
            ttl,
            held_until: Mutex::new(registered_at + safe_span(ttl)),
            adopt_after: Mutex::new(registered_at),
            lost: watch::Sender::new(None),
            view: watch::Sender::new(None),
            leases: Mutex::new(BTreeMap::new()),
            takes,
        });
        (membership, requests)
    }

    /// The leases held and their fences, as the fenced writes name them.
    pub(super) fn fences(&self) -> (Vec<String>, Vec<i64>) {
        self.leases
            .lock_unpoisoned()
            .iter()
            .map(|(name, fence)| (name.clone(), *fence))
            .unzip()
    }

    pub(super) fn may_adopt(&self) -> bool {
        !self.is_lost() && Instant::now() >= *self.adopt_after.lock_unpoisoned()
    }

    pub(super) fn is_lost(&self) -> bool {
        self.lost.borrow().is_some()
    }

    /// Another replica removed this one from the registry and took its turns.
    pub(super) fn mark_lost(&self) {
        self.lose(format!(
            "another replica took over this one's turns (replica {} was unreachable or paused past its \
             {} s lease)",
            self.me,
            self.ttl.as_secs()
        ));
    }

    fn lose(&self, why: String) {
        if self.is_lost() {
            return;
        }
        tracing::error!("journal: {why}");
        self.lost.send_replace(Some(why));
    }

    fn renewed(&self, sent: Instant, lapsed: bool) {
        *self.held_until.lock_unpoisoned() = sent + safe_span(self.ttl);
        if lapsed {
            tracing::warn!(
                "journal: this replica's lease ran out before it was renewed (a pause or an outage); \
                 it adopts nothing for {} s",
                self.ttl.as_secs()
            );
            *self.adopt_after.lock_unpoisoned() = Instant::now() + self.ttl;
        }
    }
}

/// How long after a renewal was sent the lease is surely still current.
fn safe_span(ttl: Duration) -> Duration {
    ttl - ttl / 10
}

impl Cluster for Membership {
    fn adopt_every(&self) -> Duration {
        self.ttl / 3
    }

    fn holds_lease(&self) -> bool {
        !self.is_lost() && Instant::now() < *self.held_until.lock_unpoisoned()
    }

    fn lost(&self) -> watch::Receiver<Option<String>> {
        self.lost.subscribe()
    }

    fn view(&self) -> watch::Receiver<Option<ClusterView>> {
        self.view.subscribe()
    }

    fn lease_ttl(&self) -> Duration {
        self.ttl
    }

    fn lease_left(&self) -> Duration {
        if self.is_lost() {
            return Duration::ZERO;
        }
        self.held_until
            .lock_unpoisoned()
            .saturating_duration_since(Instant::now())
    }

    fn leads(&self, adapter: &str) -> bool {
        !self.is_lost() && self.leases.lock_unpoisoned().contains_key(adapter)
    }

    fn take_lease(&self, adapter: &str) -> Pending<bool> {
        if self.leads(adapter) {
            return Pending::ready(Ok(true));
        }
        let (done, pending) = Pending::channel();
        if let Err(refused) = self.takes.send(TakeLease {
            name: adapter.to_owned(),
            done,
        }) {
            refused.0.done.complete(Err(JournalError::closed()));
        }
        pending
    }
}

/// Renews the lease every third of the TTL on a connection of its own, and reads the registry, until
/// `closing` turns true or the replica is lost.
pub(super) async fn run(
    connector: Connector,
    health: super::Health,
    membership: Arc<Membership>,
    mut takes: mpsc::UnboundedReceiver<TakeLease>,
    mut closing: watch::Receiver<bool>,
) {
    let every = membership.ttl / 3;
    let mut client: Option<Client> = None;
    let mut next = Instant::now() + every;
    // The last renewal found its connection closed and this one is its retry, on a new connection.
    let mut retrying = false;
    loop {
        let mut take = None;
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            Some(request) = takes.recv() => take = Some(request),
            _ = closing.changed() => return,
        }
        if *closing.borrow() {
            return;
        }
        if let Some(request) = take {
            let live = match client.as_ref().filter(|c| !c.is_closed()) {
                Some(live) => live,
                None => match connector.connect_or_error(Instant::now() + every, &health).await {
                    Ok(fresh) => client.insert(fresh),
                    Err(e) => {
                        request.done.complete(Err(e));
                        continue;
                    }
                },
            };
            let taken = take_lease(live, &membership, &request.name).await;
            request.done.complete(taken.map_err(|e| super::pg_error(&e)));
            continue;
        }
        next = Instant::now() + every;
        let live = match client.as_ref().filter(|c| !c.is_closed()) {
            Some(live) => live,
            None => match connector.connect_or_error(next, &health).await {
                Ok(fresh) => client.insert(fresh),
                Err(e) => {
                    tracing::debug!("journal: cannot renew the replica's lease: {e}");
                    client = None;
                    continue;
                }
            },
        };
        let retry = std::mem::take(&mut retrying);
        match tokio::time::timeout_at(next, beat(live, &membership)).await {
            Ok(Ok(true)) => health.ok(),
            Ok(Ok(false)) => {
                membership.mark_lost();
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!("journal: cannot renew the replica's lease: {e}");
                if live.is_closed() {
                    client = None;
                    if retry {
                        health.lost(&e.to_string());
                    } else {
                        // Found closed (the server restarted since the last renewal): renew again at
                        // once on a new connection; an outage only if that fails too (connecting
                        // reports its own failure).
                        retrying = true;
                        next = Instant::now();
                    }
                }
            }
            Err(_) => {
                health.lost("the database stopped answering");
                client = None;
            }
        }
    }
}

/// Takes `name`'s lease if no live replica holds it; remembers its fence.
async fn take_lease(
    client: &Client,
    membership: &Membership,
    name: &str,
) -> Result<bool, tokio_postgres::Error> {
    if membership.is_lost() {
        return Ok(false);
    }
    let fence: Option<i64> = client
        .query_one(
            "SELECT herald_lease_take($1, $2, $3)",
            &[&name, &membership.me, &(ttl_ms(membership.ttl) as f64)],
        )
        .await?
        .get(0);
    let Some(fence) = fence else {
        return Ok(false);
    };
    tracing::info!("journal: this replica now runs the {name} adapter (lease fence {fence})");
    membership.leases.lock_unpoisoned().insert(name.to_owned(), fence);
    Ok(true)
}

/// One renewal and one reading of the registry; `false` when this replica is no longer registered.
async fn beat(client: &Client, membership: &Membership) -> Result<bool, tokio_postgres::Error> {
    let sent = Instant::now();
    let ttl = ttl_ms(membership.ttl) as f64;
    let row = client
        .query_opt(
            "WITH old AS (SELECT lease_until < now() AS lapsed FROM herald_replicas WHERE id = $1 FOR UPDATE)
             UPDATE herald_replicas r SET seen_at = now(), lease_until = now() + $2 * interval '1 millisecond'
             FROM old WHERE r.id = $1 RETURNING old.lapsed",
            &[&membership.me, &ttl],
        )
        .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    let held: Vec<String> = membership.leases.lock_unpoisoned().keys().cloned().collect();
    if !held.is_empty() {
        let renewed: Vec<String> = client
            .query(
                "UPDATE herald_leases SET expires_at = now() + $2 * interval '1 millisecond'
                 WHERE holder = $1 RETURNING name",
                &[&membership.me, &ttl],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if let Some(taken) = held.iter().find(|name| !renewed.contains(name)) {
            membership.lose(format!(
                "another replica took the {taken} adapter's lease (replica {} was unreachable or paused \
                 past its {} s lease)",
                membership.me,
                membership.ttl.as_secs()
            ));
            return Ok(true);
        }
    }
    membership.renewed(sent, row.get(0));
    let view = read_view(client, membership).await?;
    membership.view.send_if_modified(|old| {
        let changed = old.as_ref() != Some(&view);
        if changed {
            *old = Some(view);
        }
        changed
    });
    Ok(true)
}

async fn read_view(client: &Client, membership: &Membership) -> Result<ClusterView, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT r.id, r.name, r.pid, r.version, r.started_ms, r.lease_until >= now(),
                    ARRAY(SELECT l.name FROM herald_leases l
                          WHERE l.holder = r.id AND l.expires_at >= now() ORDER BY l.name),
                    (SELECT count(*) FROM turns t
                     WHERE t.owner = r.id AND t.state IN ('pending', 'running', 'interrupted'))
             FROM herald_replicas r ORDER BY r.id",
            &[],
        )
        .await?;
    let orphaned: i64 = client
        .query_one(
            "SELECT count(*) FROM turns t
             WHERE t.state IN ('pending', 'running', 'interrupted')
               AND (t.owner IS NULL OR NOT EXISTS (
                        SELECT 1 FROM herald_replicas r WHERE r.id = t.owner AND r.lease_until >= now()))",
            &[],
        )
        .await?
        .get(0);
    Ok(ClusterView {
        replicas: rows
            .iter()
            .map(|r| ReplicaView {
                id: r.get(0),
                name: r.get(1),
                pid: u32::try_from(r.get::<_, i64>(2)).unwrap_or(0),
                version: r.get(3),
                started_ms: r.get::<_, i64>(4).max(0) as u64,
                alive: r.get(5),
                adapters: r.get(6),
                turns: r.get::<_, i64>(7).max(0) as u64,
                me: r.get::<_, i64>(0) == membership.me,
            })
            .collect(),
        orphaned: orphaned.max(0) as u64,
        lease_secs: membership.ttl.as_secs(),
    })
}
