//! The subscription layer's metrics.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::PendingBurstsByHome;
use crate::domain::UnixMillis;

/// `herald_bursts_pending` and `herald_burst_oldest_pending_age_seconds`, read at each
/// scrape.
#[derive(Debug)]
struct PendingCollector(PendingBurstsByHome);

impl Collector for PendingCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let (count, oldest) = self.0.summary();
        let age = oldest.map_or(0.0, |first| {
            UnixMillis::now().0.saturating_sub(first.0) as f64 / 1000.0
        });
        let count = ConstGauge::new(count as i64);
        count.encode(encoder.encode_descriptor(
            "herald_bursts_pending",
            "Bursts accepted on this node and not pushed yet",
            None,
            count.metric_type(),
        )?)?;
        let age = ConstGauge::new(age);
        age.encode(encoder.encode_descriptor(
            "herald_burst_oldest_pending_age_seconds",
            "Time since the first notification of the oldest burst not pushed yet (0: none pending)",
            None,
            age.metric_type(),
        )?)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// Cheap to clone: every metric is shared.
#[derive(Clone, Debug)]
pub struct SubscriptionMetrics {
    pub live_actors: Gauge,
    pub passivations: Counter,
    pub restarts: Counter,
    pub events: Counter,
    /// Notifications applied, by `applied`, `duplicate`, `stale`.
    pub notifications: Family<OutcomeLabels, Counter>,
    pub gaps: Counter,
    /// Flushes, by `delivered`, `token_dead`, `retrying`, `failed`, `skipped`, `postponed`,
    /// `expired` (given up after `delivery.badge_lifetime`), `superseded` (the outcome of a
    /// push to a token the registration does not have now).
    pub flushes: Family<OutcomeLabels, Counter>,
    /// Attempts to finish moving a registration to another shard, by `done`, `retrying`.
    pub moves: Family<OutcomeLabels, Counter>,
    pub events_per_push: Histogram,
    pub flush_latency: Histogram,
    pub stale_marked: Counter,
    /// Dead-token feedback events that could not be published.
    pub feedback_lost: Counter,
    /// The bursts waiting for their push, read at each scrape.
    pub pending: PendingBurstsByHome,
}

impl Default for SubscriptionMetrics {
    fn default() -> Self {
        Self {
            live_actors: Gauge::default(),
            passivations: Counter::default(),
            restarts: Counter::default(),
            events: Counter::default(),
            notifications: Family::default(),
            gaps: Counter::default(),
            flushes: Family::default(),
            moves: Family::default(),
            // 1 … 4096 events.
            events_per_push: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            // 10 ms … ~82 s.
            flush_latency: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            stale_marked: Counter::default(),
            feedback_lost: Counter::default(),
            pending: PendingBurstsByHome::default(),
        }
    }
}

impl SubscriptionMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "herald_actors_live",
            "Live subscription actors",
            self.live_actors.clone(),
        );
        registry.register(
            "herald_actor_passivations",
            "Subscription actors passivated",
            self.passivations.clone(),
        );
        registry.register(
            "herald_actor_restarts",
            "Subscription actors restarted after a failure",
            self.restarts.clone(),
        );
        registry.register(
            "herald_events",
            "Mailbox events received in accepted notifications",
            self.events.clone(),
        );
        registry.register(
            "herald_notifications",
            "Notifications handed to subscription actors, by outcome (applied, duplicate, stale)",
            self.notifications.clone(),
        );
        registry.register(
            "herald_watermark_gaps",
            "Notifications whose PreviousWatermark showed a missed notification",
            self.gaps.clone(),
        );
        registry.register(
            "herald_flushes",
            "Burst flushes, by outcome (delivered, token_dead, retrying, failed, skipped, postponed, expired, superseded)",
            self.flushes.clone(),
        );
        registry.register(
            "herald_registration_moves",
            "Attempts to finish moving a registration to the shard of its new device token, by outcome (done, retrying)",
            self.moves.clone(),
        );
        registry.register(
            "herald_events_per_push",
            "Mailbox events coalesced into one push",
            self.events_per_push.clone(),
        );
        registry.register(
            "herald_flush_latency_seconds",
            "Time from a burst's first accepted notification to its push",
            self.flush_latency.clone(),
        );
        registry.register(
            "herald_registrations_marked_stale",
            "Registrations marked stale by the liveness sweep",
            self.stale_marked.clone(),
        );
        registry.register(
            "herald_feedback_lost",
            "Dead-token feedback events that could not be published to the store",
            self.feedback_lost.clone(),
        );
        registry.register_collector(Box::new(PendingCollector(self.pending.clone())));
    }

    pub(crate) fn notification(&self, outcome: &'static str) {
        self.notifications
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub(crate) fn flush(&self, outcome: &'static str) {
        self.flushes.get_or_create(&OutcomeLabels { outcome }).inc();
    }
}
