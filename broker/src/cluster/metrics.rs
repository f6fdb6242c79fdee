//! What the cluster does, for `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ForwardLabels {
    /// `notification`, `command`, `create` or `adopt`.
    pub kind: &'static str,
    /// `ok`, `not_owner` (retried elsewhere), `unavailable`, `error`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug)]
pub struct ClusterMetrics {
    pub shards_owned: Gauge,
    pub members_alive: Gauge,
    pub lease_acquisitions: Counter,
    pub lease_releases: Counter,
    pub lease_losses: Counter,
    pub forwards: Family<ForwardLabels, Counter>,
    pub forward_duration: Family<KindLabels, Histogram, fn() -> Histogram>,
}

fn forward_histogram() -> Histogram {
    // 100 µs … ~3.3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl Default for ClusterMetrics {
    fn default() -> Self {
        Self {
            shards_owned: Gauge::default(),
            members_alive: Gauge::default(),
            lease_acquisitions: Counter::default(),
            lease_releases: Counter::default(),
            lease_losses: Counter::default(),
            forwards: Family::default(),
            forward_duration: Family::new_with_constructor(forward_histogram),
        }
    }
}

impl ClusterMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "herald_cluster_shards_owned",
            "Shards whose lease this node holds",
            self.shards_owned.clone(),
        );
        registry.register(
            "herald_cluster_members_alive",
            "Members of this node's cluster that heartbeat within cluster.member_ttl, as this node last read them",
            self.members_alive.clone(),
        );
        registry.register(
            "herald_cluster_lease_acquisitions",
            "Shard leases this node acquired",
            self.lease_acquisitions.clone(),
        );
        registry.register(
            "herald_cluster_lease_releases",
            "Shard leases this node gave up in a planned move (drain, a node joining, shutdown)",
            self.lease_releases.clone(),
        );
        registry.register(
            "herald_cluster_lease_losses",
            "Shard leases this node lost without releasing them (not renewed in time, or taken): its actors of the shard stopped",
            self.lease_losses.clone(),
        );
        registry.register(
            "herald_cluster_forwards",
            "Requests forwarded to the owner of their shard, by kind and outcome",
            self.forwards.clone(),
        );
        registry.register(
            "herald_cluster_forward_duration_seconds",
            "Time to forward a request to its shard's owner and get its answer, by kind",
            self.forward_duration.clone(),
        );
    }
}
