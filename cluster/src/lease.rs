//! Where a state write gets its shard fence from: the epoch of the lease this node holds on
//! the shard. A write without a lease is refused before it is tried ([`NotOwner`]); one
//! whose lease was lost meanwhile is refused by the store (its epoch is older).

use crate::shard::{Fence, ShardId};

/// This node does not hold the lease of a shard, so it may not write it (the request
/// belongs to the shard's owner).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("this node does not own shard {0}")]
pub struct NotOwner(pub ShardId);

/// Tells which epoch this node writes a shard with.
pub trait Fencing: Send + Sync + std::fmt::Debug + 'static {
    fn fence(&self, shard: ShardId) -> Result<Fence, NotOwner>;
}
