//! What a subscription actor tells its shard supervisor without a message: how many
//! requests it has handled and when it next has work. The supervisor reads them to decide
//! which actors it may stop (passivate when idle, evict when the shard is full) — never one
//! with a request on its way or a push in flight.

use std::sync::atomic::{AtomicU64, Ordering};

/// `due` of an actor with a push in flight: it cannot be stopped.
pub(super) const BUSY: u64 = u64::MAX;

#[derive(Debug, Default)]
pub(super) struct Activity {
    handled: AtomicU64,
    /// When the actor next has work, in ms since the epoch: 0 none, [`BUSY`] a push in
    /// flight.
    due: AtomicU64,
}

impl Activity {
    pub(super) fn handled(&self) -> u64 {
        self.handled.load(Ordering::Acquire)
    }

    pub(super) fn count_handled(&self) {
        self.handled.fetch_add(1, Ordering::AcqRel);
    }

    pub(super) fn due(&self) -> u64 {
        self.due.load(Ordering::Acquire)
    }

    pub(super) fn set_due(&self, due: u64) {
        self.due.store(due, Ordering::Release);
    }
}
