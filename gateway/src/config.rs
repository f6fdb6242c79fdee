//! The `[gateway]` configuration section.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::tls::TlsFiles;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Where Exchange's POSTs arrive.
    pub listen: SocketAddr,
    /// Largest request body read; a larger one is answered 413 without reading it all.
    pub max_body: usize,
    /// Most bytes of request bodies held at once, over every connection; a body that does
    /// not fit is answered 503 (with `Retry-After`) and its connection closed.
    pub body_budget: usize,
    /// Slowest body accepted, in bytes per second on average after the first second; a
    /// slower one is cut (408). 0: no floor.
    pub min_body_rate: u64,
    /// Longest time to receive the request headers.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Longest time to receive the whole body.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Most connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Most connections one source address may hold at once; more are closed at once.
    /// Trusted proxies are not limited. 0: no limit.
    pub max_connections_per_source: usize,
    /// Requests one source address (an IPv6 /64) may send per second, sustained; beyond
    /// it and its burst: 429. 0: no limit.
    pub source_requests_per_second: u32,
    pub source_burst: u32,
    /// Requests one callback URL may receive per second, sustained; beyond it and its
    /// burst: 429. Exchange sends one notification at a time per subscription; a leaked URL
    /// must not become a write storm. 0: no limit.
    pub token_requests_per_second: u32,
    pub token_burst: u32,
    /// Load balancers and proxies whose `client_ip_header` names the real source. Requests
    /// from any other peer are limited by the peer's own address, whatever they send.
    pub trusted_proxies: Vec<IpNet>,
    /// The header a trusted proxy puts the client's address in.
    pub client_ip_header: String,
    /// Sources with no per-source limits (connections and request rate): an operator's own
    /// Exchange servers, or Exchange Online's published ranges when one of its addresses
    /// sends more than the per-source rate. Per-URL limits still apply.
    pub exempt_sources: Vec<IpNet>,
    /// Serve HTTPS with this certificate and key (`[gateway.tls]`); absent: plain HTTP,
    /// for TLS ended at a load balancer in front.
    pub tls: Option<TlsFiles>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            // Real notifications are 1–5 KB; Exchange pages long event lists (MoreEvents).
            max_body: 256 * 1024,
            body_budget: 64 * 1024 * 1024,
            min_body_rate: 8 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_connections_per_source: 512,
            source_requests_per_second: 2_000,
            source_burst: 4_000,
            token_requests_per_second: 10,
            token_burst: 40,
            trusted_proxies: Vec::new(),
            client_ip_header: "x-forwarded-for".to_owned(),
            exempt_sources: Vec::new(),
            tls: None,
        }
    }
}

impl GatewayConfig {
    /// What is wrong with this section, one line each.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.max_body == 0 {
            problems.push("gateway.max_body must be above 0".to_owned());
        }
        if self.body_budget < self.max_body {
            problems.push(format!(
                "gateway.body_budget ({}) must hold at least one body of gateway.max_body ({})",
                self.body_budget, self.max_body
            ));
        }
        if u32::try_from(self.max_body).is_err() {
            problems.push("gateway.max_body must be below 4 GiB".to_owned());
        }
        if http::HeaderName::from_bytes(self.client_ip_header.as_bytes()).is_err() {
            problems.push(format!(
                "gateway.client_ip_header '{}' is not a header name",
                self.client_ip_header.escape_debug()
            ));
        }
        problems
    }
}
