//! Latency summaries from HDR histograms.

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Microsecond latencies from 1 µs to 60 s, three significant digits.
#[allow(clippy::expect_used)] // constant bounds that hdrhistogram accepts
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// The outcome of one run.
#[derive(Debug)]
pub struct Summary {
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
}

impl Summary {
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    fn ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ok, {} errors in {:.2}s: {:.0}/s; latency ms p50 {:.3} p90 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}",
            self.ok,
            self.errors,
            self.elapsed.as_secs_f64(),
            self.throughput(),
            self.ms(0.5),
            self.ms(0.9),
            self.ms(0.99),
            self.ms(0.999),
            self.latency.max() as f64 / 1000.0,
        )
    }
}
