//! Subscription actors: one per registration copy, on the node that owns its shard, and the
//! one writer of that registration (DESIGN.md §4). The pure cores are [`state`] (apply a
//! notification) and [`flush`] (when and what to push); the actors around them
//! (`actor`, `shard`) do the I/O and the timers. The rest of the node reaches them through
//! [`Subscriptions`], never through ractor types.

mod activity;
mod actor;
mod command;
mod errors;
pub mod flush;
mod live;
mod metrics;
mod pending;
mod route;
mod shard;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use herald_cluster::ShardId;
use herald_gateway::model::SendNotification;
use herald_workers::PushSender;

pub use command::Command;
pub use errors::{CommandError, DeliverError};
pub use flush::Coalescing;
pub use live::LiveIndex;
pub use metrics::SubscriptionMetrics;
pub use pending::{PendingBursts, PendingBurstsByHome};

use crate::config::ActorsConfig;
use crate::domain::{RegistrationId, RegistrationRecord};
use crate::metrics::Metrics;
use herald_cluster::Ownership;

use crate::registry::MessageEffect;
use crate::store::{RegistrationStore, StoreError};
use actor::SubMsg;
use route::Shards;
use shard::ShardMsg;

/// What the actors need from the node.
#[derive(Debug)]
pub struct Deps {
    pub store: Arc<dyn RegistrationStore>,
    /// The shards this node holds and their epochs: what every write is fenced with.
    pub ownership: Arc<Ownership>,
    pub sender: Arc<dyn PushSender>,
    pub rules: Coalescing,
    pub actors: ActorsConfig,
    /// A burst whose push still fails this long after its first event is given up
    /// (`delivery.badge_lifetime`).
    pub give_up_after: Duration,
    pub metrics: Arc<Metrics>,
    /// Every live actor's record, so a request finds its registration without a store read
    /// or a message to the actor.
    pub live: LiveIndex,
    /// Where a registration moving to a shard this node does not serve is handed.
    pub forwarder: Arc<crate::cluster::Forwarder>,
}

/// What the target shard said to a registration moving in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdoptOutcome {
    /// It holds the registration's copy (written now, or by an earlier attempt).
    Held(Box<RegistrationRecord>),
    /// The move was committed earlier, and the registration has since moved on or been
    /// deleted: nothing to write.
    Superseded,
}

/// The handle the rest of the node uses: one shard supervisor per shard, started on first use.
#[derive(Clone, Debug)]
pub struct Subscriptions {
    deps: Arc<Shared>,
}

/// What the actors share: their dependencies, and the way to every shard's supervisor.
#[derive(Debug)]
pub(crate) struct Shared {
    // The node's dependencies, and the supervisors of the shards started so far.
    deps: Deps,
    shards: Shards,
    /// The bursts waiting for their push in this home's shards.
    pending: Arc<PendingBursts>,
}

impl std::ops::Deref for Shared {
    type Target = Deps;

    fn deref(&self) -> &Deps {
        &self.deps
    }
}

impl Subscriptions {
    pub fn new(deps: Deps) -> Self {
        let pending = Arc::new(PendingBursts::default());
        deps.metrics.subscriptions.pending.add(&pending);
        Self {
            deps: Arc::new(Shared {
                deps,
                shards: Shards::default(),
                pending,
            }),
        }
    }

    /// Hands a gateway request and the effect decided for each of its messages to `record`'s
    /// actor (in the shard of that copy) and waits until they are applied and durably
    /// written; returns the effects that held. `Elsewhere`/`Moving` ask the caller to
    /// resolve the registration again.
    pub async fn deliver(
        &self,
        record: Arc<RegistrationRecord>,
        effects: Vec<MessageEffect>,
        request: Arc<SendNotification>,
    ) -> Result<Vec<MessageEffect>, DeliverError> {
        let (shard, id) = (record.shard(), record.id.clone());
        self.deps
            .shards
            .call(&self.deps, shard, id, Some(record), |reply| {
                SubMsg::Deliver {
                    effects,
                    request,
                    reply,
                    span: tracing::Span::current(),
                }
            })
            .await?
    }

    /// Has the actor of `record` (in the shard of that copy) apply `command`; returns the
    /// registration as it is then (`None` once deleted). `Elsewhere`/`Moving` ask the
    /// caller to look the registration up again.
    pub async fn command(
        &self,
        record: Arc<RegistrationRecord>,
        command: Command,
    ) -> Result<Option<RegistrationRecord>, CommandError> {
        let (shard, id) = (record.shard(), record.id.clone());
        self.deps
            .shards
            .call(&self.deps, shard, id, Some(record), |reply| {
                SubMsg::Command { command, reply }
            })
            .await
            .map_err(CommandError::Unavailable)?
    }

    /// The record of `id` as its live actor holds it (no store read, no message); `None`
    /// when its actor is not live.
    pub fn live_record(&self, id: &RegistrationId) -> Option<Arc<RegistrationRecord>> {
        self.deps.live.record(id)
    }

    /// Whether this node serves `shard` now (holds its lease and runs its supervisor).
    pub fn serves(&self, shard: ShardId) -> bool {
        self.deps.shards.supervisor(shard).is_ok()
    }

    /// The fence this node writes `shard` with, while it holds the shard's lease.
    pub fn fence(&self, shard: ShardId) -> Result<herald_cluster::Fence, herald_cluster::NotOwner> {
        herald_cluster::Fencing::fence(self.deps.ownership.as_ref(), shard)
    }

    /// Whether this node holds a trusted lease in its home now (see
    /// [`Ownership::trusts_any`]).
    pub fn trusted(&self) -> bool {
        self.deps.ownership.trusts_any()
    }

    /// How many actors are live on this node.
    pub fn live_count(&self) -> i64 {
        self.deps.metrics.subscriptions.live_actors.get()
    }

    /// Has the actor of `record`'s registration in `record`'s shard, which this node serves,
    /// adopt it (a move from another node's shard; see [`AdoptOutcome`]).
    pub async fn adopt_here(
        &self,
        record: RegistrationRecord,
    ) -> Result<AdoptOutcome, DeliverError> {
        self.deps.shards.adopt_here(&self.deps, record).await
    }

    /// The shards this node holds.
    pub fn held(&self) -> Vec<ShardId> {
        self.deps
            .ownership
            .held()
            .into_iter()
            .map(|(shard, _)| shard)
            .collect()
    }

    /// Starts serving `shard`, which this node now holds: requests for its registrations
    /// are taken from now on. Its pending work is picked up by [`recover`](Self::recover).
    pub async fn acquire(
        &self,
        shard: ShardId,
        epoch: herald_cluster::Epoch,
    ) -> Result<(), DeliverError> {
        self.deps
            .shards
            .start(&self.deps, shard, epoch)
            .await
            .map(drop)
    }

    /// Hands `shard` over: requests for it answer `NotOwner` and it is not started again
    /// until [`reopen`](Self::reopen); its actors flush their bursts within `grace` and stop.
    pub async fn hand_over(&self, shard: ShardId, grace: Duration) {
        if let Some(supervisor) = self.deps.shards.close(shard) {
            drain_and_stop(&[supervisor], grace).await;
        }
    }

    /// Ends the handover of `shard` (its lease was released, or lost).
    pub fn reopen(&self, shard: ShardId) {
        self.deps.shards.reopen(shard);
    }

    /// Stops serving `shard`: requests for it answer `NotOwner` from now on, its actors
    /// flush what is due within `grace` (the rest stays in the store for the next owner),
    /// and they stop.
    pub async fn release(&self, shard: ShardId, grace: Duration) {
        if let Some(supervisor) = self.deps.shards.take(shard) {
            drain_and_stop(&[supervisor], grace).await;
        }
    }

    /// Has `shard`'s supervisor start the actors of its registrations with work left — a
    /// burst accepted and not pushed, a move not finished (after a crash, say); each is
    /// started when due, and started again later if it fails to. Returns how many; nothing
    /// for a shard not served here.
    pub async fn recover(&self, shard: ShardId) -> Result<usize, StoreError> {
        let Ok(supervisor) = self.deps.shards.supervisor(shard) else {
            return Ok(0);
        };
        let pending = self.deps.store.pending_bursts(shard).await?;
        if pending.is_empty() {
            return Ok(0);
        }
        let count = pending.len();
        let _ = supervisor.send_message(ShardMsg::Recover(pending));
        Ok(count)
    }

    /// Makes `record`'s live actor fail (tests of supervision).
    #[cfg(feature = "testsuite")]
    pub async fn inject_failure(&self, record: &RegistrationRecord) {
        if let Ok(supervisor) = self.deps.shards.supervisor(record.shard()) {
            let _ = supervisor.send_message(ShardMsg::Fail(record.id.clone()));
        }
    }

    /// Stops every actor that can be stopped now (those with work are parked until it is
    /// due), as a full shard would; returns how many were stopped (tests of passivation).
    #[cfg(feature = "testsuite")]
    pub async fn passivate_all(&self) -> usize {
        let mut stopped = 0;
        for supervisor in self.deps.shards.started() {
            if let Ok(ractor::rpc::CallResult::Success(n)) = supervisor
                .call(ShardMsg::PassivateAll, Some(Duration::from_secs(5)))
                .await
            {
                stopped += n;
            }
        }
        stopped
    }

    /// How many actors the shard supervisors hold now (tests of `actors.max_live`).
    #[cfg(feature = "testsuite")]
    pub async fn actor_count(&self) -> usize {
        children(&self.deps.shards.started(), Duration::from_secs(5))
            .await
            .len()
    }

    /// Flushes every live actor's pending burst now, waits up to `grace` until their pushes
    /// are recorded, and stops every actor. What is left stays in the store for the next
    /// owner of its shard.
    pub async fn drain_and_stop(&self, grace: Duration) {
        drain_and_stop(&self.deps.shards.started(), grace).await;
    }
}

/// The live actors of `supervisors` (each asked within `timeout`).
async fn children(
    supervisors: &[ractor::ActorRef<ShardMsg>],
    timeout: Duration,
) -> Vec<ractor::ActorRef<SubMsg>> {
    let mut actors = Vec::new();
    for supervisor in supervisors {
        if let Ok(ractor::rpc::CallResult::Success(children)) =
            supervisor.call(ShardMsg::Children, Some(timeout)).await
        {
            actors.extend(children);
        }
    }
    actors
}

/// Flushes the pending bursts of `supervisors`' actors within `grace`, then stops them.
async fn drain_and_stop(supervisors: &[ractor::ActorRef<ShardMsg>], grace: Duration) {
    let actors = children(supervisors, grace).await;
    let drains = actors
        .iter()
        .map(|actor| actor.call(SubMsg::Drain, Some(grace)));
    let _ = tokio::time::timeout(grace, futures_util::future::join_all(drains)).await;
    for supervisor in supervisors {
        let _ = supervisor
            .stop_and_wait(None, Some(Duration::from_secs(5)))
            .await;
    }
}
