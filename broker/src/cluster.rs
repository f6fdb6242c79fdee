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
pub use forward::{Forwarder, Hop, PeerCall};
pub use keeper::{ClusterNode, ClusterSettings};
pub use metrics::ClusterMetrics;
pub use peer_api::PeerApi;
pub use wire::{
    adopt_from_wire, command_outcome_from_wire, command_to_wire, created_from_wire,
    messages_to_wire, record_from_wire, record_to_wire, verdict_from_wire,
};
