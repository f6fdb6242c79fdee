//! Registrations with work and no live actor — evicted with a burst while the shard was
//! full, or found pending by recovery — each woken at its due time. Pure: the supervisor
//! passes the time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::domain::RegistrationId;

/// Longest wait between two attempts to start an actor that failed to start.
const MAX_BACKOFF_MS: u64 = 30_000;

#[derive(Debug, Default)]
pub(super) struct Parked {
    heap: BinaryHeap<Reverse<Entry>>,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    due: u64,
    id: RegistrationId,
    /// Failed starts so far.
    failures: u32,
}

impl Parked {
    /// Parks `id` until `due` (ms since the epoch).
    pub(super) fn park(&mut self, id: RegistrationId, due: u64) {
        self.heap.push(Reverse(Entry {
            due,
            id,
            failures: 0,
        }));
    }

    /// Parks `id` again after its actor failed to start at `now`: one second later, doubling
    /// with each failure up to thirty.
    pub(super) fn retry(&mut self, id: RegistrationId, failures: u32, now: u64) {
        let backoff = 1_000u64
            .checked_shl(failures.min(16))
            .unwrap_or(MAX_BACKOFF_MS)
            .min(MAX_BACKOFF_MS);
        self.heap.push(Reverse(Entry {
            due: now.saturating_add(backoff),
            id,
            failures: failures.saturating_add(1),
        }));
    }

    /// The next registration due at `now`, with its failed starts so far.
    pub(super) fn pop_due(&mut self, now: u64) -> Option<(RegistrationId, u32)> {
        if self.heap.peek().is_some_and(|Reverse(e)| e.due <= now) {
            self.heap.pop().map(|Reverse(e)| (e.id, e.failures))
        } else {
            None
        }
    }

    /// When the next one is due.
    pub(super) fn next_due(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse(e)| e.due)
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> RegistrationId {
        RegistrationId::from_bytes([n; 16])
    }

    #[test]
    fn registrations_wake_in_due_order_and_not_before() {
        let mut parked = Parked::default();
        parked.park(id(2), 200);
        parked.park(id(1), 100);
        assert_eq!(parked.pop_due(99), None);
        assert_eq!(parked.next_due(), Some(100));
        assert_eq!(parked.pop_due(150), Some((id(1), 0)));
        assert_eq!(parked.pop_due(150), None);
        assert_eq!(parked.pop_due(200), Some((id(2), 0)));
        assert_eq!(parked.len(), 0);
    }

    #[test]
    fn a_failed_start_backs_off_up_to_thirty_seconds() {
        let mut parked = Parked::default();
        let mut waits = Vec::new();
        let mut failures = 0;
        for _ in 0..8 {
            parked.retry(id(1), failures, 0);
            let due = parked.next_due().unwrap();
            waits.push(due);
            failures = parked.pop_due(due).unwrap().1;
        }
        assert_eq!(
            waits,
            [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]
        );
    }
}
