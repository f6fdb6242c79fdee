//! End to end over real HTTP and real TLS: Exchange's POST → gateway → subscription actor →
//! provider client → mock APNs / mock FCM, on a real Redis. What the mocks received is what a
//! phone would show.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_broker::domain::RegState;
use herald_broker::testsuite::{
    Cast, RedisServer, TestNode, eventually, expected_pushes, fixture, test_config,
};
use herald_proto::v1::Platform;
use herald_workers::mock::{Fault, MockApnsOptions, Reply, TokenRule};

async fn node() -> (RedisServer, TestNode) {
    let redis = RedisServer::start();
    let node =
        TestNode::with_providers(&test_config(Some(redis.url())), MockApnsOptions::default()).await;
    (redis, node)
}

fn apns_badges(node: &TestNode, token: &str) -> Vec<u32> {
    let pushes = node.mocks().apns.pushes();
    pushes
        .iter()
        .filter(|p| p.device_token == token)
        .map(|p| p.badge.expect("a badge"))
        .collect()
}

fn fcm_badges(node: &TestNode, token: &str) -> Vec<u32> {
    let pushes = node.mocks().fcm.pushes();
    pushes
        .iter()
        .filter(|p| p.token == token)
        .map(|p| p.data["badge"].parse().expect("a numeric badge"))
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn alices_iphone_gets_the_expected_badges_from_the_mock_apns() {
    let (_redis, node) = node().await;
    let cast = Cast::register(&node, true).await;
    let device = node.play(&cast, "alice-timeline").await;
    assert_eq!(
        apns_badges(&node, &device),
        expected_pushes("alice-timeline")
    );
    let pushes = node.mocks().apns.pushes();
    assert!(
        pushes
            .iter()
            .all(|p| p.payload.starts_with(r#"{"aps":{"badge":"#)
                && p.topic == "com.example.mail"
                && p.push_type.as_deref() == Some("alert")
                && p.priority.as_deref() == Some("5"))
    );
    node.stop().await;
}

#[tokio::test]
async fn alices_android_phone_gets_the_same_badges_from_the_mock_fcm() {
    let (_redis, node) = node().await;
    let cast = Cast::register_as(&node, true, Platform::Fcm).await;
    let device = node.play(&cast, "alice-timeline").await;
    assert_eq!(
        fcm_badges(&node, &device),
        expected_pushes("alice-timeline")
    );
    let pushes = node.mocks().fcm.pushes();
    assert_eq!(pushes[0].data["kind"], "mail");
    assert_eq!(pushes[0].data["new_mail"], "1", "03 brings one new mail");
    assert_eq!(pushes[0].priority.as_deref(), Some("high"));
    assert_eq!(node.mocks().fcm.tokens_issued(), 1);
    node.stop().await;
}

#[tokio::test]
async fn unregistered_at_apple_kills_the_registration_tells_services_and_unsubscribes() {
    let (redis, node) = node().await;
    let cast = Cast::register(&node, true).await;
    let alice = cast.get("alice");
    let token = alice.registration.device_token.clone();
    node.mocks().apns.script().for_token(TokenRule {
        token: token.clone(),
        fault: Fault::Reply(Reply {
            timestamp_ms: Some(now_ms()),
            ..Reply::new(410, "Unregistered")
        }),
        times: None,
    });
    let answer = node
        .post_ews(
            &alice.path,
            &fixture("ews", "03-burst-created-newmail-modified.xml"),
        )
        .await;
    assert_eq!(answer.soap_status().map(|(_, s)| s).as_deref(), Some("OK"));
    let dead = eventually(Duration::from_secs(10), || async {
        let record = node.record(&alice.id()).await.unwrap();
        (record.state == RegState::Dead).then_some(record)
    })
    .await;
    assert!(
        dead.dead_reason.unwrap().contains("Unregistered"),
        "the reason is kept"
    );
    // Internal services read it from the feedback stream.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg("herald:feedback")
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let fields = &entries[0].1;
    let field = |name: &str| {
        let at = fields.iter().position(|f| f == name).unwrap();
        fields[at + 1].clone()
    };
    assert_eq!(field("event"), "token_dead");
    assert_eq!(field("registration_id"), alice.registration.registration_id);
    assert_eq!(field("device_token"), token);
    assert_eq!(field("platform"), "apns");
    assert_eq!(field("app_id"), "com.example.mail");
    assert_eq!(field("reason"), "apns 410 Unregistered");
    assert!(field("provider_since_ms").parse::<u64>().is_ok());
    // Exchange's next notification is told to stop.
    let answer = node
        .post_ews(&alice.path, &fixture("ews", "07-read-unread-drop.xml"))
        .await;
    assert_eq!(
        answer.soap_status().map(|(_, s)| s).as_deref(),
        Some("Unsubscribe")
    );
    assert!(apns_badges(&node, &token).is_empty());
    node.stop().await;
}

/// Sends 03 (badge 4), waits for the provider to refuse it, then sends 04 and 05 (badge 6)
/// while the retry waits: the device must get 6 only.
async fn retried_push_carries_the_latest_badge(
    node: &TestNode,
    cast: &Cast,
    refused: impl Fn() -> u64,
) {
    let alice = cast.get("alice");
    node.post_ews(
        &alice.path,
        &fixture("ews", "03-burst-created-newmail-modified.xml"),
    )
    .await;
    eventually(Duration::from_secs(10), || async {
        (refused() > 0).then_some(())
    })
    .await;
    for name in ["04-moreevents-page1.xml", "05-moreevents-page2.xml"] {
        let answer = node.post_ews(&alice.path, &fixture("ews", name)).await;
        assert_eq!(answer.status, 200);
    }
    node.flushed(alice).await;
}

#[tokio::test]
async fn apns_503_is_retried_after_its_retry_after_with_the_latest_badge() {
    let (_redis, node) = node().await;
    let cast = Cast::register(&node, true).await;
    let token = cast.get("alice").registration.device_token.clone();
    // Twice: the client's immediate retry on a fresh connection is refused too.
    node.mocks().apns.script().for_token(TokenRule {
        token: token.clone(),
        fault: Fault::Reply(Reply {
            retry_after_secs: Some(2),
            ..Reply::new(503, "ServiceUnavailable")
        }),
        times: Some(2),
    });
    let apns = &node.mocks().apns;
    retried_push_carries_the_latest_badge(&node, &cast, || {
        apns.refused()
            .get("503 ServiceUnavailable")
            .copied()
            .unwrap_or(0)
    })
    .await;
    assert_eq!(apns_badges(&node, &token), vec![6]);
    assert_eq!(apns.refused().get("503 ServiceUnavailable"), Some(&2));
    node.stop().await;
}

#[tokio::test]
async fn fcm_429_quota_is_retried_after_its_retry_after_with_the_latest_badge() {
    let (_redis, node) = node().await;
    let cast = Cast::register_as(&node, true, Platform::Fcm).await;
    let token = cast.get("alice").registration.device_token.clone();
    node.mocks().fcm.script().for_token(TokenRule {
        token: token.clone(),
        fault: Fault::Reply(Reply {
            retry_after_secs: Some(2),
            ..Reply::new(429, "QUOTA_EXCEEDED")
        }),
        times: Some(1),
    });
    let fcm = &node.mocks().fcm;
    retried_push_carries_the_latest_badge(&node, &cast, || {
        fcm.refused()
            .get("429 QUOTA_EXCEEDED")
            .copied()
            .unwrap_or(0)
    })
    .await;
    assert_eq!(fcm_badges(&node, &token), vec![6]);
    node.stop().await;
}
