//! No device token and no callback token in any log line, at debug level, whatever happens
//! on the way to the provider: a connection dropped mid-request, a provider error, a retry,
//! a dead token — for APNs (whose URL ends in the device token) and FCM. This binary owns
//! the process's log subscriber.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use herald_broker::testsuite::{
    Cast, LogCapture, RedisServer, TestNode, eventually, fixture, test_config,
};
use herald_proto::v1::Platform;
use herald_workers::mock::{Fault, MockApnsOptions, Reply, TokenRule};

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn failures_on_the_way_to_the_provider_log_no_token() {
    let logs = LogCapture::install();

    let redis = RedisServer::start();
    let node =
        TestNode::with_providers(&test_config(Some(redis.url())), MockApnsOptions::default()).await;
    let ios = Cast::register(&node, true).await;
    let alice = ios.get("alice").clone();
    let apns_token = alice.registration.device_token.clone();
    let apns = node.mocks().apns.script();
    // A dropped connection (retried at once on a fresh one), then a server error (retried
    // after a back-off), then the push goes through.
    apns.for_token(TokenRule {
        token: apns_token.clone(),
        fault: Fault::Drop,
        times: Some(2),
    });
    node.post_ews(
        &alice.path,
        &fixture("ews", "03-burst-created-newmail-modified.xml"),
    )
    .await;
    eventually(Duration::from_secs(10), || async {
        node.mocks()
            .apns
            .pushes()
            .iter()
            .any(|p| p.device_token == apns_token)
            .then_some(())
    })
    .await;
    apns.for_token(TokenRule {
        token: apns_token.clone(),
        fault: Fault::Reply(Reply::new(500, "InternalServerError")),
        times: Some(1),
    });
    node.post_ews(&alice.path, &fixture("ews", "05-moreevents-page2.xml"))
        .await;
    node.flushed(&alice).await;

    // FCM: a dropped connection, then a dead token.
    let android = {
        // The same cast on Android phones: their subscription ids must be free.
        ios.unregister(&node).await;
        Cast::register_as(&node, true, Platform::Fcm).await
    };
    let bob = android.get("alice").clone();
    let fcm_token = bob.registration.device_token.clone();
    let fcm = node.mocks().fcm.script();
    fcm.for_token(TokenRule {
        token: fcm_token.clone(),
        fault: Fault::Drop,
        times: Some(1),
    });
    node.post_ews(
        &bob.path,
        &fixture("ews", "03-burst-created-newmail-modified.xml"),
    )
    .await;
    node.flushed(&bob).await;
    fcm.for_token(TokenRule {
        token: fcm_token.clone(),
        fault: Fault::Reply(Reply::new(404, "UNREGISTERED")),
        times: None,
    });
    node.post_ews(&bob.path, &fixture("ews", "05-moreevents-page2.xml"))
        .await;
    eventually(Duration::from_secs(10), || async {
        let record = node.record(&bob.id()).await.unwrap();
        (record.state == herald_broker::domain::RegState::Dead).then_some(())
    })
    .await;
    node.stop().await;

    // A provider that cannot be reached at all (nothing listens): every attempt fails before
    // an answer, with the device's URL in the client's error.
    let unreachable_token = "ef".repeat(32);
    let mut config = test_config(None);
    for app in &mut config.apps {
        if let herald_workers::AppConfig::Apns(apns) = app {
            apns.base_url = format!("https://127.0.0.1:{}", closed_port());
        }
    }
    let delivery = herald_workers::Delivery::new(
        &config.apps,
        &config.delivery,
        Arc::new(herald_workers::apns::InProcessShare::default()),
        herald_workers::DeliveryMetrics::default(),
    )
    .unwrap();
    let outcome = herald_workers::PushSender::send(
        &delivery,
        herald_workers::PushRequest {
            provider: herald_workers::Provider::Apns,
            app_id: herald_broker::testsuite::IOS_APP.into(),
            device_token: unreachable_token.clone(),
            badge: 1,
            new_mail: 1,
            collapse_id: "badge-x".into(),
            push_id: "00000000-0000-4000-8000-000000000000".into(),
            attempt: 0,
            send_before: None,
        },
    )
    .await;
    assert!(
        matches!(outcome, herald_workers::PushOutcome::RetryAfter(_)),
        "{outcome:?}"
    );

    let text = logs.text();
    for expected in ["push to be retried", "registration marked dead"] {
        assert!(
            text.contains(expected),
            "the scenario logged {expected:?}:\n{text}"
        );
    }
    assert!(
        text.contains("transport"),
        "a dropped connection was logged:\n{text}"
    );
    assert!(
        text.contains("connection refused") || text.contains("Connection refused"),
        "the unreachable provider was logged:\n{text}"
    );
    for (what, secret) in [
        ("APNs device token", apns_token.as_str()),
        ("FCM device token", fcm_token.as_str()),
        ("APNs device token", unreachable_token.as_str()),
    ] {
        assert!(!text.contains(secret), "a {what} was logged:\n{text}");
    }
    for member in [&alice, &bob] {
        let callback_token = member.path.rsplit('/').next().unwrap();
        assert!(
            !text.contains(callback_token),
            "a callback token was logged:\n{text}"
        );
    }
}
