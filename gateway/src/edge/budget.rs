//! The aggregate budget for request bodies in flight: however many connections send bodies
//! at once, the bytes the gateway holds for them stay under `gateway.body_budget`. A request
//! that cannot have its bytes is answered 503 with `Retry-After` and its connection closed.

use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes of request bodies the gateway may hold at once.
#[derive(Clone, Debug)]
pub(crate) struct BodyBudget {
    bytes: Arc<Semaphore>,
    in_flight: Gauge,
}

impl BodyBudget {
    pub(crate) fn new(total: usize, in_flight: Gauge) -> Self {
        Self {
            bytes: Arc::new(Semaphore::new(total.min(Semaphore::MAX_PERMITS))),
            in_flight,
        }
    }

    /// Takes `n` more bytes for `held`, without waiting; `false` when they are not free.
    pub(crate) fn take(&self, held: &mut Held, n: usize) -> bool {
        if n == 0 {
            return true;
        }
        let Ok(count) = u32::try_from(n) else {
            return false;
        };
        let Ok(permit) = self.bytes.clone().try_acquire_many_owned(count) else {
            return false;
        };
        self.in_flight.inc_by(i64::from(count));
        match &mut held.permit {
            Some(taken) => taken.merge(permit),
            none => *none = Some(permit),
        }
        true
    }

    /// An empty holding, for one request.
    pub(crate) fn hold(&self) -> Held {
        Held {
            permit: None,
            in_flight: self.in_flight.clone(),
        }
    }
}

/// The bytes one request holds, given back when it is answered (dropped).
#[derive(Debug)]
pub(crate) struct Held {
    permit: Option<OwnedSemaphorePermit>,
    in_flight: Gauge,
}

impl Held {
    pub(crate) fn bytes(&self) -> usize {
        self.permit
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let bytes = i64::try_from(self.bytes()).unwrap_or(i64::MAX);
        self.in_flight.dec_by(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_taken_up_to_the_budget_and_given_back_when_dropped() {
        let gauge = Gauge::default();
        let budget = BodyBudget::new(100, gauge.clone());
        let mut first = budget.hold();
        assert!(budget.take(&mut first, 60));
        assert!(budget.take(&mut first, 30));
        assert_eq!(first.bytes(), 90);
        let mut second = budget.hold();
        assert!(!budget.take(&mut second, 11), "only 10 bytes are left");
        assert!(budget.take(&mut second, 10));
        assert_eq!(gauge.get(), 100);
        drop(first);
        assert_eq!(gauge.get(), 10);
        let mut third = budget.hold();
        assert!(budget.take(&mut third, 90));
        drop((second, third));
        assert_eq!(gauge.get(), 0);
    }
}
