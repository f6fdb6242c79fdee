//! The register load runs end to end against a real node over gRPC.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use herald_broker::testsuite::{API_TOKEN, RedisServer, TestNode, test_config};
use herald_loadtest::register::{RegisterLoad, run};

#[tokio::test]
async fn register_load_creates_every_registration_it_reports() {
    let redis = RedisServer::start();
    let node = TestNode::start(&test_config(Some(redis.url()))).await;
    let load = RegisterLoad {
        endpoint: format!("http://{}", node.node.grpc_addr),
        token: API_TOKEN.into(),
        apns_app: "com.example.mail".into(),
        count: 200,
        concurrency: 8,
        rate: None,
        connections: 2,
        max_duration: Duration::from_secs(60),
    };
    let summary = run(load.clone()).await.unwrap();
    assert_eq!((summary.ok, summary.errors), (200, 0));
    assert_eq!(summary.latency.len(), 200);
    let counts = node.store.count_by_state().await.unwrap();
    assert_eq!(counts.pending, 200);

    let wrong_token = run(RegisterLoad {
        token: "wrong".into(),
        count: 5,
        ..load
    })
    .await
    .unwrap();
    assert_eq!((wrong_token.ok, wrong_token.errors), (0, 5));
    node.stop().await;
}
