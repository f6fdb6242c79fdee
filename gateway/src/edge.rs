//! What bounds the gateway's cost under a flood, whoever sends it: a budget of body bytes in
//! flight, a minimum body rate, per-source connection and request limits, and a per-token
//! request limit. Each refusal is counted by reason (`herald_gateway_rejections_total`).

mod body;
mod budget;
mod rate;
mod source;

use std::sync::Arc;

pub(crate) use body::{BodyError, BodyRules, discard, read_body};
pub(crate) use budget::BodyBudget;
pub(crate) use rate::FORGET_EVERY;
use rate::{Rate, RateLimits};
pub(crate) use source::Sources;

use crate::config::GatewayConfig;
use crate::metrics::GatewayMetrics;

/// The gateway's limits, built once from its configuration.
#[derive(Debug)]
pub(crate) struct Edge {
    pub(crate) budget: BodyBudget,
    pub(crate) sources: Arc<Sources>,
    pub(crate) rates: RateLimits,
    pub(crate) body: BodyRules,
}

impl Edge {
    pub(crate) fn new(config: &GatewayConfig, metrics: &GatewayMetrics) -> Self {
        // A header name that does not parse was refused by `GatewayConfig::problems`; the
        // default stands in for code that skipped the check.
        let header = http::HeaderName::from_bytes(config.client_ip_header.as_bytes())
            .unwrap_or(http::HeaderName::from_static("x-forwarded-for"));
        Self {
            budget: BodyBudget::new(config.body_budget, metrics.body_bytes_in_flight.clone()),
            sources: Arc::new(Sources::new(
                config.trusted_proxies.clone(),
                config.exempt_sources.clone(),
                header,
                config.max_connections_per_source,
            )),
            rates: RateLimits::new(
                Rate {
                    per_second: config.source_requests_per_second,
                    burst: config.source_burst,
                },
                Rate {
                    per_second: config.token_requests_per_second,
                    burst: config.token_burst,
                },
            ),
            body: BodyRules {
                cap: config.max_body,
                min_rate: config.min_body_rate,
                timeout: config.body_timeout,
            },
        }
    }
}
