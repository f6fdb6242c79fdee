//! The end-of-run checks: each device's last push shows the sum of its mailboxes' final
//! unread counts, no device got more pushes than it had count changes (a redelivery or a
//! heartbeat never pushes), and the event → push latency of every push.

use std::collections::HashMap;

use hdrhistogram::Histogram;

use super::providers::Received;
use crate::fleet::Fleet;
use crate::report::latency_histogram;

/// What the notifications of one device did, in the order they were answered.
#[derive(Clone, Debug, Default)]
pub(super) struct DeviceLog {
    /// Each notification that may push: when it was sent, the device's badge once it is
    /// applied, and whether it announces new mail (FCM pushes for that even at an unchanged
    /// badge).
    pub(super) changes: Vec<Change>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Change {
    pub(super) at_ms: u64,
    pub(super) badge: u32,
    pub(super) announces: bool,
}

#[derive(Debug)]
pub struct Verification {
    pub devices_checked: usize,
    pub wrong_badge: usize,
    pub missing_push: usize,
    pub too_many_pushes: usize,
    /// The first few problems, for the report.
    pub examples: Vec<String>,
    pub pushes: usize,
    pub count_changes: usize,
    pub ios_latency: Histogram<u64>,
    pub android_latency: Histogram<u64>,
}

impl Verification {
    pub fn passed(&self) -> bool {
        self.wrong_badge == 0 && self.missing_push == 0 && self.too_many_pushes == 0
    }
}

pub(super) fn verify(fleet: &Fleet, logs: &[DeviceLog], received: &[Received]) -> Verification {
    let mut by_token: HashMap<&str, Vec<&Received>> = HashMap::new();
    for push in received {
        by_token.entry(push.token.as_str()).or_default().push(push);
    }
    let mut v = Verification {
        devices_checked: 0,
        wrong_badge: 0,
        missing_push: 0,
        too_many_pushes: 0,
        examples: Vec::new(),
        pushes: received.len(),
        count_changes: logs.iter().map(|l| l.changes.len()).sum(),
        ios_latency: latency_histogram(),
        android_latency: latency_histogram(),
    };
    for (d, device) in fleet.devices.iter().enumerate() {
        let log = &logs[d];
        let pushes = by_token
            .get(device.token.as_str())
            .cloned()
            .unwrap_or_default();
        if log.changes.is_empty() {
            if !pushes.is_empty() {
                v.too_many_pushes += 1;
                note(
                    &mut v.examples,
                    format!("device {d}: {} pushes without a count change", pushes.len()),
                );
            }
            continue;
        }
        v.devices_checked += 1;
        let expected: u32 = device
            .mailboxes
            .iter()
            .map(|&m| fleet.mailboxes[m].mailbox.unread)
            .sum();
        match pushes.last() {
            None => {
                v.missing_push += 1;
                note(
                    &mut v.examples,
                    format!("device {d}: no push, expected badge {expected}"),
                );
            }
            Some(last) if last.badge != expected => {
                v.wrong_badge += 1;
                note(
                    &mut v.examples,
                    format!("device {d}: last badge {}, expected {expected}", last.badge),
                );
            }
            Some(_) => {}
        }
        if pushes.len() > log.changes.len() {
            v.too_many_pushes += 1;
            note(
                &mut v.examples,
                format!(
                    "device {d}: {} pushes for {} count changes",
                    pushes.len(),
                    log.changes.len()
                ),
            );
        }
        let histogram = if device.android {
            &mut v.android_latency
        } else {
            &mut v.ios_latency
        };
        record_latencies(&log.changes, &pushes, histogram);
    }
    v
}

/// A push's latency runs from the first change it is owed to: the earliest change since the
/// previous push, unless the badge came back to what the device already shows (then nothing
/// is owed and no push is due).
fn record_latencies(changes: &[Change], pushes: &[&Received], histogram: &mut Histogram<u64>) {
    let (mut next, mut owed_since, mut shown) = (0, None, None);
    for push in pushes {
        while next < changes.len() && changes[next].at_ms <= push.at_ms {
            let change = changes[next];
            if Some(change.badge) == shown && !change.announces {
                owed_since = None;
            } else {
                owed_since.get_or_insert(change.at_ms);
            }
            next += 1;
        }
        if let Some(since) = owed_since.take() {
            let ms = push.at_ms.saturating_sub(since);
            let _ = histogram.record((ms * 1000).max(1));
        }
        shown = Some(push.badge);
    }
}

fn note(examples: &mut Vec<String>, problem: String) {
    if examples.len() < 20 {
        examples.push(problem);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::Mailbox;
    use crate::fleet::{Device, Registered};

    /// One iPhone with two mailboxes (3 and 2 unread: badge 5).
    fn fleet() -> Fleet {
        let mailbox = |index, unread| {
            let mut mailbox = Mailbox::new(index, format!("sub-{index}"), format!("inbox-{index}"));
            mailbox.unread = unread;
            Registered {
                mailbox,
                path: String::new(),
                device: 0,
            }
        };
        Fleet {
            devices: vec![Device {
                token: "t".into(),
                android: false,
                app: "com.example.mail".into(),
                mailboxes: vec![0, 1],
            }],
            mailboxes: vec![mailbox(0, 3), mailbox(1, 2)],
        }
    }

    fn push(badge: u32, at_ms: u64) -> Received {
        Received {
            token: "t".into(),
            badge,
            at_ms,
        }
    }

    fn log() -> Vec<DeviceLog> {
        let change = |at_ms, badge| Change {
            at_ms,
            badge,
            announces: false,
        };
        vec![DeviceLog {
            changes: vec![change(1_000, 3), change(1_100, 5)],
        }]
    }

    #[test]
    fn the_last_push_must_show_the_sum_of_the_mailboxes() {
        let right = verify(&fleet(), &log(), &[push(5, 1_900)]);
        assert!(right.passed(), "{right:?}");
        assert_eq!(right.ios_latency.len(), 1);
        assert_eq!(
            right.ios_latency.max() / 1000,
            900,
            "from the first event of the burst"
        );
        let wrong = verify(&fleet(), &log(), &[push(5, 1_050), push(3, 1_900)]);
        assert!(!wrong.passed());
        assert_eq!(wrong.wrong_badge, 1);
        assert!(wrong.examples[0].contains("last badge 3, expected 5"));
    }

    #[test]
    fn no_push_or_more_pushes_than_changes_fail() {
        assert_eq!(verify(&fleet(), &log(), &[]).missing_push, 1);
        let extra = verify(
            &fleet(),
            &log(),
            &[push(3, 1_050), push(5, 1_200), push(5, 1_300)],
        );
        assert_eq!(extra.too_many_pushes, 1, "a redelivery pushed");
    }
}
