//! Calling the other nodes of the cluster over `herald.v1.Peer`: one lazily connected
//! channel per peer address, every call authenticated with the peer secret and bounded by a
//! deadline. And the one answer a peer gives for a shard it does not hold.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_proto::v1::peer_client::PeerClient;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::shard::ShardId;

/// Metadata set on the `UNAVAILABLE` answer of a node that does not hold the shard a
/// request is for.
pub const NOT_OWNER_KEY: &str = "herald-not-owner";

/// The answer of a node asked for a shard it does not hold.
pub fn not_owner(shard: ShardId) -> tonic::Status {
    let mut status = tonic::Status::unavailable(format!("this node does not own shard {shard}"));
    status
        .metadata_mut()
        .insert(NOT_OWNER_KEY, MetadataValue::from(shard.number()));
    status
}

/// Whether `status` says the called node does not hold the shard.
pub fn is_not_owner(status: &tonic::Status) -> bool {
    status.metadata().contains_key(NOT_OWNER_KEY)
}

/// The peers of this node, by address.
#[derive(Clone)]
pub struct Peers {
    authorization: MetadataValue<tonic::metadata::Ascii>,
    connect_timeout: Duration,
    /// The peers' listeners are TLS: how to check them, and what to present.
    tls: Option<ClientTlsConfig>,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers")
            .field("authorization", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A peer secret that cannot go in a header.
#[derive(Debug, thiserror::Error)]
#[error("cluster.peer_secret must be printable ASCII")]
pub struct BadSecret;

/// A peer address that is not one, or that TLS cannot be set up for.
#[derive(Debug, thiserror::Error)]
#[error("not a peer address: {0:?}")]
pub struct BadAddress(pub String);

impl Peers {
    /// Peers called with `secret`, over TLS when `tls` is given.
    pub fn new(
        secret: &str,
        connect_timeout: Duration,
        tls: Option<ClientTlsConfig>,
    ) -> Result<Self, BadSecret> {
        let authorization = format!("Bearer {secret}").parse().map_err(|_| BadSecret)?;
        Ok(Self {
            authorization,
            connect_timeout,
            tls,
            channels: Arc::default(),
        })
    }

    /// A client of the peer at `address` (`host:port`), connected on first use.
    pub fn client(&self, address: &str) -> Result<PeerClient<Channel>, BadAddress> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = channels.get(address) {
            return Ok(PeerClient::new(channel.clone()));
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
            .map_err(|_| BadAddress(address.to_owned()))?;
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|_| BadAddress(address.to_owned()))?;
        }
        let endpoint = endpoint
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        let channel = endpoint.connect_lazy();
        channels.insert(address.to_owned(), channel.clone());
        Ok(PeerClient::new(channel))
    }

    /// `message` as a request to a peer: authenticated, with `deadline`.
    pub fn request<T>(&self, message: T, deadline: Duration) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(deadline);
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        request
    }

    /// Forgets the channels of addresses not in `keep` (peers that left).
    pub fn retain(&self, keep: &[&str]) {
        self.channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|address, _| keep.contains(&address.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_not_owner_answer_is_told_from_other_unavailable_ones() {
        let shard = ShardId::new(12).unwrap();
        assert!(is_not_owner(&not_owner(shard)));
        assert!(!is_not_owner(&tonic::Status::unavailable("busy")));
    }

    #[test]
    fn a_secret_that_cannot_be_a_header_is_refused() {
        assert!(Peers::new("line\nbreak", Duration::from_secs(1), None).is_err());
        assert!(Peers::new("s3cret", Duration::from_secs(1), None).is_ok());
    }
}
