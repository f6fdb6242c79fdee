//! Reading a request body within bounds: at most `cap` bytes, each byte paid for from the
//! [`BodyBudget`] before it is kept, arriving at `min_rate` bytes per second on average
//! after a short grace (slow bodies are cut), and whole within `timeout`.

use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body_util::BodyExt as _;
use tokio::time::Instant;

use super::budget::{BodyBudget, Held};

/// How long a body may take before its rate is held against it: covers a client's first
/// round trip and a slow start.
pub(crate) const RATE_GRACE: Duration = Duration::from_secs(1);

/// The bounds a body is read within.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyRules {
    pub(crate) cap: usize,
    /// Bytes per second, averaged since the body began, after [`RATE_GRACE`]; 0: no floor.
    pub(crate) min_rate: u64,
    pub(crate) timeout: Duration,
}

/// Why a body was not read whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyError {
    TooLarge,
    /// The budget of bytes in flight had no room for it.
    OverBudget,
    /// It arrived more slowly than `min_rate`.
    TooSlow,
    /// It did not arrive within `timeout`.
    TimedOut,
    Unreadable,
}

/// Most bytes read and dropped of a body no one will use (an unknown callback URL, a
/// refusal): enough for any real notification, so that Exchange reads the answer instead
/// of a reset, and little enough that a flood of them costs nothing.
pub(crate) const DISCARD_LIMIT: usize = 64 * 1024;

/// Reads `body` under `rules`; the bytes it keeps are held in `held` until that is dropped.
/// A body that arrives in one frame (the usual case) is not copied.
pub(crate) async fn read_body(
    mut body: Body,
    declared: Option<usize>,
    rules: BodyRules,
    budget: &BodyBudget,
    held: &mut Held,
) -> Result<Bytes, BodyError> {
    let mut clock = Clock::start(rules);
    let mut first: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    while let Some(data) = clock.next(&mut body).await? {
        if clock.received > rules.cap {
            return Err(BodyError::TooLarge);
        }
        let short = clock.received.saturating_sub(held.bytes());
        if !budget.take(held, short) {
            return Err(BodyError::OverBudget);
        }
        match first.take() {
            None if joined.is_empty() => first = Some(data),
            earlier => {
                if let Some(earlier) = earlier {
                    // One allocation for the whole body when its length is declared.
                    let expected = declared.unwrap_or(0).clamp(clock.received, rules.cap);
                    joined.reserve_exact(expected);
                    joined.extend_from_slice(&earlier);
                }
                joined.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| Bytes::from(joined)))
}

/// Reads and drops at most [`DISCARD_LIMIT`] bytes of `body` under `rules`; `true` when that
/// was the whole body (the connection can serve another request).
pub(crate) async fn discard(mut body: Body, declared: Option<usize>, rules: BodyRules) -> bool {
    if declared.is_some_and(|len| len > DISCARD_LIMIT) {
        return false;
    }
    let mut clock = Clock::start(rules);
    loop {
        match clock.next(&mut body).await {
            Ok(Some(_)) if clock.received > DISCARD_LIMIT => return false,
            Ok(Some(_)) => {}
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

/// The time a body is read against, and what it has brought so far.
struct Clock {
    started: Instant,
    overall: Instant,
    received: usize,
    min_rate: u64,
}

impl Clock {
    fn start(rules: BodyRules) -> Self {
        let started = Instant::now();
        Self {
            started,
            overall: started + rules.timeout,
            received: 0,
            min_rate: rules.min_rate,
        }
    }

    /// The body's next data, `None` at its end.
    async fn next(&mut self, body: &mut Body) -> Result<Option<Bytes>, BodyError> {
        loop {
            let paid = paid_until(self.started, self.received, self.min_rate);
            let deadline = self.overall.min(paid);
            let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(Some(frame)) => frame.map_err(|_| BodyError::Unreadable)?,
                Ok(None) => return Ok(None),
                Err(_) if deadline == self.overall => return Err(BodyError::TimedOut),
                Err(_) => return Err(BodyError::TooSlow),
            };
            if let Ok(data) = frame.into_data() {
                self.received += data.len();
                return Ok(Some(data));
            }
        }
    }
}

/// Until when `received` bytes pay for the time since `started` at `min_rate`.
fn paid_until(started: Instant, received: usize, min_rate: u64) -> Instant {
    if min_rate == 0 {
        return started + Duration::from_secs(u64::from(u32::MAX));
    }
    let paid = Duration::from_secs_f64(received as f64 / min_rate as f64);
    started + RATE_GRACE + paid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_received_buy_time_at_the_minimum_rate() {
        let started = Instant::now();
        assert_eq!(paid_until(started, 0, 1000), started + RATE_GRACE);
        assert_eq!(
            paid_until(started, 2500, 1000),
            started + RATE_GRACE + Duration::from_millis(2500)
        );
        assert!(paid_until(started, 0, 0) > started + Duration::from_secs(3600));
    }
}
