//! An actor's life around its work, on a real Redis: a registration that dies drops its
//! burst and its actor; `actors.max_live` bounds the live actors while every burst is
//! still flushed; a burst whose push keeps failing is given up after its lifetime; the
//! work a crashed node left is finished even when the store is down as the next starts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use herald_broker::domain::{Burst, RegState, RegistrationId, UnixMillis};
use herald_broker::registry::NewRegistration;
use herald_broker::testsuite::{
    Cast, GatedSender, IOS_APP, RedisServer, TestNode, authed, eventually, fixture, registry_on,
    test_config,
};
use herald_cluster::{Epoch, Fence, Ownership};
use herald_proto::v1::{GetRegistrationRequest, Platform, RegisterRequest};
use herald_workers::PushOutcome;

const BURST: &str = "03-burst-created-newmail-modified.xml";
const FIXTURE_SUBSCRIPTION: &str =
    "HABleG1ieDAxLmNvcnAuY29udG9zby5leGFtcGxlEAAAAJpyRUCk4gv0pegvppfUERwE4egXN7kayg==";

async fn soap(node: &TestNode, path: &str, body: &[u8]) -> Option<String> {
    node.post_ews(path, body)
        .await
        .soap_status()
        .map(|(_, status)| status)
}

#[tokio::test]
async fn a_registration_that_dies_with_a_burst_drops_it_and_its_actor() {
    let redis = RedisServer::start();
    let mut config = test_config(Some(redis.url()));
    config.coalesce.quiet = Duration::from_secs(5);
    config.coalesce.max_delay = Duration::from_secs(10);
    let node = TestNode::start(&config).await;
    let cast = Cast::register(&node, true).await;
    let alice = cast.get("alice");
    let shard = alice.registration.device_token.as_str();
    let shard = herald_cluster::ShardId::of_device_token(shard);
    assert_eq!(
        soap(&node, &alice.path, &fixture("ews", BURST))
            .await
            .as_deref(),
        Some("OK")
    );
    assert_eq!(
        node.store.pending_bursts(shard).await.unwrap(),
        vec![alice.id()]
    );
    let metrics = scrape(&node).await;
    assert_eq!(gauge(&metrics, "herald_bursts_pending"), 1.0, "{metrics}");
    assert!(gauge(&metrics, "herald_burst_oldest_pending_age_seconds") < 5.0);

    // Exchange says the subscription failed: dead, Unsubscribe.
    let error = fixture("ews-extra", "11-error-readeventsfailed.xml");
    assert_eq!(
        soap(&node, &alice.path, &error).await.as_deref(),
        Some("Unsubscribe")
    );
    let record = node.record(&alice.id()).await.unwrap();
    assert_eq!(
        (record.state, record.progress.burst),
        (RegState::Dead, None)
    );
    assert!(node.store.pending_bursts(shard).await.unwrap().is_empty());
    // Nothing left to do: the actor goes at once, not after the idle timeout.
    eventually(Duration::from_secs(3), || async {
        node.node
            .subscriptions
            .live_record(&alice.id())
            .is_none()
            .then_some(())
    })
    .await;
    assert!(node.pushes.sent().is_empty(), "nothing is pushed for it");
    let metrics = scrape(&node).await;
    assert_eq!(gauge(&metrics, "herald_bursts_pending"), 0.0, "{metrics}");
    assert_eq!(
        gauge(&metrics, "herald_burst_oldest_pending_age_seconds"),
        0.0
    );
    node.stop().await;
}

async fn scrape(node: &TestNode) -> String {
    herald_broker::testsuite::http_get(node.node.admin_addr, "/metrics")
        .await
        .1
}

/// The value of the unlabelled metric `name` in `metrics` (NaN when absent).
fn gauge(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// `BURST` as posted by subscription `n`.
fn burst_of(n: usize) -> Vec<u8> {
    String::from_utf8(fixture("ews", BURST))
        .unwrap()
        .replace(FIXTURE_SUBSCRIPTION, &format!("SUB-{n}"))
        .into_bytes()
}

#[tokio::test]
async fn max_live_bounds_the_actors_and_every_burst_is_still_flushed() {
    let redis = RedisServer::start();
    let mut config = test_config(Some(redis.url()));
    // One actor per shard; the registrations below share one device, so one shard.
    config.actors.max_live = usize::from(herald_cluster::SHARD_COUNT);
    config.coalesce.quiet = Duration::from_millis(300);
    config.coalesce.max_delay = Duration::from_secs(1);
    let node = TestNode::start(&config).await;
    let token = "ab".repeat(32);
    let mut client = node.client().await;
    let mut paths = Vec::new();
    for n in 0..4 {
        let created = client
            .register(authed(RegisterRequest {
                device_token: token.clone(),
                platform: Platform::Apns.into(),
                app_id: IOS_APP.into(),
                subscription_id: format!("SUB-{n}"),
                inbox_folder_id: "AQMkAGSBBojhCVaWA3el3gSl931pHuG3mdcrDjgbBnxjJGaPn2RPcQAuAAADy0xoW79O2nawdiH5G3pIAjVwB2D2Le3CP//OlXZa2fm6IcA0fNr2lA==".into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        paths.push(herald_broker::testsuite::callback_path(
            &created.callback_url,
        ));
    }
    let subscriptions = &node.node.subscriptions;
    for (n, path) in paths.iter().enumerate() {
        assert_eq!(soap(&node, path, &burst_of(n)).await.as_deref(), Some("OK"));
        assert!(subscriptions.actor_count().await <= 1);
    }
    // Every burst is flushed — the evicted ones woken by their due time — with at most one
    // actor alive at any moment.
    let pushed = eventually(Duration::from_secs(10), || async {
        assert!(subscriptions.actor_count().await <= 1);
        node.pushes
            .sent()
            .last()
            .filter(|p| p.badge == 16)
            .map(|p| p.badge)
    })
    .await;
    assert_eq!(pushed, 16, "four registrations with 4 unread each");
    let metrics = scrape(&node).await;
    assert!(
        !metrics.contains("herald_actor_passivations_total 0"),
        "actors were evicted to make room: {metrics}"
    );
    // The evicted actors' bursts count as pending until their push is done, not after.
    eventually(Duration::from_secs(5), || async {
        (gauge(&scrape(&node).await, "herald_bursts_pending") == 0.0).then_some(())
    })
    .await;
    node.stop().await;
}

#[tokio::test]
async fn a_burst_whose_push_keeps_failing_is_given_up_after_its_lifetime() {
    let redis = RedisServer::start();
    let mut config = test_config(Some(redis.url()));
    config.delivery.badge_lifetime = Duration::from_secs(1);
    let node = TestNode::start(&config).await;
    let cast = Cast::register(&node, true).await;
    let alice = cast.get("alice");
    node.pushes.script(
        &alice.registration.device_token,
        PushOutcome::RetryAfter(Duration::from_millis(100)),
    );
    assert_eq!(
        soap(&node, &alice.path, &fixture("ews", BURST))
            .await
            .as_deref(),
        Some("OK")
    );
    let shown = eventually(Duration::from_secs(10), || async {
        let shown = node
            .client()
            .await
            .get_registration(authed(GetRegistrationRequest {
                registration_id: alice.registration.registration_id.clone(),
            }))
            .await
            .unwrap()
            .into_inner();
        (shown.last_push_outcome == "expired").then_some(shown)
    })
    .await;
    assert_eq!(shown.state, herald_proto::v1::State::Active as i32);
    let record = node.record(&alice.id()).await.unwrap();
    assert_eq!(record.progress.burst, None);
    let shard = herald_cluster::ShardId::of_device_token(&alice.registration.device_token);
    assert!(node.store.pending_bursts(shard).await.unwrap().is_empty());
    let tries = node.pushes.sent().len();
    assert!(tries >= 2, "retried before giving up: {tries}");
    node.stop().await;
}

#[tokio::test]
async fn pending_work_is_finished_when_the_store_comes_back_after_the_node_started() {
    let mut redis = RedisServer::start_durable();
    let config = test_config(Some(redis.url()));
    // What a node that crashed mid-burst leaves: a registration with a burst accepted and
    // not pushed.
    let store = herald_broker::node::build_store(&config).unwrap();
    let (registry, _) =
        registry_on(store.clone(), Arc::new(Ownership::every_shard(Epoch(0)))).await;
    let token = "cd".repeat(32);
    let created = registry
        .register(NewRegistration {
            device_token: token.clone(),
            platform: Some(herald_broker::domain::Platform::Apns),
            app_id: IOS_APP.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .record;
    let mut pending = created.clone();
    pending.state = RegState::Active;
    pending.progress.inbox_unread = Some(7);
    pending.progress.burst = Some(Burst {
        first_at: UnixMillis::now(),
        last_at: UnixMillis::now(),
        new_mail: 1,
        events: 2,
        more_events: false,
        announce: false,
    });
    let fence = Fence {
        shard: created.shard(),
        epoch: Epoch(0),
    };
    store.update(fence, &created, &pending).await.unwrap();

    // The next node starts while the store is down: its first look for pending work fails.
    redis.kill();
    let node = TestNode::start(&config).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    redis.restart();
    let pushed = eventually(Duration::from_secs(15), || async {
        node.pushes
            .sent()
            .into_iter()
            .find(|p| p.device_token == token)
    })
    .await;
    assert_eq!(pushed.badge, 7);
    let id = RegistrationId::parse("id", created.id.as_str()).unwrap();
    eventually(Duration::from_secs(5), || async {
        node.record(&id)
            .await
            .unwrap()
            .progress
            .burst
            .is_none()
            .then_some(())
    })
    .await;
    node.stop().await;
}

#[tokio::test]
async fn a_stopping_node_turns_unready_first_and_answers_metrics_until_its_bursts_are_flushed() {
    let redis = RedisServer::start();
    let pushes = herald_workers::RecordingSender::new();
    let gate = GatedSender::new(pushes.clone());
    let node = TestNode::with_sender(
        &test_config(Some(redis.url())),
        pushes,
        Arc::new(gate.clone()),
    )
    .await;
    let cast = Cast::register(&node, true).await;
    let alice = cast.get("alice");
    assert_eq!(
        soap(&node, &alice.path, &fixture("ews", BURST))
            .await
            .as_deref(),
        Some("OK")
    );
    eventually(Duration::from_secs(5), || async {
        (gate.arrived() == 1).then_some(())
    })
    .await;

    // The push is held: the node's drain waits for it.
    let admin = node.node.admin_addr;
    assert_eq!(gauge(&scrape(&node).await, "herald_ready"), 1.0);
    let gateway = node.gateway_addr();
    let stopping = tokio::spawn(node.node.shutdown(Duration::from_secs(10)));
    let (status, body) = eventually(Duration::from_secs(5), || async {
        let (status, body) = herald_broker::testsuite::http_get(admin, "/readyz").await;
        (status == 503).then_some((status, body))
    })
    .await;
    assert_eq!(status, 503);
    assert!(body.contains("shutting down"), "{body}");
    eventually(Duration::from_secs(5), || async {
        tokio::net::TcpStream::connect(gateway)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    let (status, metrics) = herald_broker::testsuite::http_get(admin, "/metrics").await;
    assert_eq!(
        status, 200,
        "the admin listener answers while the bursts flush"
    );
    assert_eq!(gauge(&metrics, "herald_ready"), 0.0, "{metrics}");
    assert!(!stopping.is_finished());

    gate.open();
    stopping.await.unwrap().unwrap();
    assert!(tokio::net::TcpStream::connect(admin).await.is_err());
}
