//! The bursts accepted and not yet pushed in one home's shards on this node, and since when
//! each has waited: what `herald_bursts_pending` and
//! `herald_burst_oldest_pending_age_seconds` report.
//!
//! A shard's supervisor opens its table under the lease epoch it serves and closes it when
//! it stops; each actor sets its own entry after every message (only when it changed). An
//! actor stopped with its burst (evicted from a full shard) keeps its entry: the burst is
//! still this node's to push. An actor of an epoch the table is not open for writes
//! nothing, so a shard handed over leaves no entry behind.

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
    /// The epoch the shard is served under here; `None`: not served.
    epoch: Option<Epoch>,
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

    /// `shard` is served from now on under `epoch`, with nothing pending yet.
    pub(super) fn open(&self, shard: ShardId, epoch: Epoch) {
        let mut table = self.table(shard);
        table.epoch = Some(epoch);
        table.since.clear();
    }

    /// `shard`'s supervisor of `epoch` stopped: its bursts are no longer counted here.
    pub(super) fn close(&self, shard: ShardId, epoch: Epoch) {
        let mut table = self.table(shard);
        if table.epoch == Some(epoch) {
            table.epoch = None;
            table.since = HashMap::new();
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
        if table.epoch != Some(epoch) {
            return;
        }
        match since {
            Some(at) => {
                table.since.insert(id.clone(), at);
            }
            None => {
                table.since.remove(id);
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
        pending.close(a, Epoch(1));
        pending.set(a, Epoch(1), &id(4), Some(UnixMillis(1)));
        assert_eq!(all.summary(), (0, None));
        drop(pending);
        assert_eq!(all.summary(), (0, None));
    }
}
