use herald_gateway::model::{Event, Notification, Timestamp};
use proptest::prelude::*;

use super::*;
use crate::domain::RECENT_KEYS;

const INBOX: &str = "inbox";

fn record(inbox: Option<&str>) -> RegistrationRecord {
    RegistrationRecord {
        inbox_folder_id: inbox.map(str::to_owned),
        ..RegistrationRecord::sample(3)
    }
}

fn fixture(name: &str) -> Notification {
    let path = format!("{}/../testdata/ews/{name}", env!("CARGO_MANIFEST_DIR"));
    let body = std::fs::read(&path).unwrap();
    let parsed = herald_gateway::parse(&body, &herald_gateway::Limits::default()).unwrap();
    parsed
        .messages
        .into_iter()
        .next()
        .unwrap()
        .notification
        .unwrap()
}

const ALICE_INBOX: &str = "AQMkAGSBBojhCVaWA3el3gSl931pHuG3mdcrDjgbBnxjJGaPn2RPcQAuAAADy0xoW79O2nawdiH5G3pIAjVwB2D2Le3CP//OlXZa2fm6IcA0fNr2lA==";

#[test]
fn alices_timeline_gives_her_inbox_counts() {
    let mut r = record(Some(ALICE_INBOX));
    let steps = [
        ("01-status-heartbeat.xml", None, false),
        ("03-burst-created-newmail-modified.xml", Some(4), true),
        ("04-moreevents-page1.xml", Some(4), true),
        ("05-moreevents-page2.xml", Some(6), true),
        ("07-read-unread-drop.xml", Some(5), true),
        ("08-harddelete-unread-drop.xml", Some(4), true),
    ];
    for (i, (name, count, flush)) in steps.into_iter().enumerate() {
        r.progress.burst = None;
        let applied = apply(&mut r, &fixture(name), UnixMillis(1_000 * i as u64));
        assert!(
            !applied.duplicate && !applied.gap && !applied.stale,
            "{name}: {applied:?}"
        );
        assert_eq!(r.progress.inbox_unread, count, "{name}");
        assert_eq!(applied.wants_flush(), flush, "{name}");
    }
}

#[test]
fn the_burst_collects_new_mail_and_follows_more_events() {
    let mut r = record(Some(ALICE_INBOX));
    apply(
        &mut r,
        &fixture("03-burst-created-newmail-modified.xml"),
        UnixMillis(10),
    );
    let burst = r.progress.burst.unwrap();
    assert_eq!(
        (
            burst.first_at,
            burst.last_at,
            burst.new_mail,
            burst.more_events
        ),
        (UnixMillis(10), UnixMillis(10), 1, false)
    );
    apply(&mut r, &fixture("04-moreevents-page1.xml"), UnixMillis(20));
    assert!(
        r.progress.burst.unwrap().more_events,
        "page 1 announces more"
    );
    apply(&mut r, &fixture("05-moreevents-page2.xml"), UnixMillis(30));
    let burst = r.progress.burst.unwrap();
    assert_eq!(
        (burst.first_at, burst.last_at, burst.more_events),
        (UnixMillis(10), UnixMillis(30), false)
    );
}

#[test]
fn a_redelivery_is_a_duplicate_and_changes_nothing() {
    let mut r = record(None);
    let first = apply(&mut r, &fixture("02-newmail-single.xml"), UnixMillis(1));
    assert_eq!(first.new_mail, 1);
    let before = r.clone();
    // 12 is 02 in another surface syntax: the same notification.
    let again = apply(
        &mut r,
        &fixture("12-default-namespaces-same-as-02.xml"),
        UnixMillis(2),
    );
    assert!(again.duplicate);
    assert_eq!(r, before);
    // 06 continues bob's chain: no gap.
    let next = apply(
        &mut r,
        &fixture("06-two-response-messages.xml"),
        UnixMillis(3),
    );
    assert!(!next.duplicate && !next.gap);
}

#[test]
fn the_inbox_is_learned_from_new_mail_and_other_folders_are_ignored() {
    let mut r = record(None);
    apply(&mut r, &fixture("02-newmail-single.xml"), UnixMillis(1));
    assert!(
        r.inbox_folder_id.is_some(),
        "learned from the NewMailEvent's parent"
    );
    assert_eq!(
        r.progress.inbox_unread, None,
        "bob's NewMail-only subscription has no count"
    );
    let carol_inbox = "AQMkAPoQc/kKp3SVyd0xc84wZhFejWSaVmZNAXRaZ1RTg+GRS/pVrAAuAAADy0xoW79O2nawdiH5G3pIAjVwB2D2Le3CP//OlXZa2fm6IcA0fNr2lA==";
    let mut carol = record(Some(carol_inbox));
    apply(
        &mut carol,
        &fixture("09-move-to-deleteditems.xml"),
        UnixMillis(1),
    );
    assert_eq!(
        carol.progress.inbox_unread,
        Some(0),
        "Deleted Items' 7 is ignored"
    );
}

#[test]
fn a_gap_is_counted_and_still_applied() {
    let mut r = record(Some(ALICE_INBOX));
    apply(
        &mut r,
        &fixture("03-burst-created-newmail-modified.xml"),
        UnixMillis(1),
    );
    let skipped = apply(&mut r, &fixture("05-moreevents-page2.xml"), UnixMillis(2));
    assert!(skipped.gap && !skipped.duplicate);
    assert_eq!(r.progress.inbox_unread, Some(6));
}

fn notification(prev: u32, last: u32, seconds: i64, count: Option<u32>) -> Notification {
    let mut events = vec![Event {
        kind: EventKind::NewMail,
        watermark: Some(format!("w{last}a")),
        timestamp: Some(Timestamp {
            unix_seconds: seconds,
            nanos: 0,
        }),
        item_id: Some("item".into()),
        parent_folder_id: Some(INBOX.into()),
        ..Event::default()
    }];
    if let Some(count) = count {
        events.push(Event {
            kind: EventKind::Modified,
            watermark: Some(format!("w{last}")),
            timestamp: Some(Timestamp {
                unix_seconds: seconds,
                nanos: 0,
            }),
            folder_id: Some(INBOX.into()),
            parent_folder_id: Some("root".into()),
            unread_count: Some(count),
            ..Event::default()
        });
    }
    Notification {
        subscription_id: "s".into(),
        previous_watermark: Some(format!("w{prev}")),
        more_events: false,
        events,
    }
}

/// A chain of notifications with strictly increasing times and optional Inbox counts.
fn chain() -> impl Strategy<Value = Vec<Notification>> {
    prop::collection::vec((1i64..120, prop::option::of(0u32..500)), 1..24).prop_map(|steps| {
        let mut t = 1_772_600_000;
        steps
            .into_iter()
            .enumerate()
            .map(|(i, (dt, count))| {
                t += dt;
                notification(i as u32, i as u32 + 1, t, count)
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn the_badge_is_the_last_applied_inbox_count(chain in chain(), order in prop::collection::vec(any::<prop::sample::Index>(), 0..40)) {
        let mut r = record(Some(INBOX));
        let mut expected = None;
        // Deliver the chain in order, interleaved with redeliveries of earlier notifications.
        let mut replays = order.into_iter();
        for (i, n) in chain.iter().enumerate() {
            let applied = apply(&mut r, n, UnixMillis(i as u64));
            if !applied.duplicate && !applied.stale && let Some(count) = n.last_unread_count(INBOX) {
                expected = Some(count);
            }
            prop_assert_eq!(r.progress.inbox_unread, expected);
            if let Some(pick) = replays.next() {
                let old = &chain[pick.index(i + 1)];
                let before = r.progress.inbox_unread;
                let replay = apply(&mut r, old, UnixMillis(i as u64));
                prop_assert!(replay.duplicate || replay.stale, "a replay was applied: {:?}", replay);
                prop_assert_eq!(r.progress.inbox_unread, before);
            }
        }
        prop_assert!(r.progress.recent.len() <= RECENT_KEYS);
    }
}
