//! The `[delivery]` settings: how hard Herald pushes, how it retries and when it backs off.
//! Every default is what a production node should run with; tests shorten the times.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySettings {
    /// Record every push as a JSON line in this file instead of sending it (load tests of
    /// the node alone, debugging). Apps are then not contacted.
    pub record_file: Option<PathBuf>,
    /// Independent HTTP/2 connections per APNs app (Apple: open several for volume).
    pub apns_connections: usize,
    /// Requests in flight on one APNs connection (Apple's stream limit is 500–1000).
    pub apns_streams_per_connection: usize,
    /// Pushes in flight to all APNs apps together: a slow APNs cannot take FCM's share.
    pub apns_in_flight: usize,
    /// Pushes in flight to all FCM apps together.
    pub fcm_in_flight: usize,
    /// FCM messages per second per Firebase project from this node: keep the sum over the
    /// nodes below the project quota (600,000 per minute by default).
    pub fcm_max_per_second: u32,
    /// One provider request, connection included.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// HTTP/2 PING interval on idle connections (middleboxes drop idle TCP).
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// First retry delay; doubled per retry, with full jitter, up to `retry_cap`.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_cap: Duration,
    /// Consecutive 5xx or transport failures of one app that open its circuit.
    pub breaker_failures: u32,
    /// How long an open circuit stays open the first time; doubled while failures go on,
    /// up to `breaker_max_open` (Apple: retry 5xx after up to 15 minutes).
    #[serde(with = "humantime_serde")]
    pub breaker_open: Duration,
    #[serde(with = "humantime_serde")]
    pub breaker_max_open: Duration,
    /// How long an app whose credentials or entitlements the provider refused is paused
    /// before it is tried again (an operator is alerted).
    #[serde(with = "humantime_serde")]
    pub pause: Duration,
    /// Refused tokens ("not for this app") of one app within `refusal_window` that pause the
    /// app instead of marking registrations dead: the sign of a sandbox/production or
    /// Firebase project mix-up. A refusal is a dead token only while a push of the app was
    /// delivered within the window.
    pub refusal_spike: u32,
    #[serde(with = "humantime_serde")]
    pub refusal_window: Duration,
    /// How long a badge stays worth delivering: APNs `apns-expiration`, FCM `ttl`. A burst
    /// whose push is still being retried this long after its first event is given up (and
    /// the outcome recorded).
    #[serde(with = "humantime_serde")]
    pub badge_lifetime: Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            record_file: None,
            apns_connections: 2,
            apns_streams_per_connection: 500,
            apns_in_flight: 2_000,
            fcm_in_flight: 1_000,
            fcm_max_per_second: 5_000,
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            keep_alive: Duration::from_secs(300),
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(300),
            breaker_failures: 20,
            breaker_open: Duration::from_secs(30),
            breaker_max_open: Duration::from_secs(900),
            pause: Duration::from_secs(300),
            refusal_spike: 20,
            refusal_window: Duration::from_secs(600),
            badge_lifetime: Duration::from_secs(3600),
        }
    }
}

impl DeliverySettings {
    /// What is wrong with these settings, if anything.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut positive = |name: &str, value: u64| {
            if value == 0 {
                problems.push(format!("delivery.{name} must be more than 0"));
            }
        };
        positive("apns_connections", self.apns_connections as u64);
        positive(
            "apns_streams_per_connection",
            self.apns_streams_per_connection as u64,
        );
        positive("apns_in_flight", self.apns_in_flight as u64);
        positive("fcm_in_flight", self.fcm_in_flight as u64);
        positive("fcm_max_per_second", u64::from(self.fcm_max_per_second));
        positive("breaker_failures", u64::from(self.breaker_failures));
        positive("refusal_spike", u64::from(self.refusal_spike));
        positive("refusal_window", self.refusal_window.as_millis() as u64);
        positive("request_timeout", self.request_timeout.as_millis() as u64);
        positive("retry_base", self.retry_base.as_millis() as u64);
        if self.retry_cap < self.retry_base {
            problems.push("delivery.retry_cap must be at least delivery.retry_base".into());
        }
        if self.breaker_max_open < self.breaker_open {
            problems
                .push("delivery.breaker_max_open must be at least delivery.breaker_open".into());
        }
        let lifetime = self.badge_lifetime.as_secs();
        if lifetime == 0 || lifetime > 2_419_200 {
            problems.push(
                "delivery.badge_lifetime must be between 1s and 28 days (FCM's longest ttl)".into(),
            );
        }
        problems
    }
}
