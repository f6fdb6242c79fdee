//! The node's shard supervisors, each started on first use, and the one way a request
//! reaches a registration's actor: a call through its shard's supervisor, with a timeout.

use std::sync::Arc;

use herald_cluster::ShardId;
use ractor::{Actor, ActorRef, RpcReplyPort};
use tokio::sync::OnceCell;

use super::actor::SubMsg;
use super::shard::{ShardArgs, ShardMsg, ShardSupervisor};
use super::{AdoptOutcome, DeliverError, Shared};
use crate::domain::{RegistrationId, RegistrationRecord};

#[derive(Debug)]
pub(super) struct Shards {
    /// One cell per shard: after the first use, finding a supervisor takes no lock.
    cells: Box<[OnceCell<ActorRef<ShardMsg>>]>,
}

impl Default for Shards {
    fn default() -> Self {
        Self {
            cells: (0..herald_cluster::SHARD_COUNT)
                .map(|_| OnceCell::new())
                .collect(),
        }
    }
}

impl Shards {
    pub(super) async fn supervisor(
        &self,
        shared: &Arc<Shared>,
        shard: ShardId,
    ) -> Result<ActorRef<ShardMsg>, DeliverError> {
        self.cells[usize::from(shard.number())]
            .get_or_try_init(|| async {
                let args = ShardArgs {
                    deps: shared.clone(),
                    shard,
                };
                Actor::spawn(None, ShardSupervisor, args)
                    .await
                    .map(|(supervisor, _)| supervisor)
                    .map_err(|e| DeliverError::Actor(e.to_string()))
            })
            .await
            .cloned()
    }

    /// The supervisors started so far.
    pub(super) fn started(&self) -> Vec<ActorRef<ShardMsg>> {
        self.cells
            .iter()
            .filter_map(OnceCell::get)
            .cloned()
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
        let supervisor = self.supervisor(shared, shard).await?;
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
    pub(super) async fn tell(
        &self,
        shared: &Arc<Shared>,
        shard: ShardId,
        id: RegistrationId,
        message: SubMsg,
    ) {
        if let Ok(supervisor) = self.supervisor(shared, shard).await {
            let _ = supervisor.send_message(ShardMsg::Tell { id, message });
        }
    }

    /// Hands `record`, a registration moving in, to its new shard's actor (step 2 of a move).
    pub(super) async fn adopt(
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
