//! A node that serves two homes: its own region's and one whose copy in its region was
//! promoted (a Redis primary). Each home keeps its registrations in its own Redis, and
//! a node warns about copies that would keep writing when cut off from the other regions.
//! This binary owns the process's log subscriber.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use herald_broker::config::HomeCopyConfig;
use herald_broker::testsuite::{
    LogCapture, RedisServer, TestNode, authed, eventually, fixture, test_config,
};
use herald_proto::v1::{Platform, RegisterRequest};

#[tokio::test]
async fn a_node_serves_each_home_whose_copy_is_a_primary_from_that_copy() {
    let logs = LogCapture::install();
    let own = RedisServer::start();
    let promoted = RedisServer::start();
    let mut config = test_config(Some(own.url()));
    config.homes.insert(
        "eu-west-1".to_owned(),
        HomeCopyConfig {
            url: promoted.url(),
        },
    );
    let node = TestNode::start(&config).await;

    let client = node.client().await;
    let mut registered = Vec::new();
    for home in ["us-east-1", "eu-west-1"] {
        let registration = eventually(Duration::from_secs(10), || {
            let mut client = client.clone();
            async move {
                client
                    .register(authed(RegisterRequest {
                        device_token: "ab".repeat(32),
                        platform: Platform::Apns.into(),
                        app_id: "com.example.mail".into(),
                        home_region: home.to_owned(),
                        subscription_id: format!("{home}-subscription"),
                        ..Default::default()
                    }))
                    .await
                    .ok()
            }
        })
        .await
        .into_inner();
        assert_eq!(registration.home_region, home);
        registered.push(registration);
    }
    // Each registration is in its home's Redis only.
    for (registration, (server, other)) in registered
        .iter()
        .zip([(&own, &promoted), (&promoted, &own)])
    {
        let keys = |s: &RedisServer| -> Vec<String> {
            let mut conn = redis::Client::open(s.url())
                .unwrap()
                .get_connection()
                .unwrap();
            redis::cmd("KEYS")
                .arg(format!("*{}*", registration.registration_id))
                .query(&mut conn)
                .unwrap()
        };
        assert!(!keys(server).is_empty(), "in its home's Redis");
        assert!(keys(other).is_empty(), "not in the other home's");
    }
    // Exchange reaches both.
    let body = String::from_utf8(fixture("ews", "01-status-heartbeat.xml")).unwrap();
    let alice = herald_broker::testsuite::expected("ews")["registry"]["alice"]["subscription_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for registration in &registered {
        let path = herald_broker::testsuite::callback_path(&registration.callback_url);
        let body = body.replace(&alice, &registration.subscription_id);
        let answer = node.post_ews(&path, body.as_bytes()).await;
        assert_eq!(
            answer.soap_status().map(|(_, s)| s).as_deref(),
            Some("OK"),
            "{}",
            registration.home_region
        );
    }
    // Neither server refuses writes when cut off: the node says so, for each home.
    eventually(Duration::from_secs(10), || async {
        let text = logs.text();
        let warned: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("min-replicas-to-write is 0"))
            .collect();
        ["us-east-1", "eu-west-1"]
            .iter()
            .all(|home| warned.iter().any(|l| l.contains(home)))
            .then_some(())
    })
    .await;
    node.stop().await;
}
