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

/// The busiest stretch of a run: the `width` consecutive seconds with the most `OK` answers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Busiest {
    /// When the stretch starts (seconds into the run).
    pub from_t: u64,
    pub seconds: u64,
    pub ok_per_second: f64,
    pub pushes_per_second: f64,
}

/// Seconds over which [`busiest`] averages: long enough to smooth one slow second, short
/// enough to fit inside a scenario's highest step.
pub(super) const BUSIEST_WIDTH: usize = 5;

/// The `width` consecutive seconds of `series` with the most `OK` answers. While the target
/// keeps up, that is the offered rate; once it is saturated (answers arrive late and pile
/// up), it is the most the target answered, its capacity for that load.
pub(super) fn busiest(series: &[Second], width: usize) -> Option<Busiest> {
    let width = width.max(1);
    series
        .windows(width)
        .max_by_key(|window| window.iter().map(|s| s.ok).sum::<u64>())
        .map(|window| {
            let mean = |value: fn(&Second) -> u64| {
                window.iter().map(value).sum::<u64>() as f64 / width as f64
            };
            Busiest {
                from_t: window[0].t,
                seconds: width as u64,
                ok_per_second: mean(|s| s.ok),
                pushes_per_second: mean(|s| s.pushes),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(t: u64, ok: u64, pushes: u64) -> Second {
        Second {
            t,
            sent: ok,
            ok,
            errors: 0,
            p50_ms: 0.0,
            p99_ms: 0.0,
            p999_ms: 0.0,
            pushes,
        }
    }

    #[test]
    fn the_busiest_stretch_is_the_window_with_most_answers() {
        let series: Vec<Second> = [(10, 0), (50, 5), (90, 30), (100, 40), (20, 70), (0, 80)]
            .iter()
            .enumerate()
            .map(|(t, &(ok, pushes))| second(t as u64 + 1, ok, pushes))
            .collect();
        let busiest = busiest(&series, 2).unwrap();
        assert_eq!(
            busiest,
            Busiest {
                from_t: 3,
                seconds: 2,
                ok_per_second: 95.0,
                pushes_per_second: 35.0,
            }
        );
        assert_eq!(
            super::busiest(&series[..1], 2),
            None,
            "shorter than the window"
        );
    }
}
