//! Herald unchanged on a real three-primary Redis Cluster: the API, the gateway path with
//! its bursts and pushes, a token change that moves a registration between shards (and so
//! between slots), the leases of every shard, and the metrics that read across slots.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use herald_broker::testsuite::{
    Cast, RedisCluster, TestNode, authed, eventually, expected_pushes, http_get, test_config,
};
use herald_cluster::ShardId;
use herald_proto::v1::admin_client::AdminClient;
use herald_proto::v1::{
    ClusterStatusRequest, GetRegistrationRequest, ListDeviceRegistrationsRequest,
    UnregisterRequest, UpdateDeviceTokenRequest,
};

#[tokio::test]
async fn a_node_on_a_redis_cluster_serves_the_api_the_gateway_and_its_leases() {
    let redis = RedisCluster::start();
    let mut config = test_config(Some(redis.url()));
    config.redis.cluster = true;
    let node = TestNode::start(&config).await;

    // Every shard's lease, across the three primaries.
    let mut admin = AdminClient::connect(format!("http://{}", node.node.grpc_addr))
        .await
        .unwrap();
    let status = admin
        .cluster_status(authed(ClusterStatusRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.unowned_shards, 0, "{status:?}");
    assert_eq!(status.nodes.len(), 1);
    assert_eq!(status.nodes[0].shards_owned, 1024);

    // The gateway path: a whole timeline, with its pushes.
    let cast = Cast::register(&node, true).await;
    let device = node.play(&cast, "alice-timeline").await;
    let pushed: Vec<u32> = node
        .pushes
        .sent()
        .iter()
        .filter(|p| p.device_token == device)
        .map(|p| p.badge)
        .collect();
    assert_eq!(pushed, expected_pushes("alice-timeline"));

    // A token change to another shard: the registration moves between slots.
    let alice = cast.get("alice");
    let old_token = alice.registration.device_token.clone();
    let new_token = (0u64..)
        .map(|i| format!("{:064x}", i + 0x5eed_0000))
        .find(|t| ShardId::of_device_token(t) != ShardId::of_device_token(&old_token))
        .unwrap();
    let mut client = node.client().await;
    let moved = client
        .update_device_token(authed(UpdateDeviceTokenRequest {
            registration_id: alice.registration.registration_id.clone(),
            device_token: new_token.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(moved.device_token, new_token);
    let read = client
        .get_registration(authed(GetRegistrationRequest {
            registration_id: alice.registration.registration_id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.device_token, new_token);
    // The new device is told its badge (the move's announce burst).
    eventually(Duration::from_secs(10), || async {
        node.pushes
            .sent()
            .iter()
            .any(|p| p.device_token == new_token && p.badge == 4)
            .then_some(())
    })
    .await;
    let listed = client
        .list_device_registrations(authed(ListDeviceRegistrationsRequest {
            device_token: new_token.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.registrations.len(), 1);

    // The registrations gauge reads every shard's counts, across slots.
    let (_, metrics) = http_get(node.node.admin_addr, "/metrics").await;
    let active = metrics
        .lines()
        .find_map(|l| l.strip_prefix("herald_registrations{state=\"active\"} "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap();
    assert!(active >= 1.0, "{metrics}");

    client
        .unregister(authed(UnregisterRequest {
            registration_id: alice.registration.registration_id.clone(),
        }))
        .await
        .unwrap();
    let gone = client
        .get_registration(authed(GetRegistrationRequest {
            registration_id: alice.registration.registration_id.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    node.stop().await;
}
