//! A per-app circuit breaker for provider storms (5xx, transport failures): after
//! `failures` in a row the app is not contacted for an open period that doubles while the
//! storm goes on (toward Apple's 15 minutes); then one probe is let through.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    first_open: Duration,
    max_open: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    failures: u32,
    /// The current or last open period.
    open_for: Duration,
    open_until: Option<Instant>,
    /// A probe is out while the circuit is half-open.
    probing: bool,
}

/// Whether a request may go to the provider now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    Closed,
    /// The one request that tests a recovering provider.
    Probe,
    /// Open: try again after this long.
    Open(Duration),
}

impl Breaker {
    pub(crate) fn new(threshold: u32, first_open: Duration, max_open: Duration) -> Self {
        Self {
            threshold,
            first_open,
            max_open,
            state: Mutex::new(State::default()),
        }
    }

    pub(crate) fn admit(&self, now: Instant) -> Admission {
        let mut state = self.lock();
        match state.open_until {
            None => Admission::Closed,
            Some(until) if now < until => Admission::Open(until - now),
            Some(_) if state.probing => Admission::Open(self.first_open.min(state.open_for)),
            Some(_) => {
                state.probing = true;
                Admission::Probe
            }
        }
    }

    /// Whether the circuit is open now — in an open period; the probe after one counts as
    /// closed — without changing anything.
    pub(crate) fn is_open(&self, now: Instant) -> bool {
        self.lock().open_until.is_some_and(|until| now < until)
    }

    /// The provider answered (anything but a storm answer): the circuit closes.
    pub(crate) fn success(&self) {
        *self.lock() = State::default();
    }

    /// A storm answer. Returns the open period if this failure opened (or re-opened) it.
    pub(crate) fn failure(&self, now: Instant) -> Option<Duration> {
        let mut state = self.lock();
        state.failures = state.failures.saturating_add(1);
        let reopen = state.probing;
        if !reopen && (state.open_until.is_some() || state.failures < self.threshold) {
            return None;
        }
        state.open_for = if reopen {
            state.open_for.saturating_mul(2).min(self.max_open)
        } else {
            self.first_open
        };
        state.open_until = Some(now.checked_add(state.open_for).unwrap_or(now));
        state.probing = false;
        Some(state.open_for)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(3, Duration::from_secs(10), Duration::from_secs(35))
    }

    #[test]
    fn opens_after_the_threshold_and_probes_once_the_period_is_over() {
        let b = breaker();
        let t0 = Instant::now();
        assert_eq!(b.failure(t0), None);
        assert_eq!(b.failure(t0), None);
        assert_eq!(b.admit(t0), Admission::Closed);
        assert_eq!(b.failure(t0), Some(Duration::from_secs(10)));
        assert_eq!(
            b.admit(t0 + Duration::from_secs(4)),
            Admission::Open(Duration::from_secs(6))
        );
        let later = t0 + Duration::from_secs(10);
        assert_eq!(b.admit(later), Admission::Probe);
        assert!(
            matches!(b.admit(later), Admission::Open(_)),
            "one probe at a time"
        );
        b.success();
        assert_eq!(b.admit(later), Admission::Closed);
    }

    #[test]
    fn a_failed_probe_doubles_the_open_period_up_to_the_maximum() {
        let b = breaker();
        let mut now = Instant::now();
        for _ in 0..3 {
            b.failure(now);
        }
        let mut periods = Vec::new();
        for _ in 0..4 {
            now += Duration::from_secs(60);
            assert_eq!(b.admit(now), Admission::Probe);
            periods.push(b.failure(now).map(|d| d.as_secs()));
        }
        assert_eq!(periods, [Some(20), Some(35), Some(35), Some(35)]);
    }

    #[test]
    fn failures_while_open_do_not_extend_it() {
        let b = breaker();
        let t0 = Instant::now();
        for _ in 0..3 {
            b.failure(t0);
        }
        assert_eq!(b.failure(t0 + Duration::from_secs(5)), None);
        assert_eq!(b.admit(t0 + Duration::from_secs(10)), Admission::Probe);
    }
}
