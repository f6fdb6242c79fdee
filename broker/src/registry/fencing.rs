//! Where a write gets its shard fence from.

use herald_cluster::{Epoch, Fence, ShardId};

/// The node cannot write to a shard because it does not hold its lease.
#[derive(Debug, thiserror::Error)]
#[error("this node does not own shard {0}")]
pub struct NotOwner(pub ShardId);

/// Tells which epoch this node writes a shard with. The cluster's lease table implements it
/// for a clustered node.
pub trait Fencing: Send + Sync + std::fmt::Debug + 'static {
    fn fence(&self, shard: ShardId) -> Result<Fence, NotOwner>;
}

/// A node that serves every shard alone (no leases yet): it writes at epoch 0, so once any
/// lease holder has raised a shard's epoch, this node's writes to it are refused.
#[derive(Clone, Copy, Debug, Default)]
pub struct SoloFencing;

impl Fencing for SoloFencing {
    fn fence(&self, shard: ShardId) -> Result<Fence, NotOwner> {
        Ok(Fence {
            shard,
            epoch: Epoch(0),
        })
    }
}
