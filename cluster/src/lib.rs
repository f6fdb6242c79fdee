//! Cluster mechanics: which shard a device belongs to, which node of a region serves a
//! shard (placement over the live members), shard leases and their fencing epochs,
//! membership, and node-to-node forwarding over the `herald.v1.Peer` service.
//!
//! It knows nothing of registrations, EWS or push providers: it deals in shard numbers,
//! node ids and epochs.

#![forbid(unsafe_code)]

mod config;
pub mod directory;
pub mod lease;
pub mod membership;
mod ownership;
pub mod peer;
pub mod placement;
mod shard;

pub use config::{ClusterConfig, DEFAULT_REGIONS};
pub use directory::{Directory, Snapshot};
pub use lease::{Claim, Fencing, LeaseTable, NotOwner};
pub use membership::{Member, MemberTable, MemberView, TableError};
pub use ownership::Ownership;
pub use shard::{Epoch, Fence, SHARD_COUNT, ShardId};
