//! A load scenario (`loadtest/scenarios/*.toml`): the fleet of devices, the arrival rate over
//! time, the mix of mailbox activity, and faults to inject.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Devices registered through the gRPC API.
    pub devices: usize,
    /// Share of the devices that are Android (FCM); the rest are iPhones (APNs).
    #[serde(default = "half")]
    pub android_share: f64,
    /// Share of the devices with two mailboxes (two registrations, one badge).
    #[serde(default)]
    pub two_mailbox_share: f64,
    /// Apps per platform (`com.example.mail`, `com.example.mail.2`, …).
    #[serde(default = "one")]
    pub apps_per_platform: usize,
    /// The arrival rate over time: notifications per second for a duration, in order.
    pub steps: Vec<Step>,
    #[serde(default)]
    pub mix: Mix,
    /// After the last notification, how long pushes may take to arrive.
    #[serde(default = "settle", with = "humantime_serde")]
    pub settle: Duration,
    /// The first seconds of the run, whose answers the summary also reports apart: actors
    /// start and connections open then (DESIGN.md §6 measures after the warm-up).
    #[serde(default, with = "humantime_serde")]
    pub warmup: Duration,
    /// Mock APNs answering 503 to a share of pushes for a while.
    #[serde(default)]
    pub brownout: Option<Brownout>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Notifications per second.
    pub rate: f64,
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

/// What each notification is, by weight; and how often Exchange's quirks show up.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Mix {
    pub new_mail: f64,
    pub read: f64,
    pub delete: f64,
    #[serde(rename = "move")]
    pub move_: f64,
    pub heartbeat: f64,
    /// Share of new-mail bursts sent as two `MoreEvents` pages.
    pub more_events: f64,
    /// Share of new-mail bursts whose count arrives in a second notification.
    pub split: f64,
    /// Share of notifications Exchange sends twice (the second must change nothing).
    pub redelivery: f64,
    /// Share of notifications after a lost one (a watermark gap).
    pub gap: f64,
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            new_mail: 0.45,
            read: 0.2,
            delete: 0.1,
            move_: 0.05,
            heartbeat: 0.2,
            more_events: 0.1,
            split: 0.1,
            redelivery: 0.03,
            gap: 0.01,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Brownout {
    /// Share of APNs pushes answered 503 while it lasts.
    pub apns_share: f64,
    #[serde(with = "humantime_serde")]
    pub after: Duration,
    #[serde(with = "humantime_serde")]
    pub lasting: Duration,
}

fn half() -> f64 {
    0.5
}

fn one() -> usize {
    1
}

fn settle() -> Duration {
    Duration::from_secs(10)
}

impl Scenario {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let scenario: Self =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        scenario.check()?;
        Ok(scenario)
    }

    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.devices > 0, "devices must be more than 0");
        anyhow::ensure!(!self.steps.is_empty(), "at least one step is needed");
        anyhow::ensure!(
            self.steps
                .iter()
                .all(|s| s.rate > 0.0 && !s.duration.is_zero()),
            "every step needs a positive rate and duration"
        );
        for (name, share) in [
            ("android_share", self.android_share),
            ("two_mailbox_share", self.two_mailbox_share),
            ("mix.more_events", self.mix.more_events),
            ("mix.split", self.mix.split),
            ("mix.redelivery", self.mix.redelivery),
            ("mix.gap", self.mix.gap),
        ] {
            anyhow::ensure!((0.0..=1.0).contains(&share), "{name} must be within 0..=1");
        }
        let m = &self.mix;
        anyhow::ensure!(
            m.new_mail + m.read + m.delete + m.move_ + m.heartbeat > 0.0,
            "the mix needs some weight"
        );
        anyhow::ensure!(
            self.apps_per_platform > 0,
            "apps_per_platform must be more than 0"
        );
        Ok(())
    }

    /// Notifications the steps schedule.
    pub fn notifications(&self) -> u64 {
        self.steps
            .iter()
            .map(|s| (s.rate * s.duration.as_secs_f64()).round() as u64)
            .sum()
    }

    /// The app ids of one platform: `com.example.mail[.android][.N]`.
    pub fn apps(&self, android: bool) -> Vec<String> {
        let base = if android {
            "com.example.mail.android"
        } else {
            "com.example.mail"
        };
        (0..self.apps_per_platform)
            .map(|i| match i {
                0 => base.to_owned(),
                i => format!("{base}.{}", i + 1),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_scenario_loads() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
            let path = entry.map(|e| e.path()).unwrap_or_default();
            let scenario = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            names.push(scenario.name);
        }
        names.sort();
        assert_eq!(
            names,
            [
                "brownout",
                "burst-storm",
                "heartbeat-flood",
                "smoke",
                "steady"
            ]
        );
    }

    #[test]
    fn steps_schedule_rate_times_duration() {
        let s: Scenario = toml::from_str(
            r#"name = "x"
devices = 1
steps = [{ rate = 10.0, duration = "2s" }, { rate = 5.0, duration = "1s" }]"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.notifications(), 25);
        assert_eq!(s.apps(true), ["com.example.mail.android"]);
    }
}
