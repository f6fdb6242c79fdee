//! Where a request for a registration goes — the one place that decides. A registration's
//! requests go to the actor of the shard its copy lives in: on this node when it serves the
//! shard, else on the shard's owner, one hop away over `herald.v1.Peer` (see
//! [`Forwarder`]). The gateway's sink, the gRPC API and the liveness sweep all come
//! through here, and a request that finds the registration moved meanwhile is looked up
//! and routed again.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use herald_cluster::ShardId;
use herald_cluster::peer::is_not_owner;
use herald_gateway::model::SendNotification;
use herald_proto::v1 as pb;

use crate::cluster::{Forwarder, Hop, PeerCall, record_to_wire};
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
    forwarder: Arc<Forwarder>,
}

impl Router {
    pub fn new(
        subscriptions: Subscriptions,
        store: Arc<dyn RegistrationStore>,
        forwarder: Arc<Forwarder>,
    ) -> Self {
        Self {
            subscriptions,
            store,
            forwarder,
        }
    }

    pub fn forwarder(&self) -> &Forwarder {
        &self.forwarder
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
    pub fn held(&self) -> Vec<ShardId> {
        self.subscriptions.held()
    }

    /// Whether this node serves `shard` now.
    pub fn serves(&self, shard: ShardId) -> bool {
        self.subscriptions.serves(shard)
    }

    /// Whether what the home's store answers is its current state: this node holds a
    /// lease the store renewed within the lease's time. A store that stopped taking
    /// writes (a region cut off from the others) may lag a primary promoted elsewhere.
    pub fn home_current(&self) -> bool {
        self.subscriptions.trusted()
    }

    /// The live actor's copy of `id`, if its actor is live here.
    pub fn live_record(&self, id: &RegistrationId) -> Option<Arc<RegistrationRecord>> {
        self.subscriptions.live_record(id)
    }

    /// Hands a gateway request and the effect decided for each of its messages to the actor
    /// of `record`'s shard on this node, once; `Elsewhere`/`Moving` ask the caller to
    /// decide again on a fresh lookup, `NotOwner` to forward it.
    pub async fn deliver(
        &self,
        record: Arc<RegistrationRecord>,
        effects: Vec<MessageEffect>,
        request: Arc<SendNotification>,
    ) -> Result<Vec<MessageEffect>, DeliverError> {
        self.subscriptions.deliver(record, effects, request).await
    }

    /// Creates `record` in its shard, on the node that holds the shard.
    pub async fn create(
        &self,
        record: RegistrationRecord,
    ) -> Result<RegistrationRecord, DeliverError> {
        let shard = record.shard();
        let local = || -> BoxFuture<'_, _> { Box::pin(self.create_here(&record)) };
        let remote = |mut call: PeerCall| -> BoxFuture<'_, _> {
            let request = call.request(pb::ForwardCreateRequest {
                shard: u32::from(shard.number()),
                record: Some(record_to_wire(&record)),
            });
            Box::pin(async move {
                match call.client.forward_create(request).await {
                    Ok(answer) => Ok(Hop::Done(crate::cluster::created_from_wire(
                        answer.into_inner(),
                    ))),
                    Err(status) if is_not_owner(&status) => Ok(Hop::NotHere),
                    Err(status) => Err(status),
                }
            })
        };
        Ok(self
            .forwarder
            .to_owner("create", shard, local, remote)
            .await??)
    }

    /// Creates `record` in its shard if this node holds the shard's lease.
    pub async fn create_here(
        &self,
        record: &RegistrationRecord,
    ) -> Hop<Result<RegistrationRecord, StoreError>> {
        let Ok(fence) = self.subscriptions.fence(record.shard()) else {
            return Hop::NotHere;
        };
        Hop::Done(self.store.create(fence, record).await)
    }

    /// Has registration `id`'s actor apply `command`, wherever the registration lives;
    /// returns it as it is then (`None` once deleted).
    pub async fn command(
        &self,
        id: &RegistrationId,
        command: Command,
    ) -> Result<Option<RegistrationRecord>, CommandError> {
        self.command_routed(id, command, true).await
    }

    /// [`command`](Self::command) for a peer that forwarded it: applied here, never
    /// forwarded again (`NotOwner` when this node does not serve the registration's shard).
    pub async fn command_here(
        &self,
        id: &RegistrationId,
        command: Command,
    ) -> Result<Option<RegistrationRecord>, CommandError> {
        self.command_routed(id, command, false).await
    }

    /// Looks registration `id` up and has `command` applied where it lives (at its shard's
    /// owner if `forward`, else here only), again while it moves.
    async fn command_routed(
        &self,
        id: &RegistrationId,
        command: Command,
        forward: bool,
    ) -> Result<Option<RegistrationRecord>, CommandError> {
        let mut last = DeliverError::Elsewhere;
        for _ in 0..ROUTE_ATTEMPTS {
            let Some(record) = self.lookup(id).await.map_err(DeliverError::Store)? else {
                return Err(CommandError::NotFound);
            };
            let answer = if forward {
                self.command_at_owner(id, record, &command).await
            } else {
                self.command_local(record, command.clone()).await
            };
            match moved(&answer).await {
                Some(why) => last = why,
                None => return answer,
            }
        }
        Err(CommandError::Unavailable(last))
    }

    /// Has `record`'s actor on this node apply `command`; `NotOwner` when this node does
    /// not serve its shard.
    async fn command_local(
        &self,
        record: Arc<RegistrationRecord>,
        command: Command,
    ) -> Result<Option<RegistrationRecord>, CommandError> {
        if !self.serves(record.shard()) {
            return Err(herald_cluster::NotOwner(record.shard()).into());
        }
        self.subscriptions.command(record, command).await
    }

    /// Has `command` applied by the node that holds `record`'s shard: this one, or its
    /// owner one hop away.
    async fn command_at_owner(
        &self,
        id: &RegistrationId,
        record: Arc<RegistrationRecord>,
        command: &Command,
    ) -> Result<Option<RegistrationRecord>, CommandError> {
        let shard = record.shard();
        let local = || -> BoxFuture<'_, _> {
            let (record, command) = (record.clone(), command.clone());
            Box::pin(async move {
                match self.command_local(record, command).await {
                    Err(CommandError::Unavailable(DeliverError::NotOwner(_))) => Hop::NotHere,
                    answer => Hop::Done(answer),
                }
            })
        };
        let remote = |mut call: PeerCall| -> BoxFuture<'_, _> {
            let request = call.request(pb::ForwardCommandRequest {
                shard: u32::from(shard.number()),
                registration_id: id.to_string(),
                command: Some(crate::cluster::command_to_wire(command)),
            });
            Box::pin(async move {
                match call.client.forward_command(request).await {
                    Ok(answer) => Ok(Hop::Done(crate::cluster::command_outcome_from_wire(
                        answer.into_inner(),
                    ))),
                    Err(status) if is_not_owner(&status) => Ok(Hop::NotHere),
                    Err(status) => Err(status),
                }
            })
        };
        self.forwarder
            .to_owner("command", shard, local, remote)
            .await
            .map_err(CommandError::Unavailable)?
    }
}

/// Why a command's answer asks for the registration to be looked up again — it moved
/// (`Elsewhere`) or is moving (`Moving`, after a short wait) — or `None`: the answer stands.
async fn moved(answer: &Result<Option<RegistrationRecord>, CommandError>) -> Option<DeliverError> {
    match answer {
        Err(CommandError::Unavailable(DeliverError::Elsewhere)) => Some(DeliverError::Elsewhere),
        Err(CommandError::Unavailable(DeliverError::Moving)) => {
            tokio::time::sleep(MOVING_WAIT).await;
            Some(DeliverError::Moving)
        }
        _ => None,
    }
}
