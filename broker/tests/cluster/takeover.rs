//! A node dies (SIGKILL) or pauses past its leases (SIGSTOP): its shards are taken over,
//! what it had accepted is pushed by the new owners, and a paused node that comes back
//! pushes nothing for the shards it lost.

use std::time::Instant;

use super::*;

/// Posts a burst for each device, each through the gateway of a node other than the one it
/// was registered through (so most are forwarded); every answer is OK.
async fn accept_bursts(cluster: &Cluster, devices: &[Device]) {
    for (i, device) in devices.iter().enumerate() {
        let node = &cluster.nodes[(i + 1) % cluster.nodes.len()];
        post_until_ok(node.gateway, &device.path, &burst(device)).await;
    }
}

#[tokio::test]
async fn a_killed_node_s_shards_are_taken_over_and_its_accepted_bursts_pushed() {
    let redis = RedisServer::start();
    kill_one_of_three(&redis.url(), false).await;
}

#[tokio::test]
async fn on_a_redis_cluster_a_killed_node_s_shards_are_taken_over_too() {
    let redis = RedisCluster::start();
    kill_one_of_three(&redis.url(), true).await;
}

/// Three nodes take bursts, one is killed; the others take its shards over and push what it
/// had accepted.
async fn kill_one_of_three(redis_url: &str, redis_cluster: bool) {
    let mut cluster = Cluster::start_on(redis_url, redis_cluster, 3).await;
    let devices = register(&cluster, 24, "kill").await;
    accept_bursts(&cluster, &devices).await;
    // Bursts wait out their 2 s quiet window: kill a node now.
    let killed = Instant::now();
    cluster.nodes[0].sigkill();
    let victim = cluster.nodes[0].id.clone();
    assert!(
        cluster.nodes[0].sent().len() < devices.len(),
        "every burst was flushed before the kill; nothing was tested"
    );

    // Exchange keeps posting heartbeats to the survivors meanwhile: OK or 503, nothing else.
    let status = loop {
        for device in &devices {
            for node in &cluster.nodes[1..] {
                let told = post(node.gateway, &device.path, &heartbeat(device)).await;
                assert_ne!(told, Told::Other, "a live registration was told to stop");
            }
        }
        let status = cluster.nodes[1].status().await.unwrap();
        let dead_gone = status.nodes.iter().any(|n| n.node_id == victim && !n.alive);
        if dead_gone && status.unowned_shards == 0 {
            break status;
        }
        assert!(killed.elapsed() < Duration::from_secs(30), "{status:?}");
    };
    let takeover = killed.elapsed();
    eprintln!("takeover after SIGKILL: {} ms", takeover.as_millis());
    assert!(
        status
            .nodes
            .iter()
            .filter(|n| n.alive)
            .all(|n| n.shards_owned > 0)
    );

    let sent = pushed(&cluster, &devices, 4).await;
    for device in &devices {
        assert!(
            sent.iter()
                .filter(|p| p.device_token == device.device_token)
                .all(|p| p.badge == 4),
            "a wrong badge for {device:?}"
        );
    }
    // Every registration kept its state: readable through any survivor, bound and active.
    let mut client = cluster.nodes[2].registrations().await;
    for device in &devices {
        let registration = client
            .get_registration(harness::authed(herald_proto::v1::GetRegistrationRequest {
                registration_id: device.registration_id.clone(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(registration.subscription_id, device.subscription);
        assert_eq!(registration.badge, 4);
    }
}

#[tokio::test]
async fn a_node_paused_past_its_leases_pushes_nothing_for_the_shards_it_lost() {
    let redis = RedisServer::start();
    let cluster = Cluster::start(&redis.url(), 2).await;
    let devices = register(&cluster, 16, "pause").await;
    // Every burst is accepted through node 1 and recorded by its shard's owner.
    for device in &devices {
        post_until_ok(cluster.nodes[1].gateway, &device.path, &burst(device)).await;
    }
    let ids = ["node-0", "node-1"];
    let theirs = devices
        .iter()
        .filter(|d| {
            let shard = herald_cluster::ShardId::of_device_token(&d.device_token);
            herald_cluster::placement::owner(shard, &ids) == Some(&"node-0")
        })
        .count();
    assert!(
        theirs > 0,
        "node 0 holds none of the bursts; nothing is tested"
    );
    let paused = &cluster.nodes[0];
    paused.sigstop();
    let before = paused.sent().len();
    // Node 1 takes the paused node's shards once their leases lapse, and pushes the bursts
    // the paused node had accepted.
    pushed(&cluster, &devices, 4).await;
    let status = cluster.settled_as(1, 1).await;
    assert!(
        status
            .nodes
            .iter()
            .any(|n| n.node_id == paused.id && !n.alive)
    );
    assert_eq!(paused.sent().len(), before, "a paused process cannot push");

    // It wakes up with its flush timers due and its leases gone: it pushes nothing for the
    // shards it lost, and rejoins.
    paused.sigcont();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after: Vec<_> = paused.sent().into_iter().skip(before).collect();
    assert!(
        after.is_empty(),
        "the node pushed for shards it had lost: {after:?}"
    );
    cluster.settled(2).await;
    let metrics = paused.metrics().await;
    let losses = metrics
        .lines()
        .find_map(|l| l.strip_prefix("herald_cluster_lease_losses_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(losses > 0.0, "the node did not record losing its leases");
}
