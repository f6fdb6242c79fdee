//! The `[gateway]` configuration section.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Where Exchange's POSTs arrive.
    pub listen: SocketAddr,
    /// Largest request body read; a larger one is answered 413 without reading it all.
    pub max_body: usize,
    /// Longest time to receive the request headers.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Longest time to receive the whole body.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Most connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body: 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 10_000,
        }
    }
}
