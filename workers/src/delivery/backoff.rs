//! Retry spacing: exponential back-off with full jitter (AWS architecture blog's "full
//! jitter"), never sooner than the provider asked.

use std::time::Duration;

/// The retry policy of one deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The longest wait before retry number `attempt + 1`: `base · 2^attempt`, capped.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The wait before retrying after `attempt` earlier retries: uniform in
    /// `[0, ceiling(attempt)]`, at least `floor` (a `Retry-After`, a minimum for the cause).
    pub fn delay(&self, attempt: u32, floor: Option<Duration>) -> Duration {
        let ceiling = self.ceiling(attempt).as_millis() as u64;
        let jittered = Duration::from_millis(fastrand::u64(0..=ceiling));
        jittered.max(
            floor
                .unwrap_or_default()
                .min(crate::classify::MAX_RETRY_AFTER),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Backoff = Backoff {
        base: Duration::from_secs(1),
        cap: Duration::from_secs(300),
    };

    #[test]
    fn the_ceiling_doubles_per_attempt_up_to_the_cap() {
        let ceilings: Vec<u64> = (0..11).map(|a| POLICY.ceiling(a).as_secs()).collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(POLICY.ceiling(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn delays_are_jittered_below_the_ceiling() {
        let delays: Vec<Duration> = (0..200).map(|_| POLICY.delay(4, None)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(16)));
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(
            distinct.len() > 50,
            "full jitter spreads retries: {distinct:?}"
        );
    }

    #[test]
    fn a_retry_after_is_a_floor() {
        for _ in 0..50 {
            assert!(POLICY.delay(0, Some(Duration::from_secs(60))) >= Duration::from_secs(60));
        }
    }
}
