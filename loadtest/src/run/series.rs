//! Per-second measurements of a run: what was sent and answered, answer latency
//! percentiles, pushes received — printed live and kept for the report.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::report::latency_histogram;

/// Counters of the current second (swapped out by the ticker).
#[derive(Debug)]
pub(super) struct Live {
    pub(super) sent: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
    latency: Mutex<Histogram<u64>>,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            sent: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: Mutex::new(latency_histogram()),
        }
    }
}

/// One second of the run.
#[derive(Clone, Debug, Serialize)]
pub struct Second {
    pub t: u64,
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub pushes: u64,
}

impl Live {
    pub(super) fn answered(&self, ok: bool, micros: u64) {
        if ok {
            self.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let _ = self
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(micros.clamp(1, 60_000_000));
    }

    /// Closes second `t` (`pushes` received in it) and starts the next; the second's answer
    /// latencies come back for the run's totals.
    pub(super) fn tick(&self, t: u64, pushes: u64) -> (Second, Histogram<u64>) {
        let latency = std::mem::replace(
            &mut *self.latency.lock().unwrap_or_else(|e| e.into_inner()),
            latency_histogram(),
        );
        let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
        let second = Second {
            t,
            sent: self.sent.swap(0, Ordering::Relaxed),
            ok: self.ok.swap(0, Ordering::Relaxed),
            errors: self.errors.swap(0, Ordering::Relaxed),
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            pushes,
        };
        (second, latency)
    }
}

impl std::fmt::Display for Second {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "t={:>4}s sent {:>6}/s ok {:>6} errors {:>4} answer p50 {:>7.2} ms p99 {:>7.2} ms pushes {:>6}/s",
            self.t, self.sent, self.ok, self.errors, self.p50_ms, self.p99_ms, self.pushes
        )
    }
}
