//! The supervisors of the shards this node serves — started when it acquires a shard,
//! taken out when it releases one — and the one way a request reaches a registration's
//! actor: a call through its shard's supervisor, with a timeout. A shard not served here
//! answers [`DeliverError::NotOwner`].

use std::sync::{Arc, RwLock};

use futures_util::future::BoxFuture;
use herald_cluster::peer::is_not_owner;
use herald_cluster::{Epoch, ShardId};
use herald_proto::v1 as pb;
use ractor::{Actor, ActorRef, RpcReplyPort};

use crate::cluster::{Hop, PeerCall};

use super::actor::SubMsg;
use super::shard::{ShardArgs, ShardMsg, ShardSupervisor};
use super::{AdoptOutcome, DeliverError, Shared};
use crate::domain::{RegistrationId, RegistrationRecord};

#[derive(Debug)]
pub(super) struct Shards {
    /// Each shard's supervisor while this node serves it. Read on every request, written
    /// only when a shard is started, released or handed over.
    slots: Box<[RwLock<Slot>]>,
}

/// Where a shard is on this node.
#[derive(Debug, Default)]
enum Slot {
    #[default]
    Empty,
    Serving(ActorRef<ShardMsg>),
    /// Being handed over to another node: not served, and not started again until the
    /// handover is done ([`Shards::reopen`]).
    Closed,
}

impl Default for Shards {
    fn default() -> Self {
        Self {
            slots: (0..herald_cluster::SHARD_COUNT)
                .map(|_| RwLock::new(Slot::Empty))
                .collect(),
        }
    }
}

impl Shards {
    fn slot(&self, shard: ShardId) -> &RwLock<Slot> {
        &self.slots[usize::from(shard.number())]
    }

    /// The supervisor of `shard`, if this node serves it.
    pub(super) fn supervisor(&self, shard: ShardId) -> Result<ActorRef<ShardMsg>, DeliverError> {
        match &*self.slot(shard).read().unwrap_or_else(|e| e.into_inner()) {
            Slot::Serving(supervisor) => Ok(supervisor.clone()),
            Slot::Empty | Slot::Closed => {
                Err(DeliverError::NotOwner(herald_cluster::NotOwner(shard)))
            }
        }
    }

    /// Starts serving `shard` under the lease at `epoch` (if it is not served yet); refused
    /// while the shard is handed over.
    pub(super) async fn start(
        &self,
        shared: &Arc<Shared>,
        shard: ShardId,
        epoch: Epoch,
    ) -> Result<ActorRef<ShardMsg>, DeliverError> {
        match &*self.slot(shard).read().unwrap_or_else(|e| e.into_inner()) {
            Slot::Serving(supervisor) => return Ok(supervisor.clone()),
            Slot::Closed => return Err(DeliverError::NotOwner(herald_cluster::NotOwner(shard))),
            Slot::Empty => {}
        }
        let args = ShardArgs {
            deps: shared.clone(),
            shard,
            epoch,
        };
        let (supervisor, _) = Actor::spawn(None, ShardSupervisor, args)
            .await
            .map_err(|e| DeliverError::Actor(e.to_string()))?;
        let mut slot = self.slot(shard).write().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            Slot::Empty => {
                *slot = Slot::Serving(supervisor.clone());
                Ok(supervisor)
            }
            // Closed or started meanwhile: this one is not needed.
            _ => {
                supervisor.stop(None);
                Err(DeliverError::NotOwner(herald_cluster::NotOwner(shard)))
            }
        }
    }

    /// Stops routing to `shard`; returns its supervisor, for the caller to drain and stop.
    /// A shard being handed over stays closed.
    pub(super) fn take(&self, shard: ShardId) -> Option<ActorRef<ShardMsg>> {
        let mut slot = self.slot(shard).write().unwrap_or_else(|e| e.into_inner());
        match std::mem::take(&mut *slot) {
            Slot::Serving(supervisor) => Some(supervisor),
            Slot::Empty => None,
            Slot::Closed => {
                *slot = Slot::Closed;
                None
            }
        }
    }

    /// Closes `shard` for a handover: not served, not started again until
    /// [`reopen`](Self::reopen); returns its supervisor, for the caller to drain and stop.
    pub(super) fn close(&self, shard: ShardId) -> Option<ActorRef<ShardMsg>> {
        let mut slot = self.slot(shard).write().unwrap_or_else(|e| e.into_inner());
        match std::mem::replace(&mut *slot, Slot::Closed) {
            Slot::Serving(supervisor) => Some(supervisor),
            Slot::Empty | Slot::Closed => None,
        }
    }

    /// Ends a handover: `shard` may be started again (once this node holds it again).
    pub(super) fn reopen(&self, shard: ShardId) {
        let mut slot = self.slot(shard).write().unwrap_or_else(|e| e.into_inner());
        if matches!(*slot, Slot::Closed) {
            *slot = Slot::Empty;
        }
    }

    /// The supervisors of the shards served now.
    pub(super) fn started(&self) -> Vec<ActorRef<ShardMsg>> {
        self.slots
            .iter()
            .filter_map(
                |slot| match &*slot.read().unwrap_or_else(|e| e.into_inner()) {
                    Slot::Serving(supervisor) => Some(supervisor.clone()),
                    Slot::Empty | Slot::Closed => None,
                },
            )
            .collect()
    }

    /// Sends registration `id`'s actor in `shard` the message `make` builds around a reply
    /// port, and waits for the answer (at most `actors.call_timeout`). `record` is the
    /// caller's read of that shard's copy, which a starting actor takes instead of reading it.
    pub(super) async fn call<T: Send + 'static>(
        &self,
        shared: &Arc<Shared>,
        shard: ShardId,
        id: RegistrationId,
        record: Option<Arc<RegistrationRecord>>,
        make: impl FnOnce(RpcReplyPort<T>) -> SubMsg,
    ) -> Result<T, DeliverError> {
        let supervisor = self.supervisor(shard)?;
        let answer = supervisor
            .call(
                |reply| ShardMsg::Route {
                    id,
                    record,
                    message: make(reply),
                },
                Some(shared.actors.call_timeout),
            )
            .await
            .map_err(|e| DeliverError::Actor(e.to_string()))?;
        match answer {
            ractor::rpc::CallResult::Success(answer) => Ok(answer),
            ractor::rpc::CallResult::Timeout => Err(DeliverError::Actor("timed out".into())),
            ractor::rpc::CallResult::SenderError => {
                Err(DeliverError::Actor("the actor stopped".into()))
            }
        }
    }

    /// Sends registration `id`'s actor in `shard` a message that needs no answer, if the
    /// actor is live.
    pub(super) fn tell(&self, shard: ShardId, id: RegistrationId, message: SubMsg) {
        if let Ok(supervisor) = self.supervisor(shard) {
            let _ = supervisor.send_message(ShardMsg::Tell { id, message });
        }
    }

    /// Hands `record`, a registration moving in, to its new shard's actor (step 2 of a move):
    /// here when this node serves the shard, else on the shard's owner.
    pub(super) async fn adopt(
        &self,
        shared: &Arc<Shared>,
        record: RegistrationRecord,
    ) -> Result<AdoptOutcome, DeliverError> {
        let shard = record.shard();
        let local = || -> BoxFuture<'_, _> {
            let record = record.clone();
            Box::pin(async move {
                match self.adopt_here(shared, record).await {
                    Err(DeliverError::NotOwner(_)) => Hop::NotHere,
                    answer => Hop::Done(answer),
                }
            })
        };
        let remote = |mut call: PeerCall| -> BoxFuture<'_, _> {
            let request = call.request(pb::AdoptRequest {
                shard: u32::from(shard.number()),
                record: Some(crate::cluster::record_to_wire(&record)),
            });
            Box::pin(async move {
                match call.client.adopt(request).await {
                    Ok(answer) => Ok(Hop::Done(crate::cluster::adopt_from_wire(
                        answer.into_inner(),
                    ))),
                    Err(status) if is_not_owner(&status) => Ok(Hop::NotHere),
                    Err(status) => Err(status),
                }
            })
        };
        shared
            .forwarder
            .to_owner("adopt", shard, local, remote)
            .await?
    }

    /// [`adopt`](Self::adopt) on this node only.
    pub(super) async fn adopt_here(
        &self,
        shared: &Arc<Shared>,
        record: RegistrationRecord,
    ) -> Result<AdoptOutcome, DeliverError> {
        let (shard, id) = (record.shard(), record.id.clone());
        self.call(shared, shard, id, None, |reply| SubMsg::Adopt {
            record: Box::new(record),
            reply,
        })
        .await?
    }
}
