//! The node's Prometheus metrics. Label values come from small closed sets only — method
//! names, gRPC codes, states — never tokens or ids.

mod process;

use herald_gateway::GatewayMetrics;
use herald_workers::DeliveryMetrics;

use crate::cluster::ClusterMetrics;
use crate::subscription::SubscriptionMetrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcLabels {
    pub method: &'static str,
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcRefusedLabels {
    pub service: &'static str,
    /// `unauthenticated` or `rate`.
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HomeLabels {
    /// A configured home region (or "other"): a closed set.
    pub home: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertificateLabels {
    /// `gateway`, `grpc` or `redis_client`.
    pub certificate: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub grpc_requests: Family<GrpcLabels, Counter>,
    pub grpc_duration: HistogramFamily<MethodLabels>,
    pub grpc_refused: Family<GrpcRefusedLabels, Counter>,
    pub registrations: Family<StateLabels, Gauge>,
    pub store_errors: Family<StoreLabels, Counter>,
    pub ews_unserved_home: Family<HomeLabels, Counter>,
    pub home_served: Family<HomeLabels, Gauge>,
    pub certificate_expiry: Family<CertificateLabels, Gauge>,
    /// 1 when `/readyz` would answer 200 (read at each scrape).
    pub ready: Gauge,
    pub gateway: GatewayMetrics,
    pub subscriptions: SubscriptionMetrics,
    pub delivery: DeliveryMetrics,
    pub cluster: ClusterMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    // 100 µs … ~3.3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let grpc_requests = Family::<GrpcLabels, Counter>::default();
        registry.register(
            "herald_grpc_requests",
            "gRPC calls answered, by method and status code",
            grpc_requests.clone(),
        );
        let grpc_duration: HistogramFamily<MethodLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "herald_grpc_request_duration_seconds",
            "Time to answer a gRPC call, by method",
            grpc_duration.clone(),
        );
        let grpc_refused = Family::<GrpcRefusedLabels, Counter>::default();
        registry.register(
            "herald_grpc_refused",
            "gRPC calls refused before their message was read, by service and reason",
            grpc_refused.clone(),
        );
        let registrations = Family::<StateLabels, Gauge>::default();
        registry.register(
            "herald_registrations",
            "Registrations by state in the shards this node holds, refreshed at each scrape: summed over a cluster's nodes, the region's total",
            registrations.clone(),
        );
        let store_errors = Family::<StoreLabels, Counter>::default();
        registry.register(
            "herald_store_errors",
            "Registration store (Redis) operations that failed, by operation",
            store_errors.clone(),
        );
        let ews_unserved_home = Family::<HomeLabels, Counter>::default();
        registry.register(
            "herald_ews_unserved_home",
            "EWS notifications answered 503 because their home region is not served in this region now, by home",
            ews_unserved_home.clone(),
        );
        let home_served = Family::<HomeLabels, Gauge>::default();
        registry.register(
            "herald_home_served",
            "1 while this node serves the home region (its copy here is the primary), else 0",
            home_served.clone(),
        );
        let certificate_expiry = Family::<CertificateLabels, Gauge>::default();
        registry.register(
            "herald_tls_certificate_expiry_timestamp_seconds",
            "When the certificate the node loaded at start stops being valid (notAfter), in seconds since the epoch, by use: a renewed file is read at the next start",
            certificate_expiry.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "herald_ready",
            "1 while the node is ready to serve (what /readyz answers 200 for), read at each scrape",
            ready.clone(),
        );
        let gateway = GatewayMetrics::default();
        gateway.register(&mut registry);
        let subscriptions = SubscriptionMetrics::default();
        subscriptions.register(&mut registry);
        let delivery = DeliveryMetrics::default();
        delivery.register(&mut registry);
        let cluster = ClusterMetrics::default();
        cluster.register(&mut registry);
        registry.register_collector(Box::new(process::ProcessCollector::new()));
        let redis = &*crate::store::REDIS;
        registry.register(
            "herald_redis_request_duration_seconds",
            "Time for Redis to answer one command, script or pipeline, by kind (process-wide)",
            redis.seconds.clone(),
        );
        registry.register(
            "herald_redis_errors",
            "Redis commands, scripts or pipelines that failed or timed out, by kind (process-wide)",
            redis.errors.clone(),
        );
        Self {
            cluster,
            subscriptions,
            delivery,
            registry,
            gateway,
            grpc_requests,
            grpc_duration,
            grpc_refused,
            registrations,
            store_errors,
            ews_unserved_home,
            home_served,
            certificate_expiry,
            ready,
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_metrics_lists_every_metric_exposed() {
        let doc = include_str!("../../docs/metrics.md");
        let metrics = Metrics::default();
        // One sample in each labelled family, so that every family is exposed.
        metrics
            .gateway
            .rejections
            .get_or_create(&herald_gateway::ReasonLabels {
                reason: "body_budget",
            })
            .inc();
        metrics
            .grpc_refused
            .get_or_create(&GrpcRefusedLabels {
                service: "peer",
                reason: "rate",
            })
            .inc();
        let grpc = GrpcLabels {
            method: "Register",
            code: "OK",
        };
        metrics.grpc_requests.get_or_create(&grpc).inc();
        let method = MethodLabels { method: "Register" };
        metrics.grpc_duration.get_or_create(&method).observe(0.001);
        let state = StateLabels { state: "active" };
        metrics.registrations.get_or_create(&state).set(1);
        let operation = StoreLabels { operation: "ping" };
        metrics.store_errors.get_or_create(&operation).inc();
        let home = HomeLabels {
            home: "us-east-1".to_owned(),
        };
        metrics.ews_unserved_home.get_or_create(&home).inc();
        metrics.home_served.get_or_create(&home).set(1);
        let kind = crate::store::RedisLabels { kind: "command" };
        crate::store::REDIS.errors.get_or_create(&kind).inc_by(0);
        crate::store::REDIS
            .seconds
            .get_or_create(&kind)
            .observe(0.0001);
        let gateway = &metrics.gateway;
        let answered = herald_gateway::RequestLabels {
            status: 200,
            answer: "ok",
        };
        gateway.requests.get_or_create(&answered).inc();
        let verdict = herald_gateway::VerdictLabels { verdict: "ok" };
        gateway.messages.get_or_create(&verdict).inc();
        let answer = herald_gateway::AnswerLabels { answer: "ok" };
        gateway
            .request_seconds
            .get_or_create(&answer)
            .observe(0.001);
        let text = metrics.encode();
        let mut missing = Vec::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("# TYPE ") else {
                continue;
            };
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let exposed = if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_owned()
            };
            if !doc.contains(&format!("`{exposed}`")) {
                missing.push(exposed);
            }
        }
        assert!(
            text.contains("herald_build_info{") && text.contains("process_open_fds"),
            "{text}"
        );
        assert!(missing.is_empty(), "not in docs/metrics.md: {missing:?}");
    }
}
