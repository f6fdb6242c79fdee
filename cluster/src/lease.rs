//! Shard leases and the fences writes carry. A node serves a shard only while it holds the
//! shard's lease: acquired when free (the shard's epoch grows by one), renewed at a third of
//! its TTL, released on a planned move, and lapsing by itself when its holder stops renewing
//! (a crash, a pause, a partition). Where a state write gets its fence from: the epoch of
//! the lease this node holds on the shard. A write without a lease is refused before it is
//! tried ([`NotOwner`]); one whose lease was taken meanwhile is refused by the store (its
//! epoch is older).

use std::time::Duration;

use async_trait::async_trait;

use crate::membership::TableError;
use crate::shard::{Epoch, Fence, ShardId};

/// This node does not hold the lease of a shard, so it may not write it (the request
/// belongs to the shard's owner).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("this node does not own shard {0}")]
pub struct NotOwner(pub ShardId);

/// Tells which epoch this node writes a shard with.
pub trait Fencing: Send + Sync + std::fmt::Debug + 'static {
    fn fence(&self, shard: ShardId) -> Result<Fence, NotOwner>;
}

/// What a try to acquire a shard's lease found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The lease was free and is ours now, at this epoch (one more than the shard's last).
    Acquired(Epoch),
    /// Another holder has it.
    Taken { holder: String },
}

/// How long a lease is trusted locally after the renewal that was sent at `sent`: its TTL
/// less a margin for the store's expiry precision, so that this node stops using a lease
/// before anybody else can acquire it.
pub fn trusted_for(ttl: Duration) -> Duration {
    ttl.saturating_sub((ttl / 12).max(Duration::from_millis(50)))
}

/// How often leases are renewed: a third of their TTL, so that two renewals may fail before
/// a lease lapses.
pub fn renew_every(ttl: Duration) -> Duration {
    ttl / 3
}

/// Where the shard leases live. A holder is a node's id and incarnation, so a restarted
/// node never mistakes its predecessor's lease for its own.
#[async_trait]
pub trait LeaseTable: Send + Sync + std::fmt::Debug + 'static {
    /// Tries to acquire each of `shards` for `holder`, for `ttl`; a shard whose try could
    /// not be made is left out of the answer.
    async fn acquire(
        &self,
        shards: &[ShardId],
        holder: &str,
        ttl: Duration,
    ) -> Result<Vec<(ShardId, Claim)>, TableError>;

    /// Extends each lease `holder` holds at the given epoch by `ttl`; the answer says, for
    /// each, whether it was still held (`None`: its renewal could not be tried — a part of
    /// the table unreachable — so nothing is known of it). `Err` when none could be.
    async fn renew(
        &self,
        leases: &[(ShardId, Epoch)],
        holder: &str,
        ttl: Duration,
    ) -> Result<Vec<Option<bool>>, TableError>;

    /// Gives up the leases `holder` holds at the given epochs (others are left alone).
    async fn release(&self, leases: &[(ShardId, Epoch)], holder: &str) -> Result<(), TableError>;

    /// Who holds each of `shards` now, with the epoch; `None` for a free one.
    async fn holders(&self, shards: &[ShardId])
    -> Result<Vec<Option<(String, Epoch)>>, TableError>;
}

/// A lease holder's name: `<node id>/<incarnation>`.
pub fn holder_name(node_id: &str, incarnation: &str) -> String {
    format!("{node_id}/{incarnation}")
}

/// The node id of a holder's name.
pub fn holder_node(holder: &str) -> &str {
    holder.rsplit_once('/').map_or(holder, |(node, _)| node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_trusted_for_less_than_its_ttl_and_renewed_well_before() {
        let ttl = Duration::from_secs(6);
        assert_eq!(trusted_for(ttl), Duration::from_millis(5_500));
        assert_eq!(renew_every(ttl), Duration::from_secs(2));
        assert!(trusted_for(Duration::from_millis(100)) < Duration::from_millis(100));
    }

    #[test]
    fn a_holder_names_its_node() {
        let holder = holder_name("use1-a", "k3j2");
        assert_eq!(holder_node(&holder), "use1-a");
        assert_eq!(holder_node("bare"), "bare");
    }
}
