//! The sections of the subscription layer: actors and liveness. (`[delivery]` is
//! `herald_workers::DeliverySettings`.)

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Subscription actors.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ActorsConfig {
    /// An actor with no work for this long is passivated (its state stays in the store).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Most live actors on the node; beyond it, idle ones are passivated first.
    pub max_live: usize,
    /// Restarts of one registration's actor allowed per minute before it is left stopped
    /// until its next notification.
    pub restart_budget: u32,
    /// Longest the gateway waits for an actor to accept a notification (then 503).
    #[serde(with = "humantime_serde")]
    pub call_timeout: Duration,
}

impl Default for ActorsConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(300),
            max_live: 100_000,
            restart_budget: 5,
            call_timeout: Duration::from_secs(2),
        }
    }
}

/// Detecting subscriptions Exchange has silently dropped.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LivenessConfig {
    /// The `StatusFrequency` subscriptions are created with: a registration silent for twice
    /// this long is marked stale.
    #[serde(with = "humantime_serde")]
    pub status_frequency: Duration,
    /// How often the node looks for silent registrations.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        Self {
            status_frequency: Duration::from_secs(30 * 60),
            sweep_interval: Duration::from_secs(60),
        }
    }
}
