//! The lease keeper: the one writer of this node's member row and of its [`Ownership`].
//! Every `cluster.heartbeat` it writes the row and reads the others', computes placement
//! over the eligible members, renews what it holds (a third of the lease TTL after the last
//! renewal, or sooner), hands over the shards placement moved elsewhere, acquires the free
//! leases of the shards placement gives it, and drops at once a lease it could not renew in
//! time (the actors of the shard stop; none of them writes or pushes again, since the fence
//! checks the lease's trusted time on every use).
//!
//! A handover runs beside the rounds, in a task of its own: the shard's actors flush their
//! bursts and stop while the lease is still held — and still renewed by the rounds — then
//! the lease is released for the new owner to take. So a slow flush never delays a
//! heartbeat or a renewal, and a caller that stops waiting (a cancelled `DrainNode`) cannot
//! leave a shard half released.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::{Duration, Instant};

use herald_cluster::lease::{holder_name, renew_every, trusted_for};
use herald_cluster::peer::Peers;
use herald_cluster::{
    Claim, Directory, Epoch, LeaseTable, Member, MemberTable, Ownership, ShardId, Snapshot,
};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinSet;

use super::metrics::ClusterMetrics;
use crate::subscription::Subscriptions;

/// How often a drain looks whether its handovers are done.
const HANDOVER_POLL: Duration = Duration::from_millis(20);

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
    /// How long a shard given away may take to flush its bursts.
    pub release_grace: Duration,
    /// Whether this node can take peer calls (`cluster.peer_secret` is set).
    pub peer_secret_set: bool,
    /// Whether this node serves the cluster's home now (its copy is the home's primary):
    /// while it does not, it is not ready, so it takes no lease and gives away those held.
    pub serving: Arc<std::sync::atomic::AtomicBool>,
}

/// This node as a member of its cluster.
#[derive(Debug)]
pub struct ClusterNode {
    settings: ClusterSettings,
    /// This process's name on its row and its leases.
    incarnation: String,
    /// `<node id>/<incarnation>`: the holder named on this process's leases.
    holder: String,
    members: Arc<dyn MemberTable>,
    leases: Arc<dyn LeaseTable>,
    ownership: Arc<Ownership>,
    directory: Arc<Directory>,
    subscriptions: Subscriptions,
    peers: Option<Peers>,
    metrics: ClusterMetrics,
    ready: AtomicBool,
    draining: AtomicBool,
    /// Rounds run one at a time (the loop, a drain, the shutdown).
    rounds: Mutex<Rounds>,
    /// The shards being handed over now, and the tasks doing it (each answers how many
    /// leases it released).
    handovers: SyncMutex<Handovers>,
}

#[derive(Debug, Default)]
struct Rounds {
    /// When the leases held were last renewed (the renewal's send time).
    renewed: Option<Instant>,
    /// Whether the "several members, no peer secret" error was logged.
    warned_secret: bool,
}

#[derive(Debug, Default)]
struct Handovers {
    shards: BTreeSet<ShardId>,
    tasks: JoinSet<usize>,
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
        peers: Option<Peers>,
        metrics: ClusterMetrics,
    ) -> Self {
        let incarnation = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        Self {
            holder: holder_name(&settings.node_id, &incarnation),
            incarnation,
            settings,
            members,
            leases,
            ownership,
            directory,
            subscriptions,
            peers,
            metrics,
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            rounds: Mutex::default(),
            handovers: SyncMutex::default(),
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
    pub async fn join(self: &Arc<Self>) {
        self.ready.store(true, Ordering::Release);
        self.round().await;
    }

    /// Gives every shard away and takes none from now on (until the process restarts);
    /// returns how many leases were released once every handover is done. Used by
    /// `DrainNode` and at the start of a shutdown.
    pub async fn drain(self: &Arc<Self>) -> usize {
        let before = self.ownership.count();
        self.draining.store(true, Ordering::Release);
        self.round().await;
        self.handovers_done().await;
        before.saturating_sub(self.ownership.count())
    }

    /// Waits until every handover started is done.
    pub async fn handovers_done(&self) {
        loop {
            let next = {
                let mut handovers = self.handovers.lock().unwrap_or_else(|e| e.into_inner());
                match handovers.tasks.try_join_next() {
                    Some(done) => Some(done),
                    None if handovers.tasks.is_empty() => break,
                    None => None,
                }
            };
            match next {
                Some(Ok(_)) => {}
                Some(Err(error)) => tracing::error!(%error, "a shard handover failed"),
                None => tokio::time::sleep(HANDOVER_POLL).await,
            }
        }
    }

    /// Leaves the cluster at the end of a shutdown, once the actors are stopped: releases
    /// every lease still held and removes this process's member row.
    pub async fn leave(self: &Arc<Self>) {
        self.ready.store(false, Ordering::Release);
        self.draining.store(true, Ordering::Release);
        let _rounds = self.rounds.lock().await;
        let held = self.ownership.held();
        for &(shard, _) in &held {
            self.ownership.drop_shard(shard);
        }
        self.release_leases(&held).await;
        if let Err(error) = self
            .members
            .leave(&self.settings.node_id, &self.incarnation)
            .await
        {
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

    /// One round: heartbeat, renew, hand over, acquire.
    async fn round(self: &Arc<Self>) {
        let mut rounds = self.rounds.lock().await;
        self.reap_handovers();
        self.drop_lapsed();
        let me = Member {
            node_id: self.settings.node_id.clone(),
            incarnation: self.incarnation.clone(),
            region: self.settings.region.clone(),
            address: self.settings.address.clone(),
            ready: self.ready.load(Ordering::Acquire)
                && self.settings.serving.load(Ordering::Acquire),
            draining: self.is_draining(),
            shards_owned: u32::try_from(self.ownership.count()).unwrap_or(u32::MAX),
            live_actors: u64::try_from(self.subscriptions.live_count()).unwrap_or(0),
            heartbeat_ms: 0,
        };
        // Renewals first: nothing else in the round may make a lease late.
        self.renew(&mut rounds).await;
        match self.members.heartbeat(&me).await {
            Ok(view) => {
                let snapshot = Snapshot::new(view, self.settings.member_ttl);
                let alive: Vec<&Member> = snapshot
                    .view
                    .members
                    .iter()
                    .filter(|m| snapshot.view.alive(m, self.settings.member_ttl))
                    .collect();
                self.metrics
                    .members_alive
                    .set(i64::try_from(alive.len()).unwrap_or(i64::MAX));
                self.check_reachable(&mut rounds, &alive);
                if let Some(peers) = &self.peers {
                    let addresses: Vec<&str> = snapshot
                        .view
                        .members
                        .iter()
                        .map(|m| m.address.as_str())
                        .collect();
                    peers.retain(&addresses);
                }
                let mine: BTreeSet<ShardId> = if me.ready && !me.draining {
                    snapshot.shards_of(&self.settings.node_id).collect()
                } else {
                    BTreeSet::new()
                };
                self.directory.update(snapshot);
                self.hand_over(&mine);
                self.acquire(&mine).await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot write this node's member row; leases are renewed meanwhile");
                // A node that gives its shards away needs no member table to do it.
                if !me.ready || me.draining {
                    self.hand_over(&BTreeSet::new());
                }
            }
        }
        self.drop_lapsed();
        self.metrics
            .shards_owned
            .set(i64::try_from(self.ownership.count()).unwrap_or(i64::MAX));
    }

    /// Logs, once, the configurations in which other nodes cannot reach this one.
    fn check_reachable(&self, rounds: &mut Rounds, alive: &[&Member]) {
        if rounds.warned_secret || alive.len() < 2 {
            return;
        }
        if !self.settings.peer_secret_set {
            rounds.warned_secret = true;
            tracing::error!(
                members = alive.len(),
                "other nodes share this node's Redis but cluster.peer_secret is empty: requests they forward here are refused (503); set the same secret on every node"
            );
        } else if alive
            .iter()
            .any(|m| m.node_id != self.settings.node_id && m.address == self.settings.address)
        {
            rounds.warned_secret = true;
            tracing::error!(
                address = %self.settings.address,
                "another member advertises this node's gRPC address: set cluster.advertise to an address the other nodes reach this one at"
            );
        }
    }

    /// Starts handing over the shards held that are not in `mine` (and not being handed
    /// over already), each in a task of its own.
    fn hand_over(self: &Arc<Self>, mine: &BTreeSet<ShardId>) {
        let mut handovers = self.handovers.lock().unwrap_or_else(|e| e.into_inner());
        let leaving: Vec<(ShardId, Epoch)> = self
            .ownership
            .held()
            .into_iter()
            .filter(|(shard, _)| !mine.contains(shard) && !handovers.shards.contains(shard))
            .collect();
        if leaving.is_empty() {
            return;
        }
        tracing::info!(
            shards = leaving.len(),
            "handing shards over to their new owners"
        );
        for (shard, epoch) in leaving {
            handovers.shards.insert(shard);
            let this = self.clone();
            handovers
                .tasks
                .spawn(async move { this.hand_over_one(shard, epoch).await });
        }
    }

    /// Hands `shard`, held at `epoch`, over: its actors flush and stop (the shard is closed
    /// meanwhile, so nothing starts it again); then, between two rounds, it is dropped if
    /// its lease is still the one this handover began with, and the lease is released.
    /// The shard stays listed as handed over until the release is done, so no round takes
    /// the lease back in between; and no round waits for the release's round trip. Answers
    /// how many leases it released (0 or 1).
    async fn hand_over_one(self: Arc<Self>, shard: ShardId, epoch: Epoch) -> usize {
        let subscriptions = self.subscriptions.clone();
        subscriptions
            .hand_over(shard, self.settings.release_grace)
            .await;
        let still_held = {
            let _rounds = self.rounds.lock().await;
            let still_held = self.ownership.epoch(shard) == Some(epoch);
            if still_held {
                self.ownership.drop_shard(shard);
            }
            self.subscriptions.reopen(shard);
            still_held
        };
        if still_held {
            self.release_leases(&[(shard, epoch)]).await;
        }
        self.handovers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .shards
            .remove(&shard);
        usize::from(still_held)
    }

    /// Forgets the handovers that are done (their shards may be taken again).
    fn reap_handovers(&self) {
        let mut handovers = self.handovers.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(done) = handovers.tasks.try_join_next() {
            if let Err(error) = done {
                tracing::error!(%error, "a shard handover failed");
            }
        }
        if handovers.tasks.is_empty() {
            handovers.shards.clear();
        }
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

    /// Renews every lease held once a third of the TTL has passed since the last renewal
    /// (or will have, by the next round); a lease found taken is dropped.
    async fn renew(&self, rounds: &mut Rounds) {
        let ttl = self.settings.lease_ttl;
        let due = renew_every(ttl).saturating_sub(self.settings.heartbeat / 2);
        if rounds.renewed.is_some_and(|at| at.elapsed() < due) {
            return;
        }
        let held = self.ownership.held();
        let sent = Instant::now();
        match self.leases.renew(&held, &self.holder, ttl).await {
            Ok(answers) => {
                let mut unknown = 0;
                for (&(shard, epoch), still_held) in held.iter().zip(answers) {
                    match still_held {
                        Some(true) => {
                            self.ownership.trust_until(shard, sent + trusted_for(ttl));
                        }
                        Some(false) => {
                            self.lost(shard, epoch, "the lease is no longer this node's")
                        }
                        // Tried again at the next round; lost only if its trust runs out.
                        None => unknown += 1,
                    }
                }
                if unknown == 0 {
                    rounds.renewed = Some(sent);
                } else {
                    tracing::warn!(
                        shards = unknown,
                        "some leases could not be renewed; retried at the next heartbeat"
                    );
                }
            }
            Err(error) => {
                tracing::warn!(%error, shards = held.len(), "cannot renew leases; retried at the next heartbeat");
            }
        }
    }

    /// Acquires the free leases of the shards in `mine` not held yet.
    async fn acquire(&self, mine: &BTreeSet<ShardId>) {
        let wanted: Vec<ShardId> = {
            let handovers = self.handovers.lock().unwrap_or_else(|e| e.into_inner());
            mine.iter()
                .copied()
                .filter(|&shard| {
                    self.ownership.epoch(shard).is_none() && !handovers.shards.contains(&shard)
                })
                .collect()
        };
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
