//! The shards this node holds, each with the epoch of its lease and how long the lease can
//! be trusted, and a way to follow the changes. One writer keeps it — the lease keeper of a
//! clustered node, or nobody for a node alone, which holds every shard from the start — and
//! the rest of the node reads it: the writes and pushes take their fence from it (refused
//! once the lease is past its trusted time, even before the keeper notices), the
//! subscription layer starts and stops shards as it changes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::lease::{Fencing, NotOwner};
use crate::shard::{Epoch, Fence, SHARD_COUNT, ShardId};

/// `held` of a shard this node does not hold.
const NOT_HELD: u64 = 0;

/// `until` of a lease that never lapses (a node alone).
const FOREVER: u64 = u64::MAX;

#[derive(Debug)]
pub struct Ownership {
    /// Per shard: the epoch held, plus one; [`NOT_HELD`] when not held.
    held: Box<[AtomicU64]>,
    /// Per shard: until when the lease is trusted, in ms since `base`.
    until: Box<[AtomicU64]>,
    base: Instant,
    /// Bumped after every change, so a follower wakes and compares [`Ownership::held`]
    /// with what it acted on (no change is missed, however many happen meanwhile).
    changes: watch::Sender<u64>,
}

impl Ownership {
    /// A node that holds no shard (yet).
    pub fn none() -> Self {
        Self {
            held: (0..SHARD_COUNT).map(|_| AtomicU64::new(NOT_HELD)).collect(),
            until: (0..SHARD_COUNT).map(|_| AtomicU64::new(0)).collect(),
            base: Instant::now(),
            changes: watch::Sender::new(0),
        }
    }

    /// A node alone: a lease on every shard at `epoch`, for good.
    pub fn every_shard(epoch: Epoch) -> Self {
        let ownership = Self::none();
        for shard in ShardId::all() {
            ownership.set(shard, Some(epoch));
            ownership.until[usize::from(shard.number())].store(FOREVER, Ordering::Release);
        }
        ownership
    }

    /// Records that this node holds `shard` at `epoch`, trusted until `until`.
    pub fn acquire(&self, shard: ShardId, epoch: Epoch, until: Instant) {
        self.trust_until(shard, until);
        self.set(shard, Some(epoch));
        self.changed();
    }

    /// Records that the lease of `shard` was renewed: trusted until `until`.
    pub fn trust_until(&self, shard: ShardId, until: Instant) {
        let ms = u64::try_from(until.saturating_duration_since(self.base).as_millis())
            .unwrap_or(FOREVER - 1);
        self.until[usize::from(shard.number())].store(ms, Ordering::Release);
    }

    /// The shards held whose lease is past its trusted time at `now` (the keeper drops
    /// them).
    pub fn lapsed(&self, now: Instant) -> Vec<ShardId> {
        let now = self.millis(now);
        ShardId::all()
            .filter(|s| {
                self.epoch(*s).is_some()
                    && self.until[usize::from(s.number())].load(Ordering::Acquire) <= now
            })
            .collect()
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_millis()).unwrap_or(FOREVER - 1)
    }

    /// How long the lease of `shard` is still trusted; `None` when not held.
    pub fn remaining(&self, shard: ShardId) -> Option<Duration> {
        self.epoch(shard)?;
        let until = self.until[usize::from(shard.number())].load(Ordering::Acquire);
        Some(Duration::from_millis(
            until.saturating_sub(self.millis(Instant::now())),
        ))
    }

    /// Records that this node does not hold `shard` any more (released, or lost).
    pub fn drop_shard(&self, shard: ShardId) {
        self.set(shard, None);
        self.changed();
    }

    /// The epoch this node holds `shard` at, if it does.
    pub fn epoch(&self, shard: ShardId) -> Option<Epoch> {
        match self.held[usize::from(shard.number())].load(Ordering::Acquire) {
            NOT_HELD => None,
            plus_one => Some(Epoch(plus_one - 1)),
        }
    }

    /// Whether some lease held is trusted now: the home's store took this node's lease
    /// writes within the lease's time, so what it answers is the home's current state.
    pub fn trusts_any(&self) -> bool {
        let now = self.millis(Instant::now());
        ShardId::all().any(|s| {
            self.epoch(s).is_some()
                && self.until[usize::from(s.number())].load(Ordering::Acquire) > now
        })
    }

    /// Every shard held, with its epoch.
    pub fn held(&self) -> Vec<(ShardId, Epoch)> {
        ShardId::all()
            .filter_map(|shard| self.epoch(shard).map(|epoch| (shard, epoch)))
            .collect()
    }

    /// How many shards are held.
    pub fn count(&self) -> usize {
        self.held
            .iter()
            .filter(|h| h.load(Ordering::Acquire) != NOT_HELD)
            .count()
    }

    /// Wakes whenever the shards held change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn set(&self, shard: ShardId, epoch: Option<Epoch>) {
        let value = epoch.map_or(NOT_HELD, |e| e.0.saturating_add(1));
        self.held[usize::from(shard.number())].store(value, Ordering::Release);
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl Fencing for Ownership {
    /// The fence of `shard` while its lease is held and trusted.
    fn fence(&self, shard: ShardId) -> Result<Fence, NotOwner> {
        let epoch = self.epoch(shard).ok_or(NotOwner(shard))?;
        let until = self.until[usize::from(shard.number())].load(Ordering::Acquire);
        if until != FOREVER && until <= self.millis(Instant::now()) {
            return Err(NotOwner(shard));
        }
        Ok(Fence { shard, epoch })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(n: u16) -> ShardId {
        ShardId::new(n).unwrap()
    }

    #[test]
    fn a_node_alone_holds_every_shard_and_fences_with_its_epoch() {
        let ownership = Ownership::every_shard(Epoch(0));
        assert_eq!(ownership.count(), usize::from(SHARD_COUNT));
        assert_eq!(
            ownership.fence(shard(17)),
            Ok(Fence {
                shard: shard(17),
                epoch: Epoch(0)
            })
        );
    }

    #[tokio::test]
    async fn changes_are_followed_and_a_shard_not_held_is_refused() {
        let ownership = Ownership::none();
        let mut changes = ownership.subscribe();
        assert_eq!(ownership.fence(shard(3)), Err(NotOwner(shard(3))));
        ownership.acquire(shard(3), Epoch(7), Instant::now() + Duration::from_secs(60));
        changes.changed().await.unwrap();
        assert_eq!(ownership.held(), vec![(shard(3), Epoch(7))]);
        assert_eq!(ownership.fence(shard(3)).unwrap().epoch, Epoch(7));
        ownership.drop_shard(shard(3));
        changes.changed().await.unwrap();
        assert!(ownership.held().is_empty());
        assert_eq!(ownership.fence(shard(3)), Err(NotOwner(shard(3))));
    }

    #[test]
    fn a_lease_past_its_trusted_time_fences_nothing_before_the_keeper_drops_it() {
        let ownership = Ownership::none();
        let now = Instant::now();
        ownership.acquire(shard(9), Epoch(2), now + Duration::from_secs(60));
        ownership.acquire(shard(4), Epoch(1), now);
        assert_eq!(ownership.fence(shard(4)), Err(NotOwner(shard(4))));
        assert_eq!(ownership.lapsed(now), vec![shard(4)]);
        assert!(ownership.fence(shard(9)).is_ok());
        ownership.trust_until(shard(4), now + Duration::from_secs(60));
        assert!(ownership.fence(shard(4)).is_ok());
        assert!(ownership.lapsed(now).is_empty());
    }
}
