//! The lease keeper: the one writer of this node's member row and of its [`Ownership`].
//! Every `cluster.heartbeat` it writes the row and reads the others', computes placement
//! over the eligible members, gives away the shards placement moved elsewhere (flushing
//! their bursts first, then releasing the lease), acquires the free leases of the shards
//! placement gives it, renews what it holds at a third of the lease TTL, and drops at once a
//! lease it could not renew in time (the actors of the shard stop; none of them writes or
//! pushes again, since the fence checks the lease's trusted time on every use).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use herald_cluster::lease::{holder_name, renew_every, trusted_for};
use herald_cluster::{
    Claim, Directory, Epoch, LeaseTable, Member, MemberTable, Ownership, ShardId, Snapshot,
};
use tokio::sync::{Mutex, watch};

use super::metrics::ClusterMetrics;
use crate::subscription::Subscriptions;

/// What the keeper needs to know of this node and its cluster.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    pub node_id: String,
    pub region: String,
    /// The gRPC address peers call.
    pub address: String,
    pub member_ttl: Duration,
    pub heartbeat: Duration,
    pub lease_ttl: Duration,
    /// How long a shard given away may take to flush its due bursts.
    pub release_grace: Duration,
}

/// This node as a member of its cluster.
#[derive(Debug)]
pub struct ClusterNode {
    settings: ClusterSettings,
    /// `<node id>/<incarnation>`: this process's name on its leases.
    holder: String,
    members: Arc<dyn MemberTable>,
    leases: Arc<dyn LeaseTable>,
    ownership: Arc<Ownership>,
    directory: Arc<Directory>,
    subscriptions: Subscriptions,
    metrics: ClusterMetrics,
    ready: AtomicBool,
    draining: AtomicBool,
    /// Rounds run one at a time (the loop, a drain, the shutdown).
    rounds: Mutex<Rounds>,
}

#[derive(Debug, Default)]
struct Rounds {
    /// When the leases held were last renewed (the renewal's send time).
    renewed: Option<Instant>,
}

impl ClusterNode {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: ClusterSettings,
        members: Arc<dyn MemberTable>,
        leases: Arc<dyn LeaseTable>,
        ownership: Arc<Ownership>,
        directory: Arc<Directory>,
        subscriptions: Subscriptions,
        metrics: ClusterMetrics,
    ) -> Self {
        let incarnation = uuid::Uuid::new_v4().simple().to_string();
        Self {
            holder: holder_name(&settings.node_id, &incarnation[..12]),
            settings,
            members,
            leases,
            ownership,
            directory,
            subscriptions,
            metrics,
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            rounds: Mutex::default(),
        }
    }

    pub fn node_id(&self) -> &str {
        &self.settings.node_id
    }

    pub fn region(&self) -> &str {
        &self.settings.region
    }

    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    pub fn member_ttl(&self) -> Duration {
        self.settings.member_ttl
    }

    pub fn members(&self) -> &Arc<dyn MemberTable> {
        &self.members
    }

    pub fn leases(&self) -> &Arc<dyn LeaseTable> {
        &self.leases
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Takes requests from now on (the listeners are up): placement counts this node.
    pub async fn join(&self) {
        self.ready.store(true, Ordering::Release);
        self.round().await;
    }

    /// Gives every shard away and takes none from now on; returns how many leases were
    /// released. Used by `DrainNode` and at shutdown.
    pub async fn drain(&self) -> usize {
        self.draining.store(true, Ordering::Release);
        self.round().await
    }

    /// Leaves the cluster at shutdown, once the actors are stopped: releases every lease
    /// still held and removes the member row.
    pub async fn leave(&self) {
        self.ready.store(false, Ordering::Release);
        self.draining.store(true, Ordering::Release);
        let _rounds = self.rounds.lock().await;
        let held = self.ownership.held();
        for &(shard, _) in &held {
            self.ownership.drop_shard(shard);
        }
        self.release_leases(&held).await;
        if let Err(error) = self.members.leave(&self.settings.node_id).await {
            tracing::warn!(%error, "cannot remove this node's member row; it lapses by itself");
        }
    }

    /// Runs rounds every `cluster.heartbeat` until `stop`.
    pub fn spawn(self: Arc<Self>, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(self.settings.heartbeat);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                self.round().await;
            }
        })
    }

    /// One round; returns how many leases it released.
    async fn round(&self) -> usize {
        let mut rounds = self.rounds.lock().await;
        self.drop_lapsed();
        let me = Member {
            node_id: self.settings.node_id.clone(),
            region: self.settings.region.clone(),
            address: self.settings.address.clone(),
            ready: self.ready.load(Ordering::Acquire),
            draining: self.is_draining(),
            shards_owned: u32::try_from(self.ownership.count()).unwrap_or(u32::MAX),
            live_actors: u64::try_from(self.subscriptions.live_count()).unwrap_or(0),
            heartbeat_ms: 0,
        };
        let mut released = 0;
        match self.members.heartbeat(&me).await {
            Ok(view) => {
                let snapshot = Snapshot::new(view, self.settings.member_ttl);
                self.metrics.members_alive.set(
                    i64::try_from(
                        snapshot
                            .view
                            .members
                            .iter()
                            .filter(|m| snapshot.view.alive(m, self.settings.member_ttl))
                            .count(),
                    )
                    .unwrap_or(i64::MAX),
                );
                let mine: BTreeSet<ShardId> = if me.ready && !me.draining {
                    snapshot.shards_of(&self.settings.node_id).collect()
                } else {
                    BTreeSet::new()
                };
                self.directory.update(snapshot);
                released = self.give_away(&mine).await;
                self.renew(&mut rounds).await;
                self.acquire(&mine).await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot write this node's member row; leases are renewed meanwhile");
                self.renew(&mut rounds).await;
            }
        }
        self.drop_lapsed();
        self.metrics
            .shards_owned
            .set(i64::try_from(self.ownership.count()).unwrap_or(i64::MAX));
        released
    }

    /// Gives away the shards held that are not in `mine`: their actors flush what is due
    /// and stop while the lease is still held, then the lease is released for the new
    /// owner to take.
    async fn give_away(&self, mine: &BTreeSet<ShardId>) -> usize {
        let leaving: Vec<(ShardId, Epoch)> = self
            .ownership
            .held()
            .into_iter()
            .filter(|(shard, _)| !mine.contains(shard))
            .collect();
        if leaving.is_empty() {
            return 0;
        }
        let grace = self.settings.release_grace;
        futures_util::future::join_all(
            leaving
                .iter()
                .map(|&(shard, _)| self.subscriptions.release(shard, grace)),
        )
        .await;
        for &(shard, _) in &leaving {
            self.ownership.drop_shard(shard);
        }
        self.release_leases(&leaving).await;
        tracing::info!(shards = leaving.len(), "gave shards to their new owners");
        leaving.len()
    }

    async fn release_leases(&self, leases: &[(ShardId, Epoch)]) {
        if leases.is_empty() {
            return;
        }
        match self.leases.release(leases, &self.holder).await {
            Ok(()) => {
                self.metrics.lease_releases.inc_by(leases.len() as u64);
            }
            Err(error) => {
                tracing::warn!(%error, shards = leases.len(), "cannot release leases; they lapse by themselves");
            }
        }
    }

    /// Renews every lease held if a third of the TTL has passed since the last renewal; a
    /// lease found taken is dropped.
    async fn renew(&self, rounds: &mut Rounds) {
        let ttl = self.settings.lease_ttl;
        if rounds
            .renewed
            .is_some_and(|at| at.elapsed() < renew_every(ttl))
        {
            return;
        }
        let held = self.ownership.held();
        let sent = Instant::now();
        match self.leases.renew(&held, &self.holder, ttl).await {
            Ok(answers) => {
                rounds.renewed = Some(sent);
                for (&(shard, epoch), still_held) in held.iter().zip(answers) {
                    if still_held {
                        self.ownership.trust_until(shard, sent + trusted_for(ttl));
                    } else {
                        self.lost(shard, epoch, "the lease is no longer this node's");
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, shards = held.len(), "cannot renew leases; retried at the next heartbeat");
            }
        }
    }

    /// Acquires the free leases of the shards in `mine` not held yet.
    async fn acquire(&self, mine: &BTreeSet<ShardId>) {
        let wanted: Vec<ShardId> = mine
            .iter()
            .copied()
            .filter(|&shard| self.ownership.epoch(shard).is_none())
            .collect();
        if wanted.is_empty() {
            return;
        }
        let ttl = self.settings.lease_ttl;
        let sent = Instant::now();
        match self.leases.acquire(&wanted, &self.holder, ttl).await {
            Ok(claims) => {
                let mut acquired = 0;
                for (shard, claim) in claims {
                    if let Claim::Acquired(epoch) = claim {
                        self.ownership
                            .acquire(shard, epoch, sent + trusted_for(ttl));
                        acquired += 1;
                    }
                }
                if acquired > 0 {
                    self.metrics.lease_acquisitions.inc_by(acquired);
                    tracing::info!(
                        shards = acquired,
                        waiting = wanted.len() as u64 - acquired,
                        "acquired shard leases"
                    );
                }
            }
            Err(error) => {
                tracing::warn!(%error, shards = wanted.len(), "cannot acquire shard leases; retried at the next heartbeat");
            }
        }
    }

    /// Drops the leases past their trusted time.
    fn drop_lapsed(&self) {
        for shard in self.ownership.lapsed(Instant::now()) {
            let epoch = self.ownership.epoch(shard).unwrap_or_default();
            self.lost(shard, epoch, "not renewed in time");
        }
    }

    fn lost(&self, shard: ShardId, epoch: Epoch, why: &str) {
        tracing::error!(%shard, epoch = epoch.0, why, "lost a shard lease: its actors stop and it is not served here any more");
        self.metrics.lease_losses.inc();
        self.ownership.drop_shard(shard);
    }
}
