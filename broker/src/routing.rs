//! Where a request for a registration goes — the one place that decides. A registration's
//! requests go to the actor of the shard its copy lives in: on this node when it holds the
//! shard (the only case until nodes forward to each other), else to the shard's owner.
//! The gateway's sink, the gRPC API and the liveness sweep all come through here, and a
//! request that finds the registration moved meanwhile is looked up and routed again.

use std::sync::Arc;
use std::time::Duration;

use herald_gateway::model::SendNotification;

use crate::domain::{RegistrationId, RegistrationRecord};
use crate::registry::MessageEffect;
use crate::store::{RegistrationStore, StoreError};
use crate::subscription::{Command, CommandError, DeliverError, Subscriptions};

/// How many times a request is routed after finding its registration elsewhere (it moved
/// since it was looked up).
pub const ROUTE_ATTEMPTS: usize = 4;

/// How long a request waits before trying again a registration that is moving.
pub const MOVING_WAIT: Duration = Duration::from_millis(50);

#[derive(Clone, Debug)]
pub struct Router {
    subscriptions: Subscriptions,
    store: Arc<dyn RegistrationStore>,
}

impl Router {
    pub fn new(subscriptions: Subscriptions, store: Arc<dyn RegistrationStore>) -> Self {
        Self {
            subscriptions,
            store,
        }
    }

    /// The registration `id` as this node best knows it now: its live actor's copy (no
    /// store read), else the store's. `None`: it does not exist.
    pub async fn lookup(
        &self,
        id: &RegistrationId,
    ) -> Result<Option<Arc<RegistrationRecord>>, StoreError> {
        match self.subscriptions.live_record(id) {
            Some(record) => Ok(Some(record)),
            None => Ok(self.store.get(id).await?.map(Arc::new)),
        }
    }

    /// The shards this node holds.
    pub fn held(&self) -> Vec<herald_cluster::ShardId> {
        self.subscriptions.held()
    }

    /// The live actor's copy of `id`, if its actor is live here.
    pub fn live_record(&self, id: &RegistrationId) -> Option<Arc<RegistrationRecord>> {
        self.subscriptions.live_record(id)
    }

    /// Hands a gateway request and the effect decided for each of its messages to the actor
    /// of `record`'s shard, once; `Elsewhere`/`Moving` ask the caller to decide again on a
    /// fresh lookup.
    pub async fn deliver(
        &self,
        record: Arc<RegistrationRecord>,
        effects: Vec<MessageEffect>,
        request: Arc<SendNotification>,
    ) -> Result<Vec<MessageEffect>, DeliverError> {
        self.subscriptions.deliver(record, effects, request).await
    }

    /// Has registration `id`'s actor apply `command`, wherever the registration lives;
    /// returns it as it is then (`None` once deleted).
    pub async fn command(
        &self,
        id: &RegistrationId,
        command: Command,
    ) -> Result<Option<RegistrationRecord>, CommandError> {
        let mut last = DeliverError::Elsewhere;
        for _ in 0..ROUTE_ATTEMPTS {
            let Some(record) = self.lookup(id).await.map_err(DeliverError::Store)? else {
                return Err(CommandError::NotFound);
            };
            match self.subscriptions.command(record, command.clone()).await {
                Err(CommandError::Unavailable(DeliverError::Elsewhere)) => {
                    last = DeliverError::Elsewhere;
                }
                Err(CommandError::Unavailable(DeliverError::Moving)) => {
                    last = DeliverError::Moving;
                    tokio::time::sleep(MOVING_WAIT).await;
                }
                other => return other,
            }
        }
        Err(CommandError::Unavailable(last))
    }
}
