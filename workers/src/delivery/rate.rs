//! A token bucket: FCM's per-project send rate from this node, and a pause when Google says
//! the project quota is spent.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub(crate) struct RateLimit {
    per_second: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
    paused_until: Option<Instant>,
}

impl RateLimit {
    /// At most `per_second` sends a second, in bursts of at most one second's worth.
    pub(crate) fn new(per_second: u32, now: Instant) -> Self {
        let per_second = f64::from(per_second.max(1));
        Self {
            per_second,
            state: Mutex::new(Bucket {
                tokens: per_second,
                at: now,
                paused_until: None,
            }),
        }
    }

    /// Takes one send; `Err(wait)` when there is none until `wait` has passed (the caller
    /// waits and asks again).
    pub(crate) fn take(&self, now: Instant) -> Result<(), Duration> {
        let mut b = self.lock();
        if let Some(until) = b.paused_until {
            if now < until {
                return Err(until - now);
            }
            b.paused_until = None;
        }
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_second).min(self.per_second);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.per_second))
        }
    }

    /// Google said the project quota is spent: nothing is sent before `now + wait`.
    pub(crate) fn pause(&self, now: Instant, wait: Duration) {
        let mut b = self.lock();
        let wait = wait.min(crate::classify::MAX_RETRY_AFTER);
        let until = now.checked_add(wait).unwrap_or(now);
        b.paused_until = Some(b.paused_until.map_or(until, |u| u.max(until)));
        b.tokens = 0.0;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_one_second_then_the_steady_rate() {
        let t0 = Instant::now();
        let limit = RateLimit::new(10, t0);
        assert!((0..10).all(|_| limit.take(t0).is_ok()));
        let wait = limit.take(t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        assert!(limit.take(t0 + Duration::from_millis(100)).is_ok());
        assert!(limit.take(t0 + Duration::from_millis(150)).is_err());
    }

    #[test]
    fn a_pause_holds_every_send_until_it_ends() {
        let t0 = Instant::now();
        let limit = RateLimit::new(1000, t0);
        limit.pause(t0, Duration::from_secs(60));
        assert_eq!(
            limit.take(t0 + Duration::from_secs(20)),
            Err(Duration::from_secs(40))
        );
        assert!(limit.take(t0 + Duration::from_secs(61)).is_ok());
    }
}
