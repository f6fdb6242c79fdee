//! This node as a member of its region's cluster: the lease keeper that heartbeats its
//! member row and holds the leases placement gives it, the forwarding of requests for
//! shards it does not hold, and the `herald.v1.Peer` and `herald.v1.Admin` services.
//!
//! A node with a Redis store is always a cluster member (of a cluster of one, when alone);
//! a node on the in-memory store holds every shard for good.

mod admin_api;
mod forward;
mod keeper;
mod metrics;
mod peer_api;
mod wire;

pub use admin_api::AdminApi;
pub use forward::{Forwarder, HOME_KEY, Hop, PeerCall};
pub use keeper::{ClusterNode, ClusterSettings};
pub use metrics::ClusterMetrics;
pub use peer_api::PeerApi;
pub use wire::{
    adopt_from_wire, command_outcome_from_wire, command_to_wire, created_from_wire,
    messages_to_wire, record_from_wire, record_to_wire, verdict_from_wire,
};

/// Metadata set on the answer of a node whose shard does not hold the registration a
/// forwarded notification names (it moved to another shard): the caller looks it up again.
const MOVED_KEY: &str = "herald-moved";

/// The answer of a node asked about a registration that left `shard`.
fn moved(shard: herald_cluster::ShardId) -> tonic::Status {
    let mut status =
        tonic::Status::unavailable(format!("the registration is not in shard {shard} any more"));
    status.metadata_mut().insert(
        MOVED_KEY,
        tonic::metadata::MetadataValue::from(shard.number()),
    );
    status
}

/// Whether `status` says the registration left the shard the request was for.
pub fn is_moved(status: &tonic::Status) -> bool {
    status.metadata().contains_key(MOVED_KEY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moved_answer_is_told_from_a_not_owner_one() {
        let shard = herald_cluster::ShardId::new(7).unwrap();
        assert!(is_moved(&moved(shard)));
        assert!(!herald_cluster::peer::is_not_owner(&moved(shard)));
        assert!(!is_moved(&herald_cluster::peer::not_owner(shard)));
    }
}
