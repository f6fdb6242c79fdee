//! `herald.v1.Peer` for a node: each call goes to the stack of the home it names (the
//! `herald-home` metadata its caller's forwarder sets), if this node serves that home.

use std::sync::Arc;

use herald_proto::v1 as pb;
use herald_proto::v1::peer_server::Peer;
use tonic::{Request, Response, Status};

use super::Homes;
use crate::cluster::{HOME_KEY, PeerApi};

#[derive(Clone, Debug)]
pub struct PeerHomes {
    homes: Arc<Homes>,
}

impl PeerHomes {
    pub fn new(homes: Arc<Homes>) -> Self {
        Self { homes }
    }

    /// The service of the home the call is for.
    fn pick<T>(&self, request: &Request<T>) -> Result<PeerApi, Status> {
        let home = match request.metadata().get(HOME_KEY) {
            Some(value) => value
                .to_str()
                .map_err(|_| Status::invalid_argument("the home metadata is not text"))?,
            None => &self.homes.own().home,
        };
        self.homes
            .served(home)
            .map(|stack| stack.peer.clone())
            .ok_or_else(|| {
                Status::unavailable(format!(
                    "this node does not serve home {}",
                    home.escape_debug()
                ))
            })
    }
}

#[tonic::async_trait]
impl Peer for PeerHomes {
    async fn forward_notification(
        &self,
        request: Request<pb::ForwardNotificationRequest>,
    ) -> Result<Response<pb::ForwardNotificationResponse>, Status> {
        self.pick(&request)?.forward_notification(request).await
    }

    async fn forward_command(
        &self,
        request: Request<pb::ForwardCommandRequest>,
    ) -> Result<Response<pb::ForwardCommandResponse>, Status> {
        self.pick(&request)?.forward_command(request).await
    }

    async fn forward_create(
        &self,
        request: Request<pb::ForwardCreateRequest>,
    ) -> Result<Response<pb::ForwardCreateResponse>, Status> {
        self.pick(&request)?.forward_create(request).await
    }

    async fn adopt(
        &self,
        request: Request<pb::AdoptRequest>,
    ) -> Result<Response<pb::AdoptResponse>, Status> {
        self.pick(&request)?.adopt(request).await
    }

    async fn drain(
        &self,
        request: Request<pb::PeerDrainRequest>,
    ) -> Result<Response<pb::PeerDrainResponse>, Status> {
        self.pick(&request)?.drain(request).await
    }
}
