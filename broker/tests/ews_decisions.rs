//! The decision table of the protocol note (§7.3) through a node's real gateway and store:
//! what each situation answers and what it leaves in the store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_broker::domain::RegState;
use herald_broker::testsuite::{Cast, RedisServer, TestNode, fixture, test_config};
use herald_gateway::model::SoapVersion;
use herald_gateway::testsuite::RawResponse;

const HEARTBEAT: &str = "01-status-heartbeat.xml";
const ALICE_LAST_WATERMARK: &str = "AQAAAJ6Xmtv4ya7Fg7VYBjxa5QEsCx0AAAAAAAE=";

fn soap(answer: &RawResponse) -> Option<String> {
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.soap_status().map(|(v, s)| {
        assert_eq!(v, SoapVersion::V11);
        s
    })
}

async fn post(node: &TestNode, path: &str, dir: &str, name: &str) -> RawResponse {
    node.post_ews(path, &fixture(dir, name)).await
}

/// Runs a scenario on a node backed by a real Redis.
macro_rules! on_redis {
    ($($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $scenario() {
                herald_broker::testsuite::LogCapture::install();
                let redis = RedisServer::start();
                let node = TestNode::start(&test_config(Some(redis.url()))).await;
                super_scenarios::$scenario(&node).await;
                node.stop().await;
            }
        )*
    };
}

on_redis!(
    a_heartbeat_activates_and_records_the_watermark,
    a_pending_registration_binds_its_subscription_on_first_sight,
    an_error_message_marks_the_registration_dead_and_unsubscribes,
    unknown_and_unwanted_callbacks_are_unsubscribed_without_side_effects,
    a_subscription_bound_elsewhere_is_forbidden,
    several_messages_in_one_post_answer_ok_if_one_is_wanted,
    a_home_region_not_served_here_is_unavailable,
    duplicates_and_gaps_are_answered_ok,
    silent_registrations_turn_stale_and_recover_on_the_next_notification,
    callback_tokens_never_reach_the_logs,
);

mod super_scenarios {
    use super::*;

    pub(super) async fn a_heartbeat_activates_and_records_the_watermark(node: &TestNode) {
        let cast = Cast::register(node, true).await;
        let alice = cast.get("alice");
        assert_eq!(
            node.record(&alice.id()).await.unwrap().state,
            RegState::Pending
        );
        assert_eq!(
            soap(&post(node, &alice.path, "ews", HEARTBEAT).await).as_deref(),
            Some("OK")
        );
        let record = node.record(&alice.id()).await.unwrap();
        assert_eq!(record.state, RegState::Active);
        assert_eq!(record.last_watermark.as_deref(), Some(ALICE_LAST_WATERMARK));
        assert!(record.last_notification_at.is_some());
        // Visible through the API too.
        let fetched = node
            .client()
            .await
            .get_registration(herald_broker::testsuite::authed(
                herald_proto::v1::GetRegistrationRequest {
                    registration_id: alice.registration.registration_id.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(fetched.state, herald_proto::v1::State::Active as i32);
        assert!(fetched.last_notification_at.is_some());
    }

    pub(super) async fn a_pending_registration_binds_its_subscription_on_first_sight(
        node: &TestNode,
    ) {
        let cast = Cast::register(node, false).await;
        let (alice, bob) = (cast.get("alice"), cast.get("bob"));
        assert!(
            node.record(&alice.id())
                .await
                .unwrap()
                .subscription_id
                .is_none()
        );
        let burst = "03-burst-created-newmail-modified.xml";
        assert_eq!(
            soap(&post(node, &alice.path, "ews", burst).await).as_deref(),
            Some("OK")
        );
        let record = node.record(&alice.id()).await.unwrap();
        assert_eq!(
            record.subscription_id.as_ref().map(|s| s.as_str()),
            Some(alice.subscription_id.as_str())
        );
        assert_eq!(record.state, RegState::Active);
        // Now bound to alice: the same body on bob's (pending) URL is a forgery.
        let before = node.record(&bob.id()).await;
        let answer = post(node, &bob.path, "ews", burst).await;
        assert_eq!(answer.status, 403);
        assert_eq!(node.record(&bob.id()).await, before, "bob is untouched");
        // Alice's registration is not rebound by a second subscription on its URL.
        let other = post(
            node,
            &alice.path,
            "ews-extra",
            "19-unknown-subscription.xml",
        )
        .await;
        assert_eq!(soap(&other).as_deref(), Some("Unsubscribe"));
        let after = node.record(&alice.id()).await.unwrap();
        assert_eq!(after.subscription_id, record.subscription_id);
        assert_eq!(
            after.version, record.version,
            "no write for an unwanted subscription"
        );
    }

    pub(super) async fn an_error_message_marks_the_registration_dead_and_unsubscribes(
        node: &TestNode,
    ) {
        let cast = Cast::register(node, true).await;
        let alice = cast.get("alice");
        let answer = post(
            node,
            &alice.path,
            "ews-extra",
            "11-error-readeventsfailed.xml",
        )
        .await;
        assert_eq!(soap(&answer).as_deref(), Some("Unsubscribe"));
        let record = node.record(&alice.id()).await.unwrap();
        assert_eq!(record.state, RegState::Dead);
        assert!(
            record
                .dead_reason
                .as_deref()
                .unwrap_or_default()
                .contains("ErrorReadEventsFailed"),
            "{record:?}"
        );
        // A POST already in flight, or any later one, is answered Unsubscribe again.
        assert_eq!(
            soap(&post(node, &alice.path, "ews", HEARTBEAT).await).as_deref(),
            Some("Unsubscribe")
        );
        assert_eq!(
            node.record(&alice.id()).await.unwrap().version,
            record.version
        );
    }

    pub(super) async fn unknown_and_unwanted_callbacks_are_unsubscribed_without_side_effects(
        node: &TestNode,
    ) {
        let cast = Cast::register(node, true).await;
        let alice = cast.get("alice");
        let token = alice.path.rsplit('/').next().unwrap().to_owned();
        let mut wrong_secret = token.clone();
        let last = wrong_secret.pop().unwrap();
        wrong_secret.push(if last == 'A' { 'B' } else { 'A' });
        let paths = [
            // Never minted.
            "/ews/v1/us-east-1/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
            "/ews/v1/us-east-1/short".to_owned(),
            // Alice's id with the wrong secret.
            format!("/ews/v1/us-east-1/{wrong_secret}"),
        ];
        let before = node.record(&alice.id()).await;
        for path in &paths {
            assert_eq!(
                soap(&post(node, path, "ews", HEARTBEAT).await).as_deref(),
                Some("Unsubscribe"),
                "{path}"
            );
        }
        // A subscription id Herald could never store is not this URL's subscription.
        let heartbeat = String::from_utf8(fixture("ews", HEARTBEAT)).unwrap();
        let odd = heartbeat.replace(&alice.subscription_id, "not storable \u{e9}");
        let answer = node.post_ews(&alice.path, odd.as_bytes()).await;
        assert_eq!(soap(&answer).as_deref(), Some("Unsubscribe"));
        assert_eq!(node.record(&alice.id()).await, before);
        // Unregistered — even while its actor is live: its URL is answered Unsubscribe.
        let bob = cast.get("bob").clone();
        let answer = post(node, &bob.path, "ews", "02-newmail-single.xml").await;
        assert_eq!(soap(&answer).as_deref(), Some("OK"));
        cast.unregister(node).await;
        let answer = post(node, &bob.path, "ews", "02-newmail-single.xml").await;
        assert_eq!(soap(&answer).as_deref(), Some("Unsubscribe"));
        assert!(node.record(&bob.id()).await.is_none());
    }

    pub(super) async fn a_subscription_bound_elsewhere_is_forbidden(node: &TestNode) {
        let cast = Cast::register(node, true).await;
        let (alice, bob) = (cast.get("alice"), cast.get("bob"));
        let before = (node.record(&alice.id()).await, node.record(&bob.id()).await);
        // Alice's heartbeat on bob's URL; alice's error message on bob's URL.
        assert_eq!(post(node, &bob.path, "ews", HEARTBEAT).await.status, 403);
        assert_eq!(
            post(
                node,
                &bob.path,
                "ews-extra",
                "11-error-readeventsfailed.xml"
            )
            .await
            .status,
            403
        );
        let after = (node.record(&alice.id()).await, node.record(&bob.id()).await);
        assert_eq!(after, before, "a forged request changes nothing");
        let metrics = herald_broker::testsuite::http_get(node.node.admin_addr, "/metrics")
            .await
            .1;
        assert!(
            metrics.contains(r#"herald_gateway_requests_total{status="403",answer="none"} 2"#),
            "{metrics}"
        );
    }

    pub(super) async fn several_messages_in_one_post_answer_ok_if_one_is_wanted(node: &TestNode) {
        let cast = Cast::register(node, true).await;
        let (bob, dave) = (cast.get("bob"), cast.get("dave"));
        let dave_before = node.record(&dave.id()).await;
        let answer = post(node, &bob.path, "ews", "06-two-response-messages.xml").await;
        assert_eq!(soap(&answer).as_deref(), Some("OK"));
        let record = node.record(&bob.id()).await.unwrap();
        assert_eq!(record.state, RegState::Active);
        assert_eq!(
            record.last_watermark.as_deref(),
            Some("AQAAAHeWg48KsKEnWQI6UYApmX+jBwAAAAAAAAE=")
        );
        // Dave's message rode on bob's URL: bob's URL is no credential for dave.
        assert_eq!(node.record(&dave.id()).await, dave_before);
    }

    pub(super) async fn duplicates_and_gaps_are_answered_ok(node: &TestNode) {
        let cast = Cast::register(node, true).await;
        let alice = cast.get("alice");
        let burst = "03-burst-created-newmail-modified.xml";
        // Exchange's retry of a notification already recorded: OK again.
        for _ in 0..2 {
            assert_eq!(
                soap(&post(node, &alice.path, "ews", burst).await).as_deref(),
                Some("OK")
            );
        }
        let after_burst = node.record(&alice.id()).await.unwrap();
        assert_eq!(
            after_burst.last_watermark.as_deref(),
            Some("AQAAAJ6Xmtv4ya7Fg7VYBjxa5QEvCx0AAAAAAAE=")
        );
        // 05 follows 04, which never arrived: a gap is still OK, and its watermark is kept.
        let page2 = "05-moreevents-page2.xml";
        assert_eq!(
            soap(&post(node, &alice.path, "ews", page2).await).as_deref(),
            Some("OK")
        );
        let after_gap = node.record(&alice.id()).await.unwrap();
        assert_ne!(after_gap.last_watermark, after_burst.last_watermark);
        assert_eq!(after_gap.state, RegState::Active);
    }

    pub(super) async fn silent_registrations_turn_stale_and_recover_on_the_next_notification(
        node: &TestNode,
    ) {
        use herald_broker::domain::UnixMillis;
        let cast = Cast::register(node, true).await;
        let (alice, bob) = (cast.get("alice"), cast.get("bob"));
        assert_eq!(
            soap(&post(node, &alice.path, "ews", HEARTBEAT).await).as_deref(),
            Some("OK")
        );
        let router = &node.node.router;
        // Nobody is silent for an hour yet.
        let an_hour_ago = UnixMillis(UnixMillis::now().0 - 3_600_000);
        let marked = herald_broker::liveness::sweep(node.store.as_ref(), router, an_hour_ago)
            .await
            .unwrap();
        assert_eq!(marked, 0);
        // Everything is silent since a minute from now: the four pending or active ones.
        let later = UnixMillis(UnixMillis::now().0 + 60_000);
        let marked = herald_broker::liveness::sweep(node.store.as_ref(), router, later)
            .await
            .unwrap();
        assert_eq!(marked, 4);
        assert_eq!(
            node.record(&alice.id()).await.unwrap().state,
            RegState::Stale
        );
        assert_eq!(node.record(&bob.id()).await.unwrap().state, RegState::Stale);
        let counts = node.store.count_by_state().await.unwrap();
        assert_eq!((counts.stale, counts.active, counts.pending), (4, 0, 0));
        // A stale registration is still wanted: its next notification revives it.
        let burst = "03-burst-created-newmail-modified.xml";
        assert_eq!(
            soap(&post(node, &alice.path, "ews", burst).await).as_deref(),
            Some("OK")
        );
        assert_eq!(
            node.record(&alice.id()).await.unwrap().state,
            RegState::Active
        );
        // Stale ones are not swept again.
        let marked = herald_broker::liveness::sweep(node.store.as_ref(), router, later)
            .await
            .unwrap();
        assert_eq!(marked, 1, "only alice, active again, is silent again");
    }

    pub(super) async fn a_home_region_not_served_here_is_unavailable(node: &TestNode) {
        let cast = Cast::register(node, true).await;
        let token = cast
            .get("alice")
            .path
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned();
        // An unknown region, and a configured one whose Redis this node has no copy of.
        for home in ["mars-1", "eu-west-1"] {
            let answer = post(node, &format!("/ews/v1/{home}/{token}"), "ews", HEARTBEAT).await;
            assert_eq!(answer.status, 503, "{home}");
            assert!(
                answer.soap_status().is_none(),
                "never Unsubscribe for data we cannot reach"
            );
        }
    }

    pub(super) async fn callback_tokens_never_reach_the_logs(node: &TestNode) {
        let cast = Cast::register(node, false).await;
        let alice = cast.get("alice");
        let bob = cast.get("bob");
        post(
            node,
            &alice.path,
            "ews",
            "03-burst-created-newmail-modified.xml",
        )
        .await;
        post(node, &bob.path, "ews", HEARTBEAT).await;
        post(node, &alice.path, "ews", "m05-billion-laughs.xml").await;
        post(
            node,
            &alice.path,
            "ews-extra",
            "11-error-readeventsfailed.xml",
        )
        .await;
        let logs = herald_broker::testsuite::LogCapture::install().text();
        assert!(
            logs.contains("registration marked dead"),
            "the scenario logged: {logs}"
        );
        for member in cast.members.values() {
            let token = member.path.rsplit('/').next().unwrap();
            assert!(!logs.contains(token), "a callback token was logged");
        }
    }
}

#[tokio::test]
async fn redis_down_answers_503_never_unsubscribe() {
    let mut redis = RedisServer::start();
    let node = TestNode::start(&test_config(Some(redis.url()))).await;
    let cast = Cast::register(&node, true).await;
    let alice = cast.get("alice").clone();
    redis.kill();
    let answer = post(&node, &alice.path, "ews", HEARTBEAT).await;
    assert_eq!(answer.status, 503, "{}", answer.text());
    assert!(answer.soap_status().is_none());
    let metrics = herald_broker::testsuite::http_get(node.node.admin_addr, "/metrics")
        .await
        .1;
    assert!(
        metrics.contains(r#"herald_store_errors_total{operation="ews_notification"}"#),
        "{metrics}"
    );
    node.stop().await;
}
