//! From Exchange's POST to the device's push: the shared fixture sequences through HTTP, the
//! subscription actors and a recording sender, on a real Redis.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use herald_broker::domain::{RegState, RegistrationRecord};
use herald_broker::testsuite::{
    Cast, Member, RedisServer, TestNode, authed, eventually, expected_pushes, fixture, test_config,
};
use herald_workers::PushOutcome;

async fn record(node: &TestNode, member: &Member) -> RegistrationRecord {
    node.record(&member.id()).await.unwrap()
}

fn badges(node: &TestNode, device_token: &str) -> Vec<u32> {
    node.pushes
        .sent()
        .into_iter()
        .filter(|p| p.device_token == device_token)
        .map(|p| p.badge)
        .collect()
}

async fn node() -> (RedisServer, TestNode) {
    let redis = RedisServer::start();
    let node = TestNode::start(&test_config(Some(redis.url()))).await;
    (redis, node)
}

#[tokio::test]
async fn alices_timeline_pushes_exactly_its_expected_badges() {
    let (_redis, node) = node().await;
    let cast = Cast::register(&node, true).await;
    let device = node.play(&cast, "alice-timeline").await;
    let pushed = badges(&node, &device);
    assert_eq!(pushed, expected_pushes("alice-timeline"));
    assert_eq!(pushed, vec![4, 6, 5, 4]);
    // GetRegistration shows the badge and the last push.
    let shown = node
        .client()
        .await
        .get_registration(authed(herald_proto::v1::GetRegistrationRequest {
            registration_id: cast.get("alice").registration.registration_id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (shown.badge, shown.last_push_outcome.as_str()),
        (4, "delivered")
    );
    assert!(shown.last_push_at.is_some());
    node.stop().await;
}

#[tokio::test]
async fn bobs_duplicates_and_new_mail_without_counts_push_nothing() {
    let (_redis, node) = node().await;
    let cast = Cast::register(&node, true).await;
    let device = node.play(&cast, "bob-duplicates").await;
    let pushed = badges(&node, &device);
    assert_eq!(pushed, expected_pushes("bob-duplicates"));
    let metrics = herald_broker::testsuite::http_get(node.node.admin_addr, "/metrics")
        .await
        .1;
    assert!(
        metrics.contains(r#"herald_notifications_total{outcome="duplicate"} 1"#),
        "{metrics}"
    );
    node.stop().await;
}

#[tokio::test]
async fn a_burst_inside_the_quiet_window_is_one_push() {
    let (_redis, node) = node().await;
    let cast = Cast::register(&node, true).await;
    let alice = cast.get("alice");
    for name in [
        "03-burst-created-newmail-modified.xml",
        "07-read-unread-drop.xml",
        "08-harddelete-unread-drop.xml",
    ] {
        assert_eq!(
            node.post_ews(&alice.path, &fixture("ews", name))
                .await
                .status,
            200
        );
    }
    node.flushed(alice).await;
    let pushes = node.pushes.sent();
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    assert_eq!((pushes[0].badge, pushes[0].new_mail), (4, 1));
    let metrics = herald_broker::testsuite::http_get(node.node.admin_addr, "/metrics")
        .await
        .1;
    assert!(
        metrics.contains("herald_events_per_push_sum 7.0"),
        "{metrics}"
    );
    node.stop().await;
}

#[tokio::test]
async fn the_device_badge_sums_its_registrations_for_the_app() {
    let (_redis, node) = node().await;
    let cast = Cast::register(&node, true).await;
    // Carol's registration moves onto alice's device.
    let (alice, carol) = (cast.get("alice"), cast.get("carol"));
    node.client()
        .await
        .update_device_token(authed(herald_proto::v1::UpdateDeviceTokenRequest {
            registration_id: carol.registration.registration_id.clone(),
            device_token: alice.registration.device_token.clone(),
        }))
        .await
        .unwrap();
    node.post_ews(
        &alice.path,
        &fixture("ews", "03-burst-created-newmail-modified.xml"),
    )
    .await;
    node.flushed(alice).await;
    let carol_three = String::from_utf8(fixture("ews", "09-move-to-deleteditems.xml"))
        .unwrap()
        .replacen(
            "<t:UnreadCount>0</t:UnreadCount>",
            "<t:UnreadCount>3</t:UnreadCount>",
            1,
        );
    node.post_ews(&carol.path, carol_three.as_bytes()).await;
    node.flushed(carol).await;
    // Delivery is at least once: a push repeated with the same absolute badge (a flush
    // retried on a busy machine) changes nothing on the phone.
    let mut seen = badges(&node, &alice.registration.device_token);
    seen.dedup();
    assert_eq!(seen, vec![4, 7]);
    node.stop().await;
}

#[tokio::test]
async fn a_dead_device_token_kills_the_registration_and_unsubscribes() {
    let (_redis, node) = node().await;
    let cast = Cast::register(&node, true).await;
    let alice = cast.get("alice");
    node.pushes.script(
        &alice.registration.device_token,
        PushOutcome::TokenDead {
            reason: "Unregistered".into(),
            since_ms: None,
        },
    );
    node.post_ews(
        &alice.path,
        &fixture("ews", "03-burst-created-newmail-modified.xml"),
    )
    .await;
    eventually(Duration::from_secs(5), || async {
        (record(&node, alice).await.state == RegState::Dead).then_some(())
    })
    .await;
    let stored = record(&node, alice).await;
    assert_eq!(stored.last_push_outcome.as_deref(), Some("token_dead"));
    let answer = node
        .post_ews(&alice.path, &fixture("ews", "07-read-unread-drop.xml"))
        .await;
    assert_eq!(
        answer.soap_status().map(|(_, s)| s).as_deref(),
        Some("Unsubscribe")
    );
    node.stop().await;
}

#[tokio::test]
async fn a_node_whose_shard_epoch_was_raised_cannot_accept_and_answers_503() {
    let redis = RedisServer::start();
    let node = TestNode::start(&test_config(Some(redis.url()))).await;
    let cast = Cast::register(&node, true).await;
    let alice = cast.get("alice");
    let before = record(&node, alice).await;
    // Another node took alice's shard over with a larger epoch.
    let other =
        herald_broker::store::RedisStore::connect(&herald_broker::store::RedisStoreConfig {
            url: redis.url(),
            key_prefix: "herald".into(),
            response_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            cluster: false,
            tls: None,
        })
        .unwrap();
    let shard = before.device_token.shard();
    let held = node.node.ownership.epoch(shard).unwrap();
    other
        .set_epoch(shard, herald_cluster::Epoch(held.0 + 1))
        .await
        .unwrap();
    let answer = node
        .post_ews(
            &alice.path,
            &fixture("ews", "03-burst-created-newmail-modified.xml"),
        )
        .await;
    assert_eq!(answer.status, 503, "{}", answer.text());
    assert_eq!(
        record(&node, alice).await,
        before,
        "the fenced write changed nothing"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(node.pushes.sent().is_empty());
    // The node finds its lease passed, drops it and takes the shard anew at a larger epoch.
    eventually(Duration::from_secs(10), || async {
        node.node
            .ownership
            .epoch(shard)
            .filter(|e| e.0 > held.0 + 1)
    })
    .await;
    node.stop().await;
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

async fn metrics(node: &TestNode) -> String {
    herald_broker::testsuite::http_get(node.node.admin_addr, "/metrics")
        .await
        .1
}

#[tokio::test]
async fn a_failed_actor_is_restarted_from_the_store_and_flushes_its_burst() {
    let (_redis, node) = node().await;
    let cast = Cast::register(&node, true).await;
    let alice = cast.get("alice");
    let burst = fixture("ews", "03-burst-created-newmail-modified.xml");
    assert_eq!(node.post_ews(&alice.path, &burst).await.status, 200);
    // Fail the actor while its burst waits for the quiet window.
    node.node
        .subscriptions
        .inject_failure(&record(&node, alice).await)
        .await;
    node.flushed(alice).await;
    assert_eq!(badges(&node, &alice.registration.device_token), vec![4]);
    assert_eq!(
        metric(&metrics(&node).await, "herald_actor_restarts_total"),
        1.0
    );
    // The restarted actor knows what it applied: a redelivery is a duplicate.
    assert_eq!(node.post_ews(&alice.path, &burst).await.status, 200);
    let text = metrics(&node).await;
    assert!(
        text.contains(r#"herald_notifications_total{outcome="duplicate"} 1"#),
        "{text}"
    );
    node.stop().await;
}

#[tokio::test]
async fn idle_actors_are_passivated_and_rebuilt_from_the_store() {
    let redis = RedisServer::start();
    let mut config = test_config(Some(redis.url()));
    config.actors.idle_timeout = Duration::from_millis(300);
    let node = TestNode::start(&config).await;
    let cast = Cast::register(&node, true).await;
    let alice = cast.get("alice");
    let burst = fixture("ews", "03-burst-created-newmail-modified.xml");
    node.post_ews(&alice.path, &burst).await;
    node.flushed(alice).await;
    eventually(Duration::from_secs(5), || async {
        let text = metrics(&node).await;
        (metric(&text, "herald_actors_live") == 0.0
            && metric(&text, "herald_actor_passivations_total") >= 1.0)
            .then_some(())
    })
    .await;
    // Rebuilt from the store: the redelivery is recognised, the next change is pushed.
    node.post_ews(&alice.path, &burst).await;
    node.post_ews(&alice.path, &fixture("ews", "07-read-unread-drop.xml"))
        .await;
    node.flushed(alice).await;
    assert_eq!(badges(&node, &alice.registration.device_token), vec![4, 5]);
    node.stop().await;
}

#[tokio::test]
async fn a_stopping_node_flushes_the_bursts_it_accepted() {
    let redis = RedisServer::start();
    let mut config = test_config(Some(redis.url()));
    config.coalesce.quiet = Duration::from_secs(30);
    config.coalesce.max_delay = Duration::from_secs(60);
    let node = TestNode::start(&config).await;
    let cast = Cast::register(&node, true).await;
    let alice = cast.get("alice").clone();
    let burst = fixture("ews", "03-burst-created-newmail-modified.xml");
    assert_eq!(node.post_ews(&alice.path, &burst).await.status, 200);
    assert!(record(&node, &alice).await.progress.burst.is_some());
    let (store, pushes) = (node.store.clone(), node.pushes.clone());
    node.stop().await;
    let sent: Vec<u32> = pushes.sent().iter().map(|p| p.badge).collect();
    assert_eq!(sent, vec![4], "flushed at shutdown, not 30 s later");
    let stored = store.get(&alice.id()).await.unwrap().unwrap();
    assert!(stored.progress.burst.is_none());
    assert_eq!(stored.last_push_outcome.as_deref(), Some("delivered"));
}

#[tokio::test]
async fn unregistering_during_a_burst_pushes_at_most_once() {
    let (_redis, node) = node().await;
    let cast = Cast::register(&node, true).await;
    let alice = cast.get("alice").clone();
    let device = alice.registration.device_token.clone();
    let burst = fixture("ews", "03-burst-created-newmail-modified.xml");
    assert_eq!(node.post_ews(&alice.path, &burst).await.status, 200);
    cast.unregister(&node).await;
    // Well past the quiet window: a flush whose outcome cannot be recorded must not repeat.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let sent = badges(&node, &device);
    assert!(sent.len() <= 1, "pushed {} times", sent.len());
    let answer = node.post_ews(&alice.path, &burst).await;
    assert_eq!(
        answer.soap_status().map(|(_, s)| s).as_deref(),
        Some("Unsubscribe")
    );
    node.stop().await;
}

#[tokio::test]
async fn an_unregistered_older_than_the_registration_does_not_kill_it() {
    let (_redis, node) = node().await;
    let cast = Cast::register(&node, true).await;
    let alice = cast.get("alice");
    // Apple says the token died in 1970: the app has registered again since.
    node.pushes.script(
        &alice.registration.device_token,
        PushOutcome::TokenDead {
            reason: "Unregistered".into(),
            since_ms: Some(1),
        },
    );
    node.post_ews(
        &alice.path,
        &fixture("ews", "03-burst-created-newmail-modified.xml"),
    )
    .await;
    node.flushed(alice).await;
    let stored = record(&node, alice).await;
    assert_eq!(stored.state, RegState::Active);
    assert_eq!(stored.last_push_outcome.as_deref(), Some("failed"));
    // A death Apple dates after the registration kills it.
    node.pushes.script(
        &alice.registration.device_token,
        PushOutcome::TokenDead {
            reason: "Unregistered".into(),
            since_ms: Some(u64::MAX),
        },
    );
    node.post_ews(&alice.path, &fixture("ews", "07-read-unread-drop.xml"))
        .await;
    eventually(Duration::from_secs(5), || async {
        (record(&node, alice).await.state == RegState::Dead).then_some(())
    })
    .await;
    node.stop().await;
}

/// A sender whose first push panics, then records like the test sender.
#[derive(Debug)]
struct PanicsOnce {
    panicked: std::sync::atomic::AtomicBool,
    pushes: herald_workers::RecordingSender,
}

impl herald_workers::PushSender for PanicsOnce {
    fn send(&self, request: herald_workers::PushRequest) -> herald_workers::SendFuture<'_> {
        let first = !self
            .panicked
            .swap(true, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move {
            assert!(!first, "the push sender fails on its first push");
            self.pushes.send(request).await
        })
    }
}

#[tokio::test]
async fn a_sender_that_panics_fails_that_push_and_the_next_bursts_are_pushed() {
    let redis = RedisServer::start();
    let pushes = herald_workers::RecordingSender::new();
    let sender = std::sync::Arc::new(PanicsOnce {
        panicked: false.into(),
        pushes: pushes.clone(),
    });
    let node = TestNode::with_sender(&test_config(Some(redis.url())), pushes, sender).await;
    let cast = Cast::register(&node, true).await;
    let device = node.play(&cast, "alice-timeline").await;
    // The first burst's push panicked: recorded as failed, the burst done; the rest went out.
    assert_eq!(
        badges(&node, &device),
        expected_pushes("alice-timeline")[1..]
    );
    let alice = record(&node, cast.get("alice")).await;
    assert_eq!(alice.last_push_outcome.as_deref(), Some("delivered"));
    node.stop().await;
}
