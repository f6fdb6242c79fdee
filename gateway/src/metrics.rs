//! The gateway's Prometheus metrics, registered into the node's registry by the binary.
//! Labels come from closed sets only: status codes, SOAP answers, rejection reasons.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub status: u16,
    /// `ok`, `unsubscribe`, or `none` when no SOAP answer was sent.
    pub answer: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnswerLabels {
    /// `ok`, `unsubscribe`, `unavailable` (503), `forbidden` (403), `refused` (any other
    /// 4xx: bad input, limits).
    pub answer: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub verdict: &'static str,
}

/// Cheap to clone: every metric is shared.
#[derive(Clone, Debug)]
pub struct GatewayMetrics {
    pub requests: Family<RequestLabels, Counter>,
    /// From the request's headers to its answer, by answer.
    pub request_seconds: Family<AnswerLabels, Histogram, fn() -> Histogram>,
    pub rejections: Family<ReasonLabels, Counter>,
    pub messages: Family<VerdictLabels, Counter>,
    pub body_bytes: Histogram,
    pub parse_seconds: Histogram,
    /// Bytes of request bodies held now (the budget's use).
    pub body_bytes_in_flight: Gauge,
    /// Connections open now.
    pub connections: Gauge,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(answer_histogram),
            rejections: Family::default(),
            messages: Family::default(),
            // 256 B … 8 MiB.
            body_bytes: Histogram::new(exponential_buckets(256.0, 2.0, 16)),
            // 2 µs … ~65 ms.
            parse_seconds: Histogram::new(exponential_buckets(0.000_002, 2.0, 16)),
            body_bytes_in_flight: Gauge::default(),
            connections: Gauge::default(),
        }
    }
}

/// 250 µs … 10 s, with a bound at the 5 ms objective (p99 ≤ 5 ms) so that the share of
/// answers within it is read off one bucket, and at 20 ms (p99.9).
const ANSWER_BUCKETS: [f64; 14] = [
    0.000_25, 0.000_5, 0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0,
];

fn answer_histogram() -> Histogram {
    Histogram::new(ANSWER_BUCKETS)
}

impl GatewayMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "herald_gateway_request_duration_seconds",
            "Time from an EWS request's headers to its answer, by answer",
            self.request_seconds.clone(),
        );
        registry.register(
            "herald_gateway_requests",
            "EWS requests answered, by HTTP status and SOAP answer",
            self.requests.clone(),
        );
        registry.register(
            "herald_gateway_rejections",
            "EWS requests and connections refused, by reason",
            self.rejections.clone(),
        );
        registry.register(
            "herald_gateway_messages",
            "EWS response messages handed to the sink, by verdict",
            self.messages.clone(),
        );
        registry.register(
            "herald_gateway_request_body_bytes",
            "Size of EWS request bodies read",
            self.body_bytes.clone(),
        );
        registry.register(
            "herald_gateway_parse_duration_seconds",
            "Time to parse one EWS request body",
            self.parse_seconds.clone(),
        );
        registry.register(
            "herald_gateway_body_in_flight_bytes",
            "Bytes of EWS request bodies held now (bounded by gateway.body_budget)",
            self.body_bytes_in_flight.clone(),
        );
        registry.register(
            "herald_gateway_connections",
            "Gateway connections open now",
            self.connections.clone(),
        );
    }

    pub(crate) fn reject(&self, reason: &'static str) {
        self.rejections
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_histogram_has_a_bucket_at_the_objective() {
        let metrics = GatewayMetrics::default();
        metrics
            .request_seconds
            .get_or_create(&AnswerLabels { answer: "ok" })
            .observe(0.004);
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap_or_default();
        // The alerts read the share of answers within 5 ms off this bucket.
        assert!(
            text.contains(
                r#"herald_gateway_request_duration_seconds_bucket{le="0.005",answer="ok"} 1"#
            ),
            "{text}"
        );
    }
}
