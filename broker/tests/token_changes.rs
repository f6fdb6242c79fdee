//! A device token change while the registration's actor is live, on a real Redis: the
//! conversation with Exchange goes on (never `Unsubscribe`), the device listings follow the
//! token, the next push goes to the new token with the latest badge, and a push outcome for
//! the old token changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use herald_broker::testsuite::{
    Cast, GatedSender, Member, RedisServer, TestNode, authed, eventually, fixture, test_config,
};
use herald_cluster::ShardId;
use herald_proto::v1::{
    GetRegistrationRequest, ListDeviceRegistrationsRequest, Registration, State, UnregisterRequest,
    UpdateDeviceTokenRequest,
};
use herald_workers::{PushOutcome, PushSender, RecordingSender};

/// An APNs token whose shard is `in_shard(shard)`.
fn token_where(mut wanted: impl FnMut(ShardId) -> bool) -> String {
    (0u64..)
        .map(|n| format!("{n:064x}"))
        .find(|token| wanted(ShardId::of_device_token(token)))
        .unwrap()
}

async fn node_with(
    sender: Arc<dyn PushSender>,
    pushes: RecordingSender,
) -> (RedisServer, TestNode) {
    let redis = RedisServer::start();
    let node = TestNode::with_sender(&test_config(Some(redis.url())), pushes, sender).await;
    (redis, node)
}

async fn node() -> (RedisServer, TestNode) {
    let pushes = RecordingSender::new();
    node_with(Arc::new(pushes.clone()), pushes).await
}

async fn post(node: &TestNode, member: &Member, name: &str) -> Option<String> {
    let answer = node.post_ews(&member.path, &fixture("ews", name)).await;
    answer.soap_status().map(|(_, status)| status)
}

async fn change_token(node: &TestNode, member: &Member, token: &str) -> Registration {
    node.client()
        .await
        .update_device_token(authed(UpdateDeviceTokenRequest {
            registration_id: member.registration.registration_id.clone(),
            device_token: token.to_owned(),
        }))
        .await
        .unwrap()
        .into_inner()
}

async fn listed(node: &TestNode, token: &str) -> Vec<String> {
    node.client()
        .await
        .list_device_registrations(authed(ListDeviceRegistrationsRequest {
            device_token: token.to_owned(),
        }))
        .await
        .unwrap()
        .into_inner()
        .registrations
        .into_iter()
        .map(|r| r.registration_id)
        .collect()
}

async fn get(node: &TestNode, member: &Member) -> Registration {
    node.client()
        .await
        .get_registration(authed(GetRegistrationRequest {
            registration_id: member.registration.registration_id.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
}

/// The badges pushed to `token` so far, once `count` of them have been.
async fn badges(pushes: &RecordingSender, token: &str, count: usize) -> Vec<u32> {
    eventually(Duration::from_secs(5), || async {
        let badges: Vec<u32> = pushes
            .sent()
            .iter()
            .filter(|p| p.device_token == token)
            .map(|p| p.badge)
            .collect();
        (badges.len() >= count).then_some(badges)
    })
    .await
}

/// The scenario of the issue, for a new token of the same shard or of another one.
async fn a_token_change_keeps_the_conversation(same_shard: bool) {
    let (_redis, node) = node().await;
    let cast = Cast::register(&node, true).await;
    let alice = cast.get("alice");
    let old = alice.registration.device_token.clone();
    let shard = ShardId::of_device_token(&old);
    let new = token_where(|s| (s == shard) == same_shard);

    assert_eq!(
        post(&node, alice, "01-status-heartbeat.xml")
            .await
            .as_deref(),
        Some("OK")
    );
    let burst = "03-burst-created-newmail-modified.xml";
    assert_eq!(post(&node, alice, burst).await.as_deref(), Some("OK"));
    assert_eq!(badges(&node.pushes, &old, 1).await, vec![4]);

    // The actor is live (it just pushed): change the token under it.
    assert!(node.node.subscriptions.live_record(&alice.id()).is_some());
    let changed = change_token(&node, alice, &new).await;
    assert_eq!(changed.device_token, new);
    assert_eq!(changed.state, State::Active as i32);

    // Exchange's redelivery of the last burst is still recognised (same dedupe keys), and
    // the conversation goes on: OK, never Unsubscribe.
    assert_eq!(post(&node, alice, burst).await.as_deref(), Some("OK"));
    for next in ["04-moreevents-page1.xml", "05-moreevents-page2.xml"] {
        assert_eq!(
            post(&node, alice, next).await.as_deref(),
            Some("OK"),
            "{next}"
        );
    }
    node.flushed(alice).await;
    let shown = get(&node, alice).await;
    assert_eq!(
        (shown.device_token.as_str(), shown.state),
        (new.as_str(), State::Active as i32)
    );
    // The new device got the badge it had (at once), then the latest one; the old device
    // got nothing more.
    let to_new = badges(&node.pushes, &new, 1).await;
    assert_eq!(to_new.last(), Some(&6), "{to_new:?}");
    assert!(to_new.iter().all(|b| [4, 6].contains(b)), "{to_new:?}");
    assert_eq!(badges(&node.pushes, &old, 1).await, vec![4]);

    // The listings follow the token.
    assert!(listed(&node, &old).await.is_empty());
    assert_eq!(
        listed(&node, &new).await,
        vec![alice.registration.registration_id.clone()]
    );
    let store_copy = node.record(&alice.id()).await.unwrap();
    assert_eq!(store_copy.device_token.as_str(), new);
    assert!(store_copy.moving_to.is_none());
    node.stop().await;
}

#[tokio::test]
async fn a_token_change_to_another_shard_keeps_the_conversation() {
    a_token_change_keeps_the_conversation(false).await;
}

#[tokio::test]
async fn a_token_change_within_the_shard_keeps_the_conversation() {
    a_token_change_keeps_the_conversation(true).await;
}

/// A push to the old token whose outcome comes back after the change: `TokenDead` does not
/// kill the registration, `Delivered` does not spare the new device its badge.
async fn an_outcome_for_the_old_token_changes_nothing(same_shard: bool, outcome: PushOutcome) {
    let pushes = RecordingSender::new();
    let gate = GatedSender::new(pushes.clone());
    let (_redis, node) = node_with(Arc::new(gate.clone()), pushes.clone()).await;
    let cast = Cast::register(&node, true).await;
    let alice = cast.get("alice");
    let old = alice.registration.device_token.clone();
    let shard = ShardId::of_device_token(&old);
    let new = token_where(|s| (s == shard) == same_shard);
    pushes.script(&old, outcome);

    let burst = "03-burst-created-newmail-modified.xml";
    assert_eq!(post(&node, alice, burst).await.as_deref(), Some("OK"));
    // The push to the old token is on its way (held at the gate) when the token changes.
    eventually(Duration::from_secs(5), || async {
        (gate.arrived() == 1).then_some(())
    })
    .await;
    change_token(&node, alice, &new).await;
    gate.open();

    let to_new = badges(&pushes, &new, 1).await;
    assert_eq!(to_new, vec![4], "the new device hears the badge");
    node.flushed(alice).await;
    let shown = get(&node, alice).await;
    assert_eq!(shown.state, State::Active as i32, "{shown:?}");
    assert_eq!(shown.device_token, new);
    assert_eq!(
        post(&node, alice, "04-moreevents-page1.xml")
            .await
            .as_deref(),
        Some("OK")
    );
    node.stop().await;
}

fn dead() -> PushOutcome {
    PushOutcome::TokenDead {
        reason: "apns 410 Unregistered".into(),
        since_ms: None,
    }
}

#[tokio::test]
async fn a_dead_old_token_does_not_kill_a_registration_moved_to_another_shard() {
    an_outcome_for_the_old_token_changes_nothing(false, dead()).await;
}

#[tokio::test]
async fn a_dead_old_token_does_not_kill_a_registration_with_a_new_token_of_its_shard() {
    an_outcome_for_the_old_token_changes_nothing(true, dead()).await;
}

#[tokio::test]
async fn a_delivery_to_the_old_token_does_not_spare_the_new_device_its_badge() {
    an_outcome_for_the_old_token_changes_nothing(true, PushOutcome::Delivered).await;
}

/// Unregister racing a token change either removes the registration or fails: never OK
/// with the registration still alive.
#[tokio::test]
async fn unregister_racing_a_token_change_never_answers_ok_and_leaves_it_alive() {
    let (_redis, node) = node().await;
    let cast = Cast::register(&node, true).await;
    for member in cast.members.values() {
        let shard = ShardId::of_device_token(&member.registration.device_token);
        let new = token_where(|s| s != shard);
        let id = member.registration.registration_id.clone();
        let (mut a, mut b) = (node.client().await, node.client().await);
        let unregister = b.unregister(authed(UnregisterRequest {
            registration_id: id.clone(),
        }));
        let update = a.update_device_token(authed(UpdateDeviceTokenRequest {
            registration_id: id.clone(),
            device_token: new,
        }));
        let (unregistered, _) = tokio::join!(unregister, update);
        let after = node
            .client()
            .await
            .get_registration(authed(GetRegistrationRequest {
                registration_id: id.clone(),
            }))
            .await;
        match (unregistered, after) {
            (Ok(_), Err(status)) => assert_eq!(status.code(), tonic::Code::NotFound),
            (Ok(_), Ok(alive)) => panic!("unregister answered OK and left {alive:?}"),
            // Refused while the move was under way: the registration is there, whole.
            (Err(status), Ok(alive)) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                assert_eq!(alive.into_inner().state, State::Pending as i32);
            }
            (Err(status), Err(after)) => panic!("{status:?}, then {after:?}"),
        }
        if node.record(&member.id()).await.is_none() {
            assert_eq!(
                post(&node, member, "01-status-heartbeat.xml")
                    .await
                    .as_deref(),
                Some("Unsubscribe")
            );
        }
    }
    node.stop().await;
}
