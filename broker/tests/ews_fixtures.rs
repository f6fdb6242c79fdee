//! Every EWS fixture POSTed over real HTTP to a node with the cast registered, against the
//! in-memory store and a real Redis: the status and SOAP answer of `expected.json`, and no
//! stored change for a refused request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_broker::testsuite::{Cast, RedisServer, TestNode, expected, fixture, test_config};
use herald_gateway::model::SoapVersion;
use serde_json::Value;

/// The alias whose URL a file is sent to: its first message's subscription; `None` for a
/// subscription nobody registered; alice for the hostile files.
fn target(entry: &Value) -> Option<String> {
    let parsed = &entry["parsed"]["messages"][0]["notification"]["subscription"];
    if let Some(alias) = parsed.as_str() {
        return Some(alias.to_owned());
    }
    match entry.get("subscription") {
        Some(Value::Null) => None,
        Some(alias) => alias.as_str().map(str::to_owned),
        None => Some("alice".to_owned()),
    }
}

async fn every_fixture_gets_its_expected_answer(node: &TestNode) {
    let mut checked = 0;
    for dir in ["ews", "ews-extra"] {
        let files = expected(dir)["files"].as_object().unwrap().clone();
        for (name, entry) in files {
            let Some(status) = entry["http_status"].as_u64() else {
                continue;
            };
            let cast = Cast::register(node, true).await;
            let path = match target(&entry) {
                Some(alias) => cast.get(&alias).path.clone(),
                None => "/ews/v1/us-east-1/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
            };
            let before: Vec<_> = stored_records(node, &cast).await;
            let content_type = if name.ends_with(".json") {
                "application/json"
            } else {
                "text/xml; charset=utf-8"
            };
            let body = fixture(dir, &name);
            let answer = herald_gateway::testsuite::post(
                node.gateway_addr(),
                &path,
                Some(content_type),
                &body,
            )
            .await;
            assert_eq!(
                u64::from(answer.status),
                status,
                "{dir}/{name}: {}",
                answer.text()
            );
            match entry["soap_status"].as_str() {
                Some(soap_status) => {
                    let version = if entry["soap"] == "1.2" {
                        SoapVersion::V12
                    } else {
                        SoapVersion::V11
                    };
                    assert_eq!(
                        answer.soap_status(),
                        Some((version, soap_status.to_owned())),
                        "{dir}/{name}"
                    );
                }
                None => assert!(answer.soap_status().is_none(), "{dir}/{name}"),
            }
            if status != 200 {
                assert_eq!(
                    stored_records(node, &cast).await,
                    before,
                    "{dir}/{name} changed stored state"
                );
            }
            cast.unregister(node).await;
            checked += 1;
        }
    }
    assert!(checked >= 35, "only {checked} fixtures were sent");
}

async fn stored_records(
    node: &TestNode,
    cast: &Cast,
) -> Vec<Option<herald_broker::domain::RegistrationRecord>> {
    let mut out = Vec::new();
    for member in cast.members.values() {
        out.push(node.record(&member.id()).await);
    }
    out
}

#[tokio::test]
async fn every_fixture_gets_its_expected_answer_in_memory() {
    let node = TestNode::start(&test_config(None)).await;
    every_fixture_gets_its_expected_answer(&node).await;
    node.stop().await;
}

#[tokio::test]
async fn every_fixture_gets_its_expected_answer_on_redis() {
    let redis = RedisServer::start();
    let node = TestNode::start(&test_config(Some(redis.url()))).await;
    every_fixture_gets_its_expected_answer(&node).await;
    node.stop().await;
}
