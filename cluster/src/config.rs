//! The `[cluster]` configuration section.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The regions Herald runs in unless configured otherwise.
pub const DEFAULT_REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-southeast-1"];

#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Every region of the deployment; registrations' home regions must be one of them.
    pub regions: Vec<String>,
    /// The gRPC address the other nodes reach this one at; empty: `grpc.listen`.
    pub advertise: String,
    /// The secret the nodes of a deployment authenticate each other's Peer calls with.
    /// Required when several nodes share a Redis.
    pub peer_secret: String,
    /// A node that has not heartbeat for this long is dead: its shards go to the others.
    #[serde(with = "humantime_serde")]
    pub member_ttl: Duration,
    /// How often a node writes its member row.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// How long a shard lease lasts without renewal (renewed at a third of it). A crashed
    /// node's shards are served again about this long after its last renewal.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Longest a forwarded request waits for the shard's owner before the caller answers
    /// 503 / `UNAVAILABLE`.
    #[serde(with = "humantime_serde")]
    pub forward_timeout: Duration,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("regions", &self.regions)
            .field("advertise", &self.advertise)
            .field(
                "peer_secret",
                &if self.peer_secret.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("member_ttl", &self.member_ttl)
            .field("heartbeat", &self.heartbeat)
            .field("lease_ttl", &self.lease_ttl)
            .field("forward_timeout", &self.forward_timeout)
            .finish()
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            regions: DEFAULT_REGIONS.iter().map(|r| (*r).to_owned()).collect(),
            advertise: String::new(),
            peer_secret: String::new(),
            member_ttl: Duration::from_secs(5),
            heartbeat: Duration::from_secs(1),
            lease_ttl: Duration::from_secs(6),
            forward_timeout: Duration::from_secs(3),
        }
    }
}
