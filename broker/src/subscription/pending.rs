//! The bursts accepted and not yet pushed in one home's shards on this node, and since when
//! each has waited: what `herald_bursts_pending` and
//! `herald_burst_oldest_pending_age_seconds` report.
//!
//! A shard's supervisor opens its table under the lease epoch it serves and closes it when
//! it stops (a table stays open while any supervisor of its epoch runs); each actor sets its own entry when it starts and after
//! every message that changed it. An actor stopped with its burst (evicted from a full
//! shard) keeps its entry: the burst is still this node's to push. An actor of an epoch the
//! table is not open for writes nothing, so a shard handed over leaves no entry behind.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use herald_cluster::{Epoch, SHARD_COUNT, ShardId};

use crate::domain::{RegistrationId, UnixMillis};

#[derive(Debug)]
pub struct PendingBursts {
    shards: Box<[Mutex<ShardTable>]>,
}

#[derive(Debug, Default)]
struct ShardTable {
    /// The epoch the shard is served under, and by how many supervisors (two for a moment:
    /// one stopping, one starting under a lease taken again); `None`: not served.
    opened: Option<(Epoch, u32)>,
    /// When each pending burst's first notification was accepted.
    since: HashMap<RegistrationId, UnixMillis>,
}

impl Default for PendingBursts {
    fn default() -> Self {
        Self {
            shards: (0..SHARD_COUNT)
                .map(|_| Mutex::new(ShardTable::default()))
                .collect(),
        }
    }
}

impl PendingBursts {
    fn table(&self, shard: ShardId) -> std::sync::MutexGuard<'_, ShardTable> {
        self.shards[usize::from(shard.number())]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// A supervisor serves `shard` from now on under `epoch`. A new epoch starts an empty
    /// table; the same one (a lease taken again, a supervisor whose predecessor has not
    /// stopped yet) keeps what its actors told.
    pub(super) fn open(&self, shard: ShardId, epoch: Epoch) {
        let mut table = self.table(shard);
        match &mut table.opened {
            Some((open, supervisors)) if *open == epoch => *supervisors += 1,
            _ => {
                table.opened = Some((epoch, 1));
                table.since = HashMap::new();
            }
        }
    }

    /// A supervisor of `shard` under `epoch` stopped: once none is left, the shard's bursts
    /// are not counted here from then on.
    pub(super) fn close(&self, shard: ShardId, epoch: Epoch) {
        let mut table = self.table(shard);
        if let Some((open, supervisors)) = &mut table.opened
            && *open == epoch
        {
            *supervisors -= 1;
            if *supervisors == 0 {
                table.opened = None;
                table.since = HashMap::new();
            }
        }
    }

    /// Registration `id`'s burst in `shard` is pending since `since`, or none is.
    pub(super) fn set(
        &self,
        shard: ShardId,
        epoch: Epoch,
        id: &RegistrationId,
        since: Option<UnixMillis>,
    ) {
        let mut table = self.table(shard);
        if table.opened.is_none_or(|(open, _)| open != epoch) {
            return;
        }
        match since {
            Some(at) => {
                table.since.insert(id.clone(), at);
            }
            None => {
                table.since.remove(id);
                // A spike of bursts leaves no large table behind.
                if table.since.capacity() > 64 && table.since.len() < table.since.capacity() / 4 {
                    table.since.shrink_to_fit();
                }
            }
        }
    }

    /// How many bursts are pending, and when the oldest one's first notification came.
    pub fn summary(&self) -> (usize, Option<UnixMillis>) {
        self.shards
            .iter()
            .fold((0, None), |(count, oldest), table| {
                let table = table.lock().unwrap_or_else(|e| e.into_inner());
                let first = table.since.values().min().copied();
                let oldest = match (oldest, first) {
                    (Some(a), Some(b)) => Some(std::cmp::min(a, b)),
                    (a, b) => a.or(b),
                };
                (count + table.since.len(), oldest)
            })
    }
}

/// Every home stack's [`PendingBursts`] on the node, for the metrics (a stack that is
/// dropped drops out).
#[derive(Clone, Debug, Default)]
pub struct PendingBurstsByHome(Arc<Mutex<Vec<Weak<PendingBursts>>>>);

impl PendingBurstsByHome {
    pub(super) fn add(&self, pending: &Arc<PendingBursts>) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|p| p.strong_count() > 0);
        all.push(Arc::downgrade(pending));
    }

    /// The pending bursts of every home stack together: how many, and when the oldest one's
    /// first notification came.
    pub fn summary(&self) -> (usize, Option<UnixMillis>) {
        let all: Vec<Arc<PendingBursts>> = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        all.iter()
            .map(|p| p.summary())
            .fold((0, None), |(count, oldest), (n, first)| {
                let oldest = match (oldest, first) {
                    (Some(a), Some(b)) => Some(std::cmp::min(a, b)),
                    (a, b) => a.or(b),
                };
                (count + n, oldest)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> RegistrationId {
        RegistrationId::parse("test", &format!("{n:02x}").repeat(16)).unwrap()
    }

    #[test]
    fn only_the_serving_epoch_counts_and_a_closed_shard_leaves_nothing() {
        let pending = Arc::new(PendingBursts::default());
        let all = PendingBurstsByHome::default();
        all.add(&pending);
        let (a, b) = (ShardId::new(1).unwrap(), ShardId::new(2).unwrap());
        pending.set(a, Epoch(1), &id(1), Some(UnixMillis(100)));
        assert_eq!(all.summary(), (0, None), "shard not open yet");
        pending.open(a, Epoch(1));
        pending.open(b, Epoch(7));
        pending.set(a, Epoch(1), &id(1), Some(UnixMillis(100)));
        pending.set(b, Epoch(7), &id(2), Some(UnixMillis(50)));
        pending.set(b, Epoch(6), &id(3), Some(UnixMillis(10)));
        assert_eq!(all.summary(), (2, Some(UnixMillis(50))));
        pending.set(b, Epoch(7), &id(2), None);
        assert_eq!(all.summary(), (1, Some(UnixMillis(100))));
        pending.close(a, Epoch(0));
        assert_eq!(
            all.summary().0,
            1,
            "another epoch's supervisor closes nothing"
        );
        // A second supervisor of the same epoch (the lease taken again before the first
        // stopped): the first one's close, late, leaves the table open and its entries.
        pending.open(a, Epoch(1));
        pending.set(a, Epoch(1), &id(5), Some(UnixMillis(300)));
        pending.close(a, Epoch(1));
        assert_eq!(all.summary().0, 2, "a late close does not shut the table");
        pending.close(a, Epoch(1));
        pending.set(a, Epoch(1), &id(4), Some(UnixMillis(1)));
        assert_eq!(all.summary(), (0, None));
        drop(pending);
        assert_eq!(all.summary(), (0, None));
    }
}
