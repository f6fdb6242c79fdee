//! The report of a run: a summary for the terminal, JSON for tools, and a self-contained SVG
//! with throughput and answer-latency percentiles over time.

use std::fmt;
use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::series::{BUSIEST_WIDTH, Busiest, Second, busiest};
use super::verify::Verification;
use crate::scenario::Scenario;

#[derive(Clone, Debug, Default, Serialize)]
pub struct AnswerCounts {
    pub ok: u64,
    pub unsubscribe: u64,
    pub other_status: u64,
    pub transport: u64,
    /// Scheduled past the run's time limit.
    pub not_sent: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        let ms = |v: u64| v as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

impl fmt::Display for Percentiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms ({} samples)",
            self.p50_ms, self.p99_ms, self.p999_ms, self.max_ms, self.count
        )
    }
}

/// One gateway's share of a run that spread its load over several (the nodes of a
/// cluster).
#[derive(Clone, Debug, Serialize)]
pub struct GatewayFigures {
    pub gateway: String,
    pub answers: AnswerCounts,
    /// Answered `OK` per second over the run's sending time.
    pub accepted_per_second: f64,
    pub answer_latency: Percentiles,
}

impl GatewayFigures {
    pub(crate) fn new(
        gateway: std::net::SocketAddr,
        answers: AnswerCounts,
        latency: &Histogram<u64>,
    ) -> Self {
        Self {
            gateway: gateway.to_string(),
            answers,
            accepted_per_second: 0.0,
            answer_latency: Percentiles::of(latency),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Correctness {
    pub passed: bool,
    pub devices_checked: usize,
    pub wrong_badge: usize,
    pub missing_push: usize,
    pub too_many_pushes: usize,
    pub unexpected_answers: u64,
    pub examples: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub scenario: String,
    pub notifications_sent: u64,
    /// Answered `OK` per second over the sending time: the offered rate while the target
    /// keeps up.
    pub accepted_per_second: f64,
    /// The busiest few seconds: a saturated target's capacity (`None`: too short a run).
    pub busiest: Option<Busiest>,
    pub answers: AnswerCounts,
    pub answer_latency: Percentiles,
    /// The answers after the scenario's warm-up (`None` without one).
    pub answer_latency_after_warmup: Option<Percentiles>,
    pub ios_event_to_push: Percentiles,
    pub android_event_to_push: Percentiles,
    pub pushes: usize,
    /// Notifications that could push, per push received.
    pub notifications_per_push: f64,
    pub correctness: Correctness,
    /// Each gateway's figures, when the load went to several.
    pub gateways: Vec<GatewayFigures>,
    pub series: Vec<Second>,
}

impl RunReport {
    pub(super) fn new(
        scenario: &Scenario,
        series: Vec<Second>,
        latency: Histogram<u64>,
        after_warmup: Option<Histogram<u64>>,
        answers: AnswerCounts,
        v: Verification,
    ) -> Self {
        let sent: u64 = series.iter().map(|s| s.sent).sum();
        let sending_seconds = series.iter().filter(|s| s.sent > 0).count().max(1);
        let unexpected = answers.unsubscribe + answers.other_status + answers.transport;
        Self {
            scenario: scenario.name.clone(),
            notifications_sent: sent,
            accepted_per_second: answers.ok as f64 / sending_seconds as f64,
            busiest: busiest(&series, BUSIEST_WIDTH),
            answer_latency: Percentiles::of(&latency),
            answer_latency_after_warmup: after_warmup.as_ref().map(Percentiles::of),
            ios_event_to_push: Percentiles::of(&v.ios_latency),
            android_event_to_push: Percentiles::of(&v.android_latency),
            pushes: v.pushes,
            notifications_per_push: v.count_changes as f64 / v.pushes.max(1) as f64,
            correctness: Correctness {
                passed: v.passed() && unexpected == 0,
                devices_checked: v.devices_checked,
                wrong_badge: v.wrong_badge,
                missing_push: v.missing_push,
                too_many_pushes: v.too_many_pushes,
                unexpected_answers: unexpected,
                examples: v.examples,
            },
            answers,
            gateways: Vec::new(),
            series,
        }
    }

    /// Records each gateway's figures (shown when there are several).
    pub(crate) fn set_gateways(&mut self, mut gateways: Vec<GatewayFigures>) {
        let sending_seconds = self.series.iter().filter(|s| s.sent > 0).count().max(1);
        for g in &mut gateways {
            g.accepted_per_second = g.answers.ok as f64 / sending_seconds as f64;
        }
        self.gateways = gateways;
    }

    /// Writes `report.json` and `report.svg` into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(self)?)?;
        std::fs::write(dir.join("report.svg"), self.svg())?;
        Ok(())
    }

    /// Two charts: notifications and pushes per second; answer latency p50/p99/p99.9.
    pub fn svg(&self) -> String {
        let (w, h, pad) = (900.0, 260.0, 50.0);
        let mut svg = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{pad}" y="20" font-size="15">herald-loadtest run: {}</text>"#,
            2.0 * h + 60.0,
            self.scenario
        );
        let throughput = [
            (
                "sent/s",
                "#1f77b4",
                self.series
                    .iter()
                    .map(|s| s.sent as f64)
                    .collect::<Vec<_>>(),
            ),
            (
                "OK/s",
                "#2ca02c",
                self.series.iter().map(|s| s.ok as f64).collect(),
            ),
            (
                "pushes/s",
                "#ff7f0e",
                self.series.iter().map(|s| s.pushes as f64).collect(),
            ),
        ];
        chart(&mut svg, 30.0, (w, h, pad), "per second", &throughput);
        let latency = [
            (
                "p50 ms",
                "#2ca02c",
                self.series.iter().map(|s| s.p50_ms).collect::<Vec<_>>(),
            ),
            (
                "p99 ms",
                "#ff7f0e",
                self.series.iter().map(|s| s.p99_ms).collect(),
            ),
            (
                "p99.9 ms",
                "#d62728",
                self.series.iter().map(|s| s.p999_ms).collect(),
            ),
        ];
        chart(
            &mut svg,
            40.0 + h,
            (w, h, pad),
            "answer latency (ms)",
            &latency,
        );
        svg.push_str("</svg>\n");
        svg
    }
}

type Line<'a> = (&'a str, &'a str, Vec<f64>);

fn chart(
    svg: &mut String,
    top: f64,
    (w, h, pad): (f64, f64, f64),
    title: &str,
    lines: &[Line<'_>],
) {
    let n = lines.iter().map(|l| l.2.len()).max().unwrap_or(0).max(2);
    let max = lines
        .iter()
        .flat_map(|l| l.2.iter().copied())
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let (x0, y0, pw, ph) = (pad, top + 20.0, w - 2.0 * pad, h - 50.0);
    let _ = write!(
        svg,
        r##"<text x="{x0}" y="{}">{title} — max {max:.1}</text><rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##,
        top + 14.0
    );
    for (i, (name, color, values)) in lines.iter().enumerate() {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(t, v)| {
                let x = x0 + pw * t as f64 / (n - 1) as f64;
                let y = y0 + ph - ph * v / max;
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/><text x="{}" y="{}" fill="{color}">{name}</text>"#,
            points.join(" "),
            x0 + 10.0 + 110.0 * i as f64,
            y0 + ph + 18.0
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="end">{}s</text>"#,
        x0 + pw,
        y0 + ph + 18.0,
        n - 1
    );
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.correctness;
        writeln!(
            f,
            "scenario {}: {} notifications sent",
            self.scenario, self.notifications_sent
        )?;
        writeln!(
            f,
            "answers: {} OK, {} Unsubscribe, {} other status, {} transport errors, {} not sent (time limit); {:.0} accepted/s",
            self.answers.ok,
            self.answers.unsubscribe,
            self.answers.other_status,
            self.answers.transport,
            self.answers.not_sent,
            self.accepted_per_second
        )?;
        if let Some(b) = &self.busiest {
            writeln!(
                f,
                "busiest {} s (from t={} s): {:.0} OK answers/s, {:.0} pushes/s",
                b.seconds, b.from_t, b.ok_per_second, b.pushes_per_second
            )?;
        }
        writeln!(f, "answer latency: {}", self.answer_latency)?;
        if self.gateways.len() > 1 {
            for g in &self.gateways {
                writeln!(
                    f,
                    "  gateway {}: {} OK, {} Unsubscribe, {} other status, {} transport errors; {:.0} accepted/s; {}",
                    g.gateway,
                    g.answers.ok,
                    g.answers.unsubscribe,
                    g.answers.other_status,
                    g.answers.transport,
                    g.accepted_per_second,
                    g.answer_latency
                )?;
            }
        }
        if let Some(after) = &self.answer_latency_after_warmup {
            writeln!(f, "answer latency after the warm-up: {after}")?;
        }
        writeln!(f, "event → push, iOS: {}", self.ios_event_to_push)?;
        writeln!(f, "event → push, Android: {}", self.android_event_to_push)?;
        writeln!(
            f,
            "pushes: {} ({:.2} notifications that could push, per push)",
            self.pushes, self.notifications_per_push
        )?;
        write!(
            f,
            "correctness: {} — {} devices checked, {} wrong badges, {} missing pushes, {} with too many pushes, {} unexpected answers",
            if c.passed { "PASSED" } else { "FAILED" },
            c.devices_checked,
            c.wrong_badge,
            c.missing_push,
            c.too_many_pushes,
            c.unexpected_answers
        )?;
        for example in &c.examples {
            write!(f, "\n  {example}")?;
        }
        Ok(())
    }
}
