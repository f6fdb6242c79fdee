//! The process's own metrics, read from `/proc/self` at each scrape under the names every
//! Prometheus client uses (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_open_fds`, …), and `herald_build_info`.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second of `/proc/self/stat`'s CPU times (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

/// Collects the process metrics at each scrape.
#[derive(Debug)]
pub(super) struct ProcessCollector {
    /// When the process started, in seconds since the epoch.
    started: f64,
}

impl ProcessCollector {
    pub(super) fn new() -> Self {
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Self { started }
    }
}

impl Default for ProcessCollector {
    fn default() -> Self {
        Self::new()
    }
}

/// What `/proc/self` says now; a field it cannot read is left out.
#[derive(Debug, Default, PartialEq)]
struct Sample {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<u64>,
    virtual_bytes: Option<u64>,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
}

fn sample() -> Sample {
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    let status = std::fs::read_to_string("/proc/self/status").ok();
    let limits = std::fs::read_to_string("/proc/self/limits").ok();
    Sample {
        cpu_seconds: stat.as_deref().and_then(cpu_seconds),
        resident_bytes: status.as_deref().and_then(|s| kib_field(s, "VmRSS:")),
        virtual_bytes: status.as_deref().and_then(|s| kib_field(s, "VmSize:")),
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|entries| entries.count() as u64),
        max_fds: limits.as_deref().and_then(max_open_files),
    }
}

/// utime + stime of a `/proc/PID/stat` line, in seconds. The command name (field 2) may
/// hold spaces and parentheses: fields are counted after its last `)`.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// A `Name:   123 kB` line of `/proc/PID/status`, in bytes.
fn kib_field(status: &str, name: &str) -> Option<u64> {
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(name))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The soft limit of `Max open files` in `/proc/PID/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let now = sample();
        if let Some(seconds) = now.cpu_seconds {
            let counter = ConstCounter::new(seconds);
            counter.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent, in seconds",
                None,
                counter.metric_type(),
            )?)?;
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size, in bytes",
                now.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size, in bytes",
                now.virtual_bytes,
            ),
            ("process_open_fds", "Open file descriptors", now.open_fds),
            (
                "process_max_fds",
                "Most file descriptors the process may open",
                now.max_fds,
            ),
        ];
        for (name, help, value) in gauges {
            let Some(value) = value else { continue };
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let started = ConstGauge::new(self.started);
        started.encode(encoder.encode_descriptor(
            "process_start_time_seconds",
            "When the process started, in seconds since the Unix epoch",
            None,
            started.metric_type(),
        )?)?;
        let build = ConstGauge::new(1i64);
        let labels = BuildLabels {
            version: env!("CARGO_PKG_VERSION"),
            commit: option_env!("HERALD_BUILD_COMMIT").unwrap_or("unknown"),
        };
        let mut family = encoder.encode_descriptor(
            "herald_build_info",
            "Always 1: the version and commit of the running build",
            None,
            build.metric_type(),
        )?;
        build.encode(family.encode_family(&labels)?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_read_field_by_field() {
        let stat =
            "4242 (her ald) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 9 0 1234 1000 700";
        assert_eq!(cpu_seconds(stat), Some(3.0));
        let status = "Name:\therald\nVmSize:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(kib_field(status, "VmRSS:"), Some(1024 * 1024));
        assert_eq!(kib_field(status, "VmSize:"), Some(2048 * 1024));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            20000                20000                files\n";
        assert_eq!(max_open_files(limits), Some(20000));
    }

    #[test]
    fn this_process_can_be_sampled() {
        let now = sample();
        assert!(now.resident_bytes.is_some_and(|b| b > 0));
        assert!(now.open_fds.is_some_and(|n| n > 0));
        assert!(now.cpu_seconds.is_some());
    }
}
