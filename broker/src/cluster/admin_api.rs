//! The `herald.v1.Admin` service: the operators' view of the cluster (`ClusterStatus`) and
//! the drain of a node before a deploy (`DrainNode`). Same bearer tokens as
//! `Registrations`.

use std::collections::HashMap;
use std::sync::Arc;

use herald_cluster::lease::holder_node;
use herald_cluster::{Ownership, SHARD_COUNT, ShardId};
use herald_proto::v1 as pb;
use herald_proto::v1::admin_server::Admin;
use tonic::{Request, Response, Status};

use super::keeper::ClusterNode;
use crate::routing::Router;
use crate::subscription::Subscriptions;

/// Longest a drain of another node is waited for (its shards flush their bursts first).
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct AdminApi {
    node_id: String,
    region: String,
    address: String,
    ownership: Arc<Ownership>,
    subscriptions: Subscriptions,
    router: Router,
    cluster: Option<Arc<ClusterNode>>,
}

impl AdminApi {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node_id: String,
        region: String,
        address: String,
        ownership: Arc<Ownership>,
        subscriptions: Subscriptions,
        router: Router,
        cluster: Option<Arc<ClusterNode>>,
    ) -> Self {
        Self {
            node_id,
            region,
            address,
            ownership,
            subscriptions,
            router,
            cluster,
        }
    }

    /// A node alone: itself, holding what it holds.
    fn alone(&self) -> pb::ClusterStatusResponse {
        let owned = u32::try_from(self.ownership.count()).unwrap_or(u32::MAX);
        pb::ClusterStatusResponse {
            region: self.region.clone(),
            shard_count: u32::from(SHARD_COUNT),
            nodes: vec![pb::NodeStatus {
                node_id: self.node_id.clone(),
                region: self.region.clone(),
                peer_address: self.address.clone(),
                alive: true,
                draining: false,
                shards_owned: owned,
                live_actors: u64::try_from(self.subscriptions.live_count()).unwrap_or(0),
                last_heartbeat: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
            }],
            unowned_shards: u32::from(SHARD_COUNT) - owned,
        }
    }

    async fn clustered(&self, cluster: &ClusterNode) -> Result<pb::ClusterStatusResponse, Status> {
        let unavailable = |e: herald_cluster::TableError| Status::unavailable(e.to_string());
        let view = cluster.members().members().await.map_err(unavailable)?;
        let shards: Vec<ShardId> = ShardId::all().collect();
        let holders = cluster
            .leases()
            .holders(&shards)
            .await
            .map_err(unavailable)?;
        let ttl = cluster.member_ttl();
        let mut owned: HashMap<&str, u32> = HashMap::new();
        let mut unowned = 0;
        for holder in &holders {
            match holder
                .as_ref()
                .map(|(holder, _)| holder_node(holder))
                .and_then(|node| view.member(node))
                .filter(|member| view.alive(member, ttl))
            {
                Some(member) => *owned.entry(member.node_id.as_str()).or_default() += 1,
                None => unowned += 1,
            }
        }
        let nodes = view
            .members
            .iter()
            .map(|m| pb::NodeStatus {
                node_id: m.node_id.clone(),
                region: m.region.clone(),
                peer_address: m.address.clone(),
                alive: view.alive(m, ttl),
                draining: m.draining,
                shards_owned: owned.get(m.node_id.as_str()).copied().unwrap_or(0),
                live_actors: m.live_actors,
                last_heartbeat: Some(prost_types::Timestamp {
                    seconds: i64::try_from(m.heartbeat_ms / 1_000).unwrap_or(i64::MAX),
                    nanos: i32::try_from((m.heartbeat_ms % 1_000) * 1_000_000).unwrap_or(0),
                }),
            })
            .collect();
        Ok(pb::ClusterStatusResponse {
            region: self.region.clone(),
            shard_count: u32::from(SHARD_COUNT),
            nodes,
            unowned_shards: unowned,
        })
    }
}

#[tonic::async_trait]
impl Admin for AdminApi {
    async fn cluster_status(
        &self,
        request: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let region = request.into_inner().region;
        if !region.is_empty() && region != self.region {
            return Err(Status::failed_precondition(format!(
                "this node is in {}; ask a node of {region}",
                self.region
            )));
        }
        let status = match &self.cluster {
            Some(cluster) => self.clustered(cluster).await?,
            None => self.alone(),
        };
        Ok(Response::new(status))
    }

    async fn drain_node(
        &self,
        request: Request<pb::DrainNodeRequest>,
    ) -> Result<Response<pb::DrainNodeResponse>, Status> {
        let node_id = request.into_inner().node_id;
        let Some(cluster) = &self.cluster else {
            return Err(Status::failed_precondition(
                "this node runs alone on an in-memory store: there is nowhere to move its shards",
            ));
        };
        let others = cluster
            .directory()
            .snapshot()
            .eligible
            .iter()
            .filter(|id| **id != node_id)
            .count();
        if others == 0 {
            return Err(Status::failed_precondition(format!(
                "no other node would take {node_id:?}'s shards: start another node first"
            )));
        }
        let released = if node_id == self.node_id {
            cluster.drain().await
        } else {
            let forwarder = self.router.forwarder();
            let mut call = forwarder
                .call_to(&node_id, DRAIN_TIMEOUT)
                .ok_or_else(|| Status::not_found(format!("no member {node_id:?}")))?;
            let request = call.request(pb::PeerDrainRequest {
                node_id: node_id.clone(),
            });
            let answer = call.client.drain(request).await?;
            answer.into_inner().shards_released as usize
        };
        tracing::info!(node = %node_id, shards = released, "drained a node");
        Ok(Response::new(pb::DrainNodeResponse {
            shards_released: u32::try_from(released).unwrap_or(u32::MAX),
        }))
    }
}
