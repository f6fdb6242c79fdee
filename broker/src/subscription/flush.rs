//! When a burst is flushed and what the flush sends (DESIGN.md §3): the quiet window, the
//! maximum delay, the device's total badge over its registrations for the app, and the rules
//! that spare the provider a push the device does not need. Pure.

use std::time::Duration;

use herald_workers::{Provider, PushRequest};

use crate::domain::{Burst, Platform, RegState, RegistrationRecord, UnixMillis};

/// The coalescing rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coalescing {
    pub quiet: Duration,
    pub max_delay: Duration,
    pub min_interval: Duration,
}

fn plus(t: UnixMillis, d: Duration) -> UnixMillis {
    UnixMillis(t.0.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
}

/// When `burst` is due: after the quiet window since its latest event, at the latest
/// `max_delay` after its first; while more pages are announced, only the latter.
pub fn due(burst: &Burst, rules: &Coalescing) -> UnixMillis {
    let cap = plus(burst.first_at, rules.max_delay);
    if burst.more_events {
        cap
    } else {
        plus(burst.last_at, rules.quiet).min(cap)
    }
}

/// What a flush does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlushPlan {
    /// Send this push.
    Send(PushRequest),
    /// The device already shows this badge and there is no new mail to announce — or no
    /// registration of the device knows its Inbox count yet, so there is no badge to send.
    Skip { badge: u32 },
    /// The device was pushed too recently: flush again at this time.
    Postpone(UnixMillis),
}

/// The flush of `flusher`'s burst. `device` holds every registration of the device token
/// (the flusher's stored copy may be older than `flusher`, which wins).
pub fn plan(
    flusher: &RegistrationRecord,
    device: &[RegistrationRecord],
    now: UnixMillis,
    rules: &Coalescing,
) -> FlushPlan {
    let same_app = device
        .iter()
        .filter(|r| r.id != flusher.id)
        .chain(std::iter::once(flusher))
        .filter(|r| r.app_id == flusher.app_id && r.state != RegState::Dead);
    let mut badge: u32 = 0;
    let mut known = false;
    let mut last_push: Option<(UnixMillis, u32, bool)> = None;
    for r in same_app {
        known |= r.progress.inbox_unread.is_some();
        badge = badge.saturating_add(r.progress.inbox_unread.unwrap_or(0));
        if let Some(at) = r.last_push_at
            && last_push.is_none_or(|(latest, _, _)| at > latest)
        {
            let delivered = r.last_push_outcome.as_deref() == Some("delivered");
            last_push = Some((at, r.badge, delivered));
        }
    }
    if let Some((at, _, _)) = last_push {
        let earliest = plus(at, rules.min_interval);
        if now < earliest {
            return FlushPlan::Postpone(earliest);
        }
    }
    if !known {
        // A NewMail-only subscription never learns a count (§8): never guess one.
        return FlushPlan::Skip { badge };
    }
    let new_mail = flusher.progress.burst.map_or(0, |b| b.new_mail);
    let already_shown = last_push.is_some_and(|(_, shown, delivered)| delivered && shown == badge);
    let announces_mail = new_mail > 0 && flusher.platform == Platform::Fcm;
    let announced = flusher.progress.burst.is_some_and(|b| b.announce);
    if already_shown && !announces_mail && !announced {
        return FlushPlan::Skip { badge };
    }
    FlushPlan::Send(PushRequest {
        provider: match flusher.platform {
            Platform::Apns => Provider::Apns,
            Platform::Fcm => Provider::Fcm,
        },
        app_id: flusher.app_id.clone(),
        device_token: flusher.device_token.as_str().to_owned(),
        badge,
        new_mail,
        collapse_id: format!("badge-{}", flusher.device_token.fingerprint()),
        push_id: push_id(flusher),
        attempt: 0,
        send_before: None,
    })
}

/// The id of the push of `flusher`'s current burst: the same for every retry of the burst
/// (APNs `apns-id`, logs), shaped as a version-4 UUID.
fn push_id(flusher: &RegistrationRecord) -> String {
    let first_at = flusher.progress.burst.map_or(0, |b| b.first_at.0);
    let mut seed = flusher.id.as_str().as_bytes().to_vec();
    seed.extend_from_slice(&first_at.to_be_bytes());
    let hash = xxhash_rust::xxh3::xxh3_128(&seed);
    uuid::Builder::from_random_bytes(hash.to_be_bytes())
        .into_uuid()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DeviceToken;

    const RULES: Coalescing = Coalescing {
        quiet: Duration::from_secs(1),
        max_delay: Duration::from_secs(3),
        min_interval: Duration::from_secs(2),
    };

    /// Registration `n` of one device (they share a token).
    fn reg(n: u8, app: &str, unread: Option<u32>, platform: Platform) -> RegistrationRecord {
        let mut record = RegistrationRecord {
            device_token: DeviceToken::from_stored("ef".repeat(32)),
            platform,
            app_id: app.into(),
            ..RegistrationRecord::sample(n)
        };
        record.progress.inbox_unread = unread;
        record
    }

    fn burst(first: u64, last: u64, new_mail: u32, more: bool) -> Burst {
        Burst {
            first_at: UnixMillis(first),
            last_at: UnixMillis(last),
            new_mail,
            events: new_mail + 1,
            more_events: more,
            announce: false,
        }
    }

    #[test]
    fn a_burst_is_due_after_the_quiet_window_and_never_after_the_maximum_delay() {
        assert_eq!(due(&burst(0, 0, 1, false), &RULES), UnixMillis(1_000));
        assert_eq!(due(&burst(0, 1_500, 1, false), &RULES), UnixMillis(2_500));
        assert_eq!(due(&burst(0, 2_500, 1, false), &RULES), UnixMillis(3_000));
        assert_eq!(due(&burst(0, 100, 1, true), &RULES), UnixMillis(3_000));
    }

    #[test]
    fn the_badge_is_the_sum_over_the_devices_registrations_for_the_app() {
        let mut flusher = reg(1, "mail", Some(4), Platform::Apns);
        flusher.progress.burst = Some(burst(0, 0, 1, false));
        let mut dead = reg(4, "mail", Some(100), Platform::Apns);
        dead.state = RegState::Dead;
        let device = [
            reg(1, "mail", Some(999), Platform::Apns), // the flusher's older stored copy
            reg(2, "mail", Some(3), Platform::Apns),
            reg(3, "other-app", Some(50), Platform::Apns),
            dead,
        ];
        let FlushPlan::Send(push) = plan(&flusher, &device, UnixMillis(5_000), &RULES) else {
            panic!("expected a push");
        };
        assert_eq!(
            (push.badge, push.new_mail, push.provider),
            (7, 1, Provider::Apns)
        );
    }

    #[test]
    fn a_badge_already_shown_is_not_pushed_again_except_to_announce_mail_on_fcm() {
        let mut shown = reg(2, "mail", Some(3), Platform::Apns);
        shown.badge = 7;
        shown.last_push_at = Some(UnixMillis(1_000));
        shown.last_push_outcome = Some("delivered".into());
        let mut flusher = reg(1, "mail", Some(4), Platform::Apns);
        flusher.progress.burst = Some(burst(9_000, 9_000, 1, false));
        let now = UnixMillis(10_000);
        assert_eq!(
            plan(&flusher, &[shown.clone()], now, &RULES),
            FlushPlan::Skip { badge: 7 }
        );
        let mut fcm = flusher.clone();
        fcm.platform = Platform::Fcm;
        assert!(matches!(
            plan(&fcm, &[shown.clone()], now, &RULES),
            FlushPlan::Send(_)
        ));
        fcm.progress.burst = Some(burst(9_000, 9_000, 0, false));
        assert_eq!(
            plan(&fcm, &[shown.clone()], now, &RULES),
            FlushPlan::Skip { badge: 7 }
        );
        // A failed earlier push does not count as shown.
        let mut failed = shown;
        failed.last_push_outcome = Some("failed".into());
        assert!(matches!(
            plan(&flusher, &[failed], now, &RULES),
            FlushPlan::Send(_)
        ));
    }

    #[test]
    fn an_announce_burst_is_pushed_even_if_the_records_say_the_badge_was_shown() {
        // The device's last push (7) was recorded on a registration that has left it; the
        // one left still says it showed 3.
        let mut flusher = reg(1, "mail", Some(3), Platform::Apns);
        flusher.badge = 3;
        flusher.last_push_at = Some(UnixMillis(1_000));
        flusher.last_push_outcome = Some("delivered".into());
        flusher.progress.burst = Some(Burst {
            announce: true,
            ..burst(9_000, 9_000, 0, false)
        });
        assert!(matches!(
            plan(&flusher, &[], UnixMillis(10_000), &RULES),
            FlushPlan::Send(push) if push.badge == 3
        ));
        flusher.progress.burst = Some(burst(9_000, 9_000, 0, false));
        assert_eq!(
            plan(&flusher, &[], UnixMillis(10_000), &RULES),
            FlushPlan::Skip { badge: 3 }
        );
    }

    #[test]
    fn no_badge_is_sent_before_any_inbox_count_is_known() {
        let mut flusher = reg(1, "mail", None, Platform::Fcm);
        flusher.progress.burst = Some(burst(0, 0, 2, false));
        let device = [reg(2, "mail", None, Platform::Fcm)];
        assert_eq!(
            plan(&flusher, &device, UnixMillis(5_000), &RULES),
            FlushPlan::Skip { badge: 0 }
        );
    }

    #[test]
    fn a_device_pushed_too_recently_waits_for_its_minimum_interval() {
        let mut recent = reg(2, "mail", Some(1), Platform::Apns);
        recent.badge = 1;
        recent.last_push_at = Some(UnixMillis(9_000));
        recent.last_push_outcome = Some("delivered".into());
        let mut flusher = reg(1, "mail", Some(4), Platform::Apns);
        flusher.progress.burst = Some(burst(9_500, 9_500, 1, false));
        assert_eq!(
            plan(&flusher, &[recent], UnixMillis(10_000), &RULES),
            FlushPlan::Postpone(UnixMillis(11_000))
        );
    }
}
