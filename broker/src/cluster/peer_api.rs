//! The `herald.v1.Peer` service: what this node does for the other nodes of its cluster.
//! Every call was authenticated with `cluster.peer_secret` before its message was decoded
//! (`api::guard`); it is applied only if it is meant for this node and this node serves
//! the shard it is for (else `UNAVAILABLE` with the not-owner marker, and the caller looks
//! the owner up again), and never forwarded further.

use std::sync::Arc;

use herald_cluster::ShardId;
use herald_cluster::peer::not_owner;
use herald_gateway::model::{SendNotification, SoapVersion};
use herald_proto::v1 as pb;
use herald_proto::v1::peer_server::Peer;
use tonic::{Request, Response, Status};

use super::Hop;
use super::keeper::ClusterNode;
use super::wire;
use crate::domain::RegistrationId;
use crate::ews_sink::{EwsSink, SinkError};
use crate::routing::Router;
use crate::subscription::{DeliverError, Subscriptions};

#[derive(Clone, Debug)]
pub struct PeerApi {
    sink: EwsSink,
    router: Router,
    subscriptions: Subscriptions,
    cluster: Option<Arc<ClusterNode>>,
}

impl PeerApi {
    pub fn new(
        sink: EwsSink,
        router: Router,
        subscriptions: Subscriptions,
        cluster: Option<Arc<ClusterNode>>,
    ) -> Self {
        Self {
            sink,
            router,
            subscriptions,
            cluster,
        }
    }

    /// The call is meant for this node (else a not-owner answer: the caller looks the
    /// owner up again).
    fn check<T>(&self, request: &Request<T>, shard: Option<ShardId>) -> Result<(), Status> {
        let Some(cluster) = &self.cluster else {
            return Err(Status::failed_precondition(
                "this node runs alone on an in-memory store: it is no cluster member",
            ));
        };
        let meant = request
            .metadata()
            .get(super::forward::TARGET_NODE_KEY)
            .and_then(|v| v.to_str().ok());
        if meant != Some(cluster.node_id()) {
            return Err(match shard {
                Some(shard) => not_owner(shard),
                None => Status::not_found(format!("this node is {}", cluster.node_id())),
            });
        }
        Ok(())
    }
}

fn shard_of(raw: u32) -> Result<ShardId, Status> {
    u16::try_from(raw)
        .ok()
        .and_then(ShardId::new)
        .ok_or_else(|| Status::invalid_argument("no such shard"))
}

fn registration_id(raw: &str) -> Result<RegistrationId, Status> {
    RegistrationId::parse("registration_id", raw)
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

#[tonic::async_trait]
impl Peer for PeerApi {
    async fn forward_notification(
        &self,
        request: Request<pb::ForwardNotificationRequest>,
    ) -> Result<Response<pb::ForwardNotificationResponse>, Status> {
        let shard = shard_of(request.get_ref().shard)?;
        self.check(&request, Some(shard))?;
        let request = request.into_inner();
        // Only the holder of the shard the caller resolved answers for the registration:
        // a node that does not hold it never decides (and never says Unsubscribe).
        if !self.router.serves(shard) {
            return Err(not_owner(shard));
        }
        let id = registration_id(&request.registration_id)?;
        let notification = Arc::new(SendNotification {
            soap: SoapVersion::V11,
            messages: wire::messages_from_wire(request.messages)?,
        });
        match self
            .sink
            .decide_here(&id, shard, &request.home_region, &notification, None)
            .await
        {
            Hop::NotHere => Err(not_owner(shard)),
            Hop::Done(Err(SinkError::Deliver(DeliverError::Elsewhere))) => Err(super::moved(shard)),
            Hop::Done(Ok(verdicts)) => Ok(Response::new(pb::ForwardNotificationResponse {
                decisions: verdicts
                    .into_iter()
                    .map(|v| wire::verdict_to_wire(v) as i32)
                    .collect(),
            })),
            Hop::Done(Err(error)) => Err(Status::unavailable(error.to_string())),
        }
    }

    async fn forward_command(
        &self,
        request: Request<pb::ForwardCommandRequest>,
    ) -> Result<Response<pb::ForwardCommandResponse>, Status> {
        let shard = shard_of(request.get_ref().shard)?;
        self.check(&request, Some(shard))?;
        let request = request.into_inner();
        let id = registration_id(&request.registration_id)?;
        let command = wire::command_from_wire(request.command)?;
        let outcome = self.router.command_here(&id, command).await;
        wire::command_outcome_to_wire(outcome, shard).map(Response::new)
    }

    async fn forward_create(
        &self,
        request: Request<pb::ForwardCreateRequest>,
    ) -> Result<Response<pb::ForwardCreateResponse>, Status> {
        let shard = shard_of(request.get_ref().shard)?;
        self.check(&request, Some(shard))?;
        let request = request.into_inner();
        let record = wire::record_from_wire(request.record)?;
        match self.router.create_here(&record).await {
            Hop::NotHere => Err(not_owner(record.shard())),
            Hop::Done(created) => wire::created_to_wire(created).map(Response::new),
        }
    }

    async fn adopt(
        &self,
        request: Request<pb::AdoptRequest>,
    ) -> Result<Response<pb::AdoptResponse>, Status> {
        let shard = shard_of(request.get_ref().shard)?;
        self.check(&request, Some(shard))?;
        let request = request.into_inner();
        let record = wire::record_from_wire(request.record)?;
        if !self.subscriptions.serves(shard) {
            return Err(not_owner(shard));
        }
        match self.subscriptions.adopt_here(record).await {
            Ok(outcome) => Ok(Response::new(wire::adopt_to_wire(outcome))),
            Err(DeliverError::NotOwner(_)) => Err(not_owner(shard)),
            Err(error) => Err(Status::unavailable(error.to_string())),
        }
    }

    async fn drain(
        &self,
        request: Request<pb::PeerDrainRequest>,
    ) -> Result<Response<pb::PeerDrainResponse>, Status> {
        self.check(&request, None)?;
        let node_id = request.into_inner().node_id;
        let cluster = self
            .cluster
            .as_ref()
            .filter(|c| c.node_id() == node_id)
            .ok_or_else(|| Status::not_found(format!("this node is not {node_id:?}")))?;
        let released = cluster.drain().await;
        Ok(Response::new(pb::PeerDrainResponse {
            shards_released: u32::try_from(released).unwrap_or(u32::MAX),
        }))
    }
}
