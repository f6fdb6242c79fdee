//! `herald.v1.Admin` for a node: `ClusterStatus` of the home the request names (this
//! node's region when empty), answered by the stack serving it; `DrainNode` in this node's
//! own region's home.

use std::sync::Arc;

use herald_proto::v1 as pb;
use herald_proto::v1::admin_server::Admin;
use tonic::{Request, Response, Status};

use super::Homes;
use crate::cluster::AdminApi;

#[derive(Clone, Debug)]
pub struct AdminHomes {
    homes: Arc<Homes>,
}

impl AdminHomes {
    pub fn new(homes: Arc<Homes>) -> Self {
        Self { homes }
    }

    fn of(&self, home: &str) -> Result<AdminApi, Status> {
        let home = if home.is_empty() {
            &self.homes.own().home
        } else {
            home
        };
        match self.homes.slot(home) {
            None => Err(Status::failed_precondition(format!(
                "this node has no copy of home {}; ask a node of its region",
                home.escape_debug()
            ))),
            Some(slot) => slot.served().map(|s| s.admin.clone()).ok_or_else(|| {
                Status::failed_precondition(format!(
                    "home {home} is not served in this region now; ask a node of the region that serves it"
                ))
            }),
        }
    }
}

#[tonic::async_trait]
impl Admin for AdminHomes {
    async fn cluster_status(
        &self,
        request: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let admin = self.of(&request.get_ref().region)?;
        admin.cluster_status(request).await
    }

    async fn drain_node(
        &self,
        request: Request<pb::DrainNodeRequest>,
    ) -> Result<Response<pb::DrainNodeResponse>, Status> {
        let admin = self.of("")?;
        admin.drain_node(request).await
    }
}
