//! The smoke scenario end to end: a node on a real Redis pushing to the mock APNs and FCM
//! over TLS, the fleet registered through gRPC, Exchange played over HTTP — and every badge
//! checked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use herald_broker::api::ApiTokens;
use herald_broker::node::{RunningNode, build_store};
use herald_broker::testsuite::{API_TOKEN, RedisServer, test_config};
use herald_loadtest::run::{PushSink, RunOptions, run};
use herald_loadtest::scenario::Scenario;
use herald_workers::mock::{MockApnsOptions, MockFcmOptions, MockProviders};

#[tokio::test]
async fn the_smoke_scenario_delivers_every_badge_right() {
    let scenario = Scenario::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/smoke.toml"),
    )
    .unwrap();
    let files = tempfile::tempdir().unwrap();
    let mocks = Arc::new(
        MockProviders::start(
            files.path(),
            MockApnsOptions::default(),
            MockFcmOptions::default(),
        )
        .await
        .unwrap(),
    );
    let redis = RedisServer::start();
    let mut config = test_config(Some(redis.url()));
    config.apps = mocks
        .apps(&scenario.apps(false), &scenario.apps(true), "example-mail")
        .unwrap();
    let store = build_store(&config).unwrap();
    let node = RunningNode::start(&config, store, ApiTokens::new([API_TOKEN]))
        .await
        .unwrap();
    let options = RunOptions {
        scenario: scenario.clone(),
        gateways: vec![node.gateway_addr],
        grpc: format!("http://{}", node.grpc_addr),
        token: API_TOKEN.into(),
        connections: 8,
        seed: 7,
        max_duration: Duration::from_secs(60),
        pushes: PushSink::InProcess(mocks.clone()),
    };
    let mut out = Vec::new();
    let report = run(options, &mut out).await.unwrap();
    let printed = String::from_utf8_lossy(&out);
    println!("{printed}{report}");
    assert!(report.correctness.passed, "{report}\n{printed}");
    assert_eq!(report.notifications_sent, report.answers.ok, "{report}");
    assert!(
        report.notifications_sent >= scenario.notifications(),
        "{report}"
    );
    assert!(
        report.correctness.devices_checked > 0 && report.pushes > 0,
        "{report}"
    );
    assert!(
        report.ios_event_to_push.count > 0 && report.android_event_to_push.count > 0,
        "{report}"
    );
    // The warm-up's answers are reported apart: the rest are a strict part of all.
    let after = report
        .answer_latency_after_warmup
        .as_ref()
        .expect("the smoke scenario has a warm-up");
    assert!(
        after.count > 0 && after.count < report.answer_latency.count,
        "{report}"
    );
    assert!(printed.contains("registering ["), "{printed}");
    assert!(
        printed.lines().any(|l| l.starts_with("t=")),
        "a live line per second: {printed}"
    );
    let dir = tempfile::tempdir().unwrap();
    report.write(dir.path()).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(json["correctness"]["passed"], true);
    let svg = std::fs::read_to_string(dir.path().join("report.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<polyline"));
    node.shutdown(Duration::from_secs(5)).await.unwrap();
}
