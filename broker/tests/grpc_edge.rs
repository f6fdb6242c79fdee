//! The gRPC edge over real gRPC: a call is authenticated before its message is decoded (an
//! oversized message without a token is refused as unauthenticated, not read), messages
//! are held to explicit sizes, and each API token to its call rate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_broker::testsuite::{TestNode, authed, http_get, test_config};
use herald_proto::v1::{GetRegistrationRequest, Platform, RegisterRequest};
use tonic::Code;

fn oversized() -> RegisterRequest {
    RegisterRequest {
        device_token: "a".repeat(100 * 1024),
        platform: Platform::Apns.into(),
        app_id: "com.example.mail".into(),
        ..Default::default()
    }
}

async fn metrics(node: &TestNode) -> String {
    http_get(node.node.admin_addr, "/metrics").await.1
}

#[tokio::test]
async fn credentials_are_checked_before_a_message_is_decoded() {
    let node = TestNode::start(&test_config(None)).await;
    let mut client = node.client().await;
    let refused = client
        .register(tonic::Request::new(oversized()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    // With a token, the same message is refused for its size.
    let too_big = client.register(authed(oversized())).await.unwrap_err();
    assert_ne!(too_big.code(), Code::Unauthenticated);
    assert!(
        too_big.message().contains("message length too large"),
        "{too_big:?}"
    );
    let text = metrics(&node).await;
    assert!(
        text.contains(
            r#"herald_grpc_refused_total{service="registrations",reason="unauthenticated"} 1"#
        ),
        "{text}"
    );
    node.stop().await;
}

#[tokio::test]
async fn each_api_token_is_held_to_its_call_rate() {
    let mut config = test_config(None);
    config.auth.requests_per_second = 1;
    config.auth.burst = 3;
    let node = TestNode::start(&config).await;
    let mut client = node.client().await;
    let mut codes = Vec::new();
    for _ in 0..5 {
        let answer = client
            .get_registration(authed(GetRegistrationRequest {
                registration_id: "nope".into(),
            }))
            .await;
        codes.push(answer.map_or_else(|s| s.code(), |_| Code::Ok));
    }
    // The burst is decided (an invalid id); calls milliseconds apart then outrun 1/s.
    assert_eq!(codes[..3], [Code::InvalidArgument; 3]);
    assert!(codes[3..].contains(&Code::ResourceExhausted), "{codes:?}");
    let exhausted = codes
        .iter()
        .filter(|c| **c == Code::ResourceExhausted)
        .count();
    let text = metrics(&node).await;
    assert!(
        text.contains(&format!(
            r#"herald_grpc_refused_total{{service="registrations",reason="rate"}} {exhausted}"#
        )),
        "{text}"
    );
    // Health checks are not held to it, and need no token.
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", node.node.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    for _ in 0..5 {
        health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .unwrap();
    }
    node.stop().await;
}
