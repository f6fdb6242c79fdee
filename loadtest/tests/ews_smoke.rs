//! The EWS load runs end to end against a real node: registrations through gRPC, then
//! notifications through the gateway, every one answered OK and recorded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use herald_broker::testsuite::{API_TOKEN, RedisServer, TestNode, test_config};
use herald_loadtest::ews::{EwsLoad, Shape, run};
use herald_loadtest::targets::{anonymous_targets, register_targets};

#[tokio::test]
async fn ews_load_is_answered_ok_for_registered_targets_and_unsubscribe_for_others() {
    let redis = RedisServer::start();
    let node = TestNode::start(&test_config(Some(redis.url()))).await;
    let grpc = format!("http://{}", node.node.grpc_addr);
    let targets = register_targets(&grpc, API_TOKEN, "com.example.mail", 20, 8)
        .await
        .unwrap();
    assert_eq!(targets.len(), 20);
    let load = EwsLoad {
        gateway: node.gateway_addr(),
        targets,
        shape: Shape::Burst,
        count: 300,
        connections: 4,
        rate: None,
        max_duration: Duration::from_secs(60),
    };
    let (summary, answers) = run(load.clone()).await.unwrap();
    assert_eq!((summary.ok, summary.errors), (300, 0), "{answers}");
    assert_eq!(summary.latency.len(), 300);
    let counts = node.store.count_by_state().await.unwrap();
    assert_eq!((counts.active, counts.pending), (20, 0));

    // Tokens nobody minted are told to unsubscribe, and counted as not OK.
    let strangers = EwsLoad {
        targets: anonymous_targets(3),
        shape: Shape::Heartbeat,
        count: 6,
        ..load
    };
    let (summary, answers) = run(strangers).await.unwrap();
    assert_eq!((summary.ok, summary.errors), (0, 6));
    assert_eq!(
        answers
            .unsubscribe
            .load(std::sync::atomic::Ordering::Relaxed),
        6
    );
    node.stop().await;
}

#[tokio::test]
async fn compare_runs_the_same_load_against_the_baseline_and_the_node() {
    let redis = RedisServer::start();
    let node = TestNode::start(&test_config(Some(redis.url()))).await;
    let grpc = format!("http://{}", node.node.grpc_addr);
    let targets = register_targets(&grpc, API_TOKEN, "com.example.mail", 10, 4)
        .await
        .unwrap();
    let load = EwsLoad {
        gateway: node.gateway_addr(),
        targets: targets.clone(),
        shape: Shape::Burst,
        count: 200,
        connections: 4,
        rate: None,
        max_duration: Duration::from_secs(60),
    };
    let result = herald_loadtest::compare::run(load, node.gateway_addr(), targets)
        .await
        .unwrap();
    assert_eq!((result.baseline.ok, result.baseline.errors), (200, 0));
    assert_eq!((result.herald.ok, result.herald.errors), (200, 0));
    assert!(result.ratio() > 0.0);
    node.stop().await;
}

#[test]
fn the_baseline_parses_what_the_generator_sends_and_refuses_garbage() {
    let target = &anonymous_targets(1)[0];
    for shape in [Shape::Burst, Shape::Heartbeat] {
        let body = herald_loadtest::ews::notification(shape, target, 7);
        assert!(herald_loadtest::baseline::parses(body.as_bytes()));
    }
    assert!(!herald_loadtest::baseline::parses(b"<a><b></a>"));
}
