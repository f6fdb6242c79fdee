//! Faults with real processes, all on loopback and bounded in time: floods at the gateway,
//! and Redis killed, slowed and full under load. Each test prints the figures it measured
//! (run with `--nocapture` to see them) and asserts what must hold whatever the machine:
//! memory bounded, Exchange told only OK or 503 for a live registration, and every accepted
//! notification's final badge pushed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod flood;
#[allow(dead_code)]
#[path = "../cluster/harness.rs"]
mod harness;
mod load;
mod redis;

use std::time::Duration;

/// The `q` quantile of `samples` (sorted here).
pub(crate) fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((samples.len() as f64) * q).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
