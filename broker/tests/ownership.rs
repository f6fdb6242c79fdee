//! A node serves only the shards it holds: a shard it lets go answers 503 and UNAVAILABLE
//! (never `Unsubscribe`, never NOT_FOUND) until it holds the shard again, and then the work
//! left in the shard is taken up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use herald_broker::testsuite::{
    Cast, RedisServer, TestNode, authed, eventually, fixture, test_config,
};
use herald_cluster::{Epoch, ShardId};
use herald_proto::v1::{GetRegistrationRequest, UpdateDeviceTokenRequest};

#[tokio::test]
async fn a_shard_let_go_is_unavailable_until_it_is_held_again() {
    let redis = RedisServer::start();
    let node = TestNode::start(&test_config(Some(redis.url()))).await;
    let cast = Cast::register(&node, true).await;
    let alice = cast.get("alice");
    let shard = ShardId::of_device_token(&alice.registration.device_token);
    let heartbeat = fixture("ews", "01-status-heartbeat.xml");
    let answer = node.post_ews(&alice.path, &heartbeat).await;
    assert_eq!(answer.soap_status().unwrap().1, "OK");

    node.node.ownership.drop_shard(shard);
    let refused = eventually(Duration::from_secs(5), || async {
        let answer = node.post_ews(&alice.path, &heartbeat).await;
        (answer.status == 503).then_some(answer)
    })
    .await;
    assert!(refused.soap_status().is_none(), "{}", refused.text());
    let mut client = node.client().await;
    let status = client
        .update_device_token(authed(UpdateDeviceTokenRequest {
            registration_id: alice.registration.registration_id.clone(),
            device_token: "ab".repeat(32),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    // Reads are not the owner's to answer: they come from the store.
    client
        .get_registration(authed(GetRegistrationRequest {
            registration_id: alice.registration.registration_id.clone(),
        }))
        .await
        .unwrap();
    // Another shard is served all along.
    let bob = cast.get("bob");
    assert_ne!(
        ShardId::of_device_token(&bob.registration.device_token),
        shard
    );
    let bobs = fixture("ews", "02-newmail-single.xml");
    let answer = node.post_ews(&bob.path, &bobs).await;
    assert_eq!(answer.soap_status().unwrap().1, "OK");

    // Held again: served again, and a burst accepted before is still flushed.
    node.node.ownership.acquire(shard, Epoch(0));
    eventually(Duration::from_secs(5), || async {
        let answer = node.post_ews(&alice.path, &heartbeat).await;
        (answer.status == 200).then_some(())
    })
    .await;
    let burst = fixture("ews", "03-burst-created-newmail-modified.xml");
    let answer = node.post_ews(&alice.path, &burst).await;
    assert_eq!(answer.soap_status().unwrap().1, "OK");
    node.flushed(alice).await;
    assert!(
        node.pushes
            .sent()
            .iter()
            .any(|p| p.device_token == alice.registration.device_token && p.badge == 4)
    );
    node.stop().await;
}
