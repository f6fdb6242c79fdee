//! Nodes join and leave a running cluster: a drained node gives its shards away and takes
//! none, a restarted one takes its share back, a new node takes about its share — and no
//! registration, accepted burst or answer is lost meanwhile. A token change moves a
//! registration to a shard another node owns.

use herald_proto::v1::UpdateDeviceTokenRequest;

use super::*;

/// Runs the `herald` CLI with the test API token; its standard output.
async fn herald_cli(args: &[&str]) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .env("HERALD_API_TOKEN", harness::TOKEN)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "herald {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn a_drained_node_gives_its_shards_away_and_takes_its_share_again_after_a_restart() {
    let redis = RedisServer::start();
    let mut cluster = Cluster::start(&redis.url(), 3).await;
    let devices = register(&cluster, 18, "drain").await;
    for (i, device) in devices.iter().enumerate() {
        post_until_ok(cluster.nodes[i % 3].gateway, &device.path, &burst(device)).await;
    }
    // Drain node 0 through node 1, as an operator does: the call is forwarded to node 0.
    let drained = herald_cli(&[
        "cluster",
        "drain",
        "node-0",
        "--node",
        &cluster.nodes[1].grpc.to_string(),
    ])
    .await;
    assert!(drained.starts_with("node-0: released "), "{drained}");
    assert!(!drained.starts_with("node-0: released 0 "), "{drained}");
    let status = eventually(Duration::from_secs(20), || async {
        let status = cluster.nodes[2].status().await.ok()?;
        let node0 = status.nodes.iter().find(|n| n.node_id == "node-0")?;
        (node0.draining && node0.shards_owned == 0 && status.unowned_shards == 0).then_some(status)
    })
    .await;
    let printed = herald_cli(&[
        "cluster",
        "status",
        "--node",
        &cluster.nodes[2].grpc.to_string(),
    ])
    .await;
    assert!(printed.contains(", 0 unowned"), "{printed}");
    let node0_line = printed.lines().find(|l| l.starts_with("node-0 ")).unwrap();
    let columns: Vec<&str> = node0_line.split_whitespace().collect();
    assert_eq!(&columns[2..5], ["yes", "yes", "0"], "{printed}");
    assert_eq!(
        status.nodes.iter().map(|n| n.shards_owned).sum::<u32>(),
        1024
    );
    // The bursts are pushed, each once (a drain flushes early; nothing is pushed twice).
    let sent = pushed(&cluster, &devices, 4).await;
    for device in &devices {
        let pushes = sent
            .iter()
            .filter(|p| p.device_token == device.device_token)
            .count();
        assert_eq!(pushes, 1, "{device:?}");
    }

    // A deploy: stop it, start it again; it takes its share back.
    cluster.nodes[0].terminate().await;
    cluster.nodes[0].start().await;
    cluster.settled(3).await;
    // Its share comes back shard by shard, as the others hand theirs over.
    eventually(Duration::from_secs(20), || async {
        let status = cluster.nodes[2].status().await.ok()?;
        let node0 = status.nodes.iter().find(|n| n.node_id == "node-0")?;
        (node0.shards_owned > 200 && status.unowned_shards == 0).then_some(())
    })
    .await;
    for device in &devices {
        post_until_ok(cluster.nodes[0].gateway, &device.path, &burst(device)).await;
    }
}

#[tokio::test]
async fn a_fourth_node_takes_about_a_quarter_of_the_shards_under_load() {
    let redis = RedisServer::start();
    let mut cluster = Cluster::start(&redis.url(), 3).await;
    let devices = register(&cluster, 12, "grow").await;
    let load = {
        let gateways: Vec<_> = cluster.nodes.iter().map(|n| n.gateway).collect();
        let devices = devices.clone();
        tokio::spawn(async move {
            let (mut ok, mut unavailable) = (0usize, 0usize);
            for round in 0..60 {
                for (i, device) in devices.iter().enumerate() {
                    match post(
                        gateways[(i + round) % gateways.len()],
                        &device.path,
                        &heartbeat(device),
                    )
                    .await
                    {
                        Told::Ok => ok += 1,
                        Told::Unavailable => unavailable += 1,
                        Told::Other => panic!("a live registration was told to stop"),
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (ok, unavailable)
        })
    };
    cluster.add().await;
    // Placement gives the newcomer its share; the others release it at their next heartbeat.
    let ids = ["node-0", "node-1", "node-2", "node-3"];
    let share = herald_cluster::placement::assignment(&ids)
        .iter()
        .filter(|owner| **owner == Some(3))
        .count() as u32;
    let status = eventually(Duration::from_secs(20), || async {
        let status = cluster.nodes[3].status().await.ok()?;
        let newcomer = status.nodes.iter().find(|n| n.node_id == "node-3")?;
        (newcomer.shards_owned == share && status.unowned_shards == 0).then_some(status)
    })
    .await;
    let (ok, unavailable) = load.await.unwrap();
    eprintln!("while a node joined: {ok} OK, {unavailable} 503");
    assert!(
        (150..=370).contains(&share),
        "the fourth node took {share} shards"
    );
    assert_eq!(
        status.nodes.iter().map(|n| n.shards_owned).sum::<u32>(),
        1024,
        "{status:?}"
    );
}

#[tokio::test]
async fn a_token_change_moves_a_registration_to_a_shard_another_node_owns_mid_burst() {
    let redis = RedisServer::start();
    let cluster = Cluster::start(&redis.url(), 2).await;
    let devices = register(&cluster, 1, "move").await;
    let device = &devices[0];
    let ids = ["node-0", "node-1"];
    let owner = |token: &str| {
        herald_cluster::placement::owner(herald_cluster::ShardId::of_device_token(token), &ids)
            .copied()
    };
    let from = owner(&device.device_token).unwrap();
    let new_token = (0u64..)
        .map(|i| format!("{:064x}", i + 0xabc0_0000))
        .find(|t| owner(t).is_some_and(|o| o != from))
        .unwrap();
    post_until_ok(cluster.nodes[0].gateway, &device.path, &burst(device)).await;
    // Through the node that does not own the old shard: forwarded, then handed over to the
    // other node's shard.
    let other = if from == "node-0" { 1 } else { 0 };
    let moved = cluster.nodes[other]
        .registrations()
        .await
        .update_device_token(harness::authed(UpdateDeviceTokenRequest {
            registration_id: device.registration_id.clone(),
            device_token: new_token.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(moved.device_token, new_token);
    // The burst reaches the new device, with its badge; Exchange keeps being answered OK.
    let moved_device = Device {
        device_token: new_token,
        ..device.clone()
    };
    pushed(&cluster, std::slice::from_ref(&moved_device), 4).await;
    for node in &cluster.nodes {
        post_until_ok(node.gateway, &device.path, &burst(device)).await;
    }
}
