//! Measurements, not tests (ignored by default; they print figures and assert only that the
//! cluster kept working). Run against a release build:
//!
//! ```sh
//! cargo build --release -p herald-broker --bin herald
//! HERALD_BIN=target/release/herald HERALD_MEASURE_RUNS=5 cargo test -p herald-broker \
//!   --features testsuite --test cluster measure -- --ignored --nocapture --test-threads 1
//! ```

use std::time::Instant;

use super::harness::{DEFAULT_TIMING, Node};
use super::*;

fn runs() -> usize {
    std::env::var("HERALD_MEASURE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The time from a SIGKILL until a survivor's `ClusterStatus` shows the dead node gone and
/// every shard held again, with the default `[cluster]` timing, over several kills.
#[tokio::test]
#[ignore = "a measurement: run with --ignored"]
async fn measure_takeover_after_sigkill() {
    let redis = RedisServer::start();
    let mut cluster = Cluster::start_timed(&redis.url(), false, 3, DEFAULT_TIMING).await;
    let mut takeovers = Vec::new();
    for run in 0..runs() {
        let victim = run % 3;
        let asked = (victim + 1) % 3;
        let killed = Instant::now();
        cluster.nodes[victim].sigkill();
        let id = cluster.nodes[victim].id.clone();
        loop {
            let status = cluster.nodes[asked].status().await.unwrap();
            let gone = status.nodes.iter().any(|n| n.node_id == id && !n.alive);
            if gone && status.unowned_shards == 0 {
                break;
            }
            assert!(killed.elapsed() < Duration::from_secs(60), "{status:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let took = killed.elapsed();
        eprintln!(
            "run {run}: {} served again after {} ms",
            id,
            took.as_millis()
        );
        takeovers.push(took);
        cluster.nodes[victim].start().await;
        cluster.settled_as(asked, 3).await;
    }
    takeovers.sort();
    eprintln!(
        "takeover after SIGKILL over {} runs (heartbeat {:?}, member_ttl {:?}, lease_ttl {:?}): p50 {} ms, max {} ms",
        takeovers.len(),
        DEFAULT_TIMING.heartbeat,
        DEFAULT_TIMING.member_ttl,
        DEFAULT_TIMING.lease_ttl,
        percentile(&takeovers, 0.5).as_millis(),
        takeovers.last().unwrap().as_millis()
    );
}

/// Exchange's view of a forwarded notification: the same heartbeat posted to the gateway
/// of the node that owns the registration's shard and to a node that does not.
#[tokio::test]
#[ignore = "a measurement: run with --ignored"]
async fn measure_forwarded_notification_latency() {
    let redis = RedisServer::start();
    let cluster = Cluster::start(&redis.url(), 3).await;
    let devices = register(&cluster, 60, "latency").await;
    let ids: Vec<&str> = cluster.nodes.iter().map(|n| n.id.as_str()).collect();
    let owner_of = |device: &Device| -> &Node {
        let shard = herald_cluster::ShardId::of_device_token(&device.device_token);
        let owner = herald_cluster::placement::owner(shard, &ids).unwrap();
        cluster.nodes.iter().find(|n| n.id == *owner).unwrap()
    };
    let rounds = 20 * runs();
    let (mut direct, mut forwarded) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for device in &devices {
            let owner = owner_of(device);
            let other = cluster
                .nodes
                .iter()
                .filter(|n| n.id != owner.id)
                .nth(round % 2)
                .unwrap();
            let body = heartbeat(device);
            for (node, into) in [(owner, &mut direct), (other, &mut forwarded)] {
                let started = Instant::now();
                let told = post(node.gateway, &device.path, &body).await;
                into.push(started.elapsed());
                assert_eq!(told, Told::Ok);
            }
        }
    }
    direct.sort();
    forwarded.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1_000.0;
    eprintln!(
        "{} heartbeats each: at the owner p50 {:.2} ms p99 {:.2} ms; forwarded p50 {:.2} ms p99 {:.2} ms; added p50 {:.2} ms p99 {:.2} ms",
        direct.len(),
        ms(percentile(&direct, 0.5)),
        ms(percentile(&direct, 0.99)),
        ms(percentile(&forwarded, 0.5)),
        ms(percentile(&forwarded, 0.99)),
        ms(percentile(&forwarded, 0.5)) - ms(percentile(&direct, 0.5)),
        ms(percentile(&forwarded, 0.99)) - ms(percentile(&direct, 0.99)),
    );
}
