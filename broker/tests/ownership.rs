//! A node serves only the shards whose leases it holds: a shard whose lease another holder
//! took answers 503 and UNAVAILABLE (never `Unsubscribe`, never NOT_FOUND) until the node
//! holds the lease again, and then the work left in the shard is taken up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use herald_broker::testsuite::{
    Cast, RedisServer, TestNode, authed, eventually, fixture, test_config,
};
use herald_cluster::{Epoch, ShardId};
use herald_proto::v1::{GetRegistrationRequest, UpdateDeviceTokenRequest};

/// Another holder takes `shard`'s lease in Redis at a larger epoch, as a node that took over
/// while this one was paused would have.
async fn take_lease(redis: &RedisServer, shard: ShardId) {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let n = shard.number();
    let () = redis::pipe()
        .set(format!("herald:{{s{n}}}:lease"), "intruder/1 999")
        .set(format!("herald:{{s{n}}}:epoch"), 999)
        .query_async(&mut conn)
        .await
        .unwrap();
}

async fn free_lease(redis: &RedisServer, shard: ShardId) {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("DEL")
        .arg(format!("herald:{{s{}}}:lease", shard.number()))
        .query_async(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_shard_whose_lease_is_taken_is_unavailable_until_its_lease_is_held_again() {
    let redis = RedisServer::start();
    let node = TestNode::start(&test_config(Some(redis.url()))).await;
    let cast = Cast::register(&node, true).await;
    let alice = cast.get("alice");
    let shard = ShardId::of_device_token(&alice.registration.device_token);
    let heartbeat = fixture("ews", "01-status-heartbeat.xml");
    let answer = node.post_ews(&alice.path, &heartbeat).await;
    assert_eq!(answer.soap_status().unwrap().1, "OK");

    take_lease(&redis, shard).await;
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

    eventually(Duration::from_secs(5), || async {
        node.node.ownership.epoch(shard).is_none().then_some(())
    })
    .await;

    // The lease free again: the node takes it (at a larger epoch), serves the shard again,
    // and a burst accepted before is still flushed.
    free_lease(&redis, shard).await;
    eventually(Duration::from_secs(5), || async {
        let answer = node.post_ews(&alice.path, &heartbeat).await;
        (answer.status == 200).then_some(())
    })
    .await;
    assert!(node.node.ownership.epoch(shard).unwrap() > Epoch(999));
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

#[tokio::test]
async fn the_last_node_is_not_drained_and_peer_calls_open_only_with_the_peer_secret_for_this_node()
{
    use herald_proto::v1::admin_client::AdminClient;
    use herald_proto::v1::peer_client::PeerClient;
    use herald_proto::v1::{DrainNodeRequest, ForwardCommandRequest, forward_command_request};

    let redis = RedisServer::start();
    let config = test_config(Some(redis.url()));
    let node = TestNode::start(&config).await;
    let endpoint = format!("http://{}", node.node.grpc_addr);

    // Draining the only node would leave every shard unserved: refused.
    let mut admin = AdminClient::connect(endpoint.clone()).await.unwrap();
    let refused = admin
        .drain_node(authed(DrainNodeRequest {
            node_id: config.node.id.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert_eq!(node.node.ownership.count(), 1024);

    let mut peer = PeerClient::connect(endpoint).await.unwrap();
    let call = |authorization: &str, target: &str| {
        let mut request = tonic::Request::new(ForwardCommandRequest {
            shard: 3,
            registration_id: "00000000000000000000000000000003".into(),
            command: Some(forward_command_request::Command::Unregister(
                forward_command_request::Unregister {},
            )),
        });
        request
            .metadata_mut()
            .insert("authorization", authorization.parse().unwrap());
        request
            .metadata_mut()
            .insert("herald-target-node", target.parse().unwrap());
        request
    };
    // An API token does not open Peer.
    let status = peer
        .forward_command(call("Bearer test-api-token-0123456789", &config.node.id))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    // The peer secret, but a call meant for another node (an address reused): the caller
    // is sent to look for the owner again, nothing is decided here.
    let status = peer
        .forward_command(call("Bearer test-peer-secret-0123456789", "another-node"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(
        status.metadata().contains_key("herald-not-owner"),
        "{status:?}"
    );
    node.stop().await;
}

#[tokio::test]
async fn an_actor_started_under_a_lost_lease_writes_nothing_under_the_next_one() {
    use std::sync::Arc;
    use std::time::Instant;

    use herald_broker::registry::{NewRegistration, RegistryError};
    use herald_broker::store::{RedisStore, RedisStoreConfig};
    use herald_broker::testsuite::registry_on;
    use herald_cluster::Ownership;

    let redis = RedisServer::start();
    let store = RedisStore::connect(&RedisStoreConfig {
        url: redis.url(),
        key_prefix: "herald".into(),
        response_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        cluster: false,
        tls: None,
    })
    .unwrap();
    let ownership = Arc::new(Ownership::none());
    let far = Instant::now() + Duration::from_secs(3_600);
    for shard in ShardId::all() {
        ownership.acquire(shard, Epoch(1), far);
    }
    let (registry, _pushes) = registry_on(Arc::new(store.clone()), ownership.clone()).await;
    let created = registry
        .register(NewRegistration {
            device_token: "ab".repeat(32),
            platform: Some(herald_broker::domain::Platform::Apns),
            app_id: "com.example.mail".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .record;
    let id = created.id.to_string();
    // Its actor starts (and writes) under epoch 1.
    registry
        .bind_subscription(&id, "SUB-EPOCH-1")
        .await
        .unwrap();

    // The lease is lost and taken again at epoch 2, while the actor of epoch 1 lives on
    // (nothing restarted its shard here): it must not write under epoch 2.
    let shard = created.device_token.shard();
    store.set_epoch(shard, Epoch(2)).await.unwrap();
    ownership.drop_shard(shard);
    ownership.acquire(shard, Epoch(2), far);
    let refused = registry.unregister(&id).await.unwrap_err();
    assert!(matches!(refused, RegistryError::NotOwner(_)), "{refused:?}");
    let kept = registry.get(&id).await.unwrap();
    assert_eq!(
        kept.subscription_id
            .map(|s| s.as_str().to_owned())
            .as_deref(),
        Some("SUB-EPOCH-1")
    );
}
