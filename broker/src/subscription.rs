//! Subscription actors: one per registration, on the node that owns its shard. The pure
//! cores are [`state`] (apply a notification) and [`flush`] (when and what to push); the
//! actors around them ([`actor`], [`shard`]) do the I/O and the timers. The rest of the node
//! reaches them through [`Subscriptions`], never through ractor types.

mod actor;
pub mod flush;
mod live;
mod metrics;
mod shard;
pub mod state;

use std::sync::Arc;

use herald_cluster::ShardId;
use herald_workers::PushSender;
use ractor::{Actor, ActorRef};
use tokio::sync::OnceCell;

pub use actor::Item;
pub use flush::Coalescing;
pub use live::LiveIndex;
pub use metrics::SubscriptionMetrics;

use crate::config::ActorsConfig;
use crate::domain::{RegistrationId, RegistrationRecord};
use crate::metrics::Metrics;
use crate::registry::{Fencing, MessageEffect};
use crate::store::{RegistrationStore, StoreError};
use shard::{ShardMsg, ShardSupervisor};

/// What the actors need from the node.
#[derive(Debug)]
pub struct Deps {
    pub store: Arc<dyn RegistrationStore>,
    pub fencing: Arc<dyn Fencing>,
    pub sender: Arc<dyn PushSender>,
    pub rules: Coalescing,
    pub actors: ActorsConfig,
    pub metrics: Arc<Metrics>,
    /// Every live actor's record, so a request finds its registration without a store read
    /// or a message to the actor.
    pub live: LiveIndex,
}

/// Why a request could not be handed to its actor.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the subscription actor did not answer: {0}")]
    Actor(String),
}

/// The handle the rest of the node uses: one shard supervisor per shard, started on first use.
#[derive(Clone, Debug)]
pub struct Subscriptions {
    deps: Arc<Deps>,
    /// One cell per shard: after the first use, finding a supervisor takes no lock.
    supervisors: Arc<[OnceCell<ActorRef<ShardMsg>>]>,
}

impl Subscriptions {
    pub fn new(deps: Deps) -> Self {
        Self {
            deps: Arc::new(deps),
            supervisors: (0..herald_cluster::SHARD_COUNT)
                .map(|_| OnceCell::new())
                .collect(),
        }
    }

    async fn supervisor(&self, shard: ShardId) -> Result<ActorRef<ShardMsg>, DeliverError> {
        self.supervisors[usize::from(shard.number())]
            .get_or_try_init(|| async {
                Actor::spawn(None, ShardSupervisor, self.deps.clone())
                    .await
                    .map(|(supervisor, _)| supervisor)
                    .map_err(|e| DeliverError::Actor(e.to_string()))
            })
            .await
            .cloned()
    }

    /// The supervisors started so far.
    fn started(&self) -> Vec<ActorRef<ShardMsg>> {
        self.supervisors
            .iter()
            .filter_map(OnceCell::get)
            .cloned()
            .collect()
    }

    /// Hands a request's items to `record`'s actor and waits until they are applied and
    /// durably written; returns the effects that held.
    pub async fn deliver(
        &self,
        record: Arc<RegistrationRecord>,
        items: Vec<Item>,
    ) -> Result<Vec<MessageEffect>, DeliverError> {
        let supervisor = self.supervisor(record.device_token.shard()).await?;
        let answer = supervisor
            .call(
                |reply| ShardMsg::Deliver {
                    record,
                    items,
                    reply,
                },
                Some(self.deps.actors.call_timeout),
            )
            .await
            .map_err(|e| DeliverError::Actor(e.to_string()))?;
        match answer {
            ractor::rpc::CallResult::Success(result) => Ok(result?),
            ractor::rpc::CallResult::Timeout => Err(DeliverError::Actor("timed out".into())),
            ractor::rpc::CallResult::SenderError => {
                Err(DeliverError::Actor("the actor stopped".into()))
            }
        }
    }

    /// The record of `id` as its live actor holds it (no store read, no message); `None`
    /// when its actor is not live.
    pub fn live_record(&self, id: &RegistrationId) -> Option<Arc<RegistrationRecord>> {
        self.deps.live.record(id)
    }

    /// Starts the actors of every registration with an unflushed burst — on a node that
    /// starts after a crash, these are the bursts accepted and not yet pushed.
    pub async fn recover(&self) -> Result<usize, DeliverError> {
        let mut recovered = 0;
        for shard in ShardId::all() {
            let pending = self.deps.store.pending_bursts(shard).await?;
            if pending.is_empty() {
                continue;
            }
            recovered += pending.len();
            let supervisor = self.supervisor(shard).await?;
            let _ = supervisor.send_message(ShardMsg::Recover(pending));
        }
        Ok(recovered)
    }

    /// Makes `record`'s live actor fail (tests of supervision).
    #[cfg(feature = "testsuite")]
    pub async fn inject_failure(&self, record: &RegistrationRecord) {
        if let Ok(supervisor) = self.supervisor(record.device_token.shard()).await {
            let _ = supervisor.send_message(ShardMsg::Fail(record.id.clone()));
        }
    }

    /// Flushes every live actor's pending burst now and waits, up to `grace`, until their
    /// pushes are recorded. What is left stays in the store for the next owner.
    pub async fn drain(&self, grace: std::time::Duration) {
        let supervisors = self.started();
        let mut actors = Vec::new();
        for supervisor in supervisors {
            if let Ok(ractor::rpc::CallResult::Success(children)) =
                supervisor.call(ShardMsg::Children, Some(grace)).await
            {
                actors.extend(children);
            }
        }
        let drains = actors
            .iter()
            .map(|actor| actor.call(actor::SubMsg::Drain, Some(grace)));
        let _ = tokio::time::timeout(grace, futures_util::future::join_all(drains)).await;
    }

    /// Stops every actor. Pending bursts stay in the store and are flushed by the next
    /// owner of their shard.
    pub async fn stop(&self) {
        for supervisor in self.started() {
            let _ = supervisor
                .stop_and_wait(None, Some(std::time::Duration::from_secs(5)))
                .await;
        }
    }
}
