//! Redis killed and restarted, slowed down, and full, each under a steady load on a real
//! node: Exchange is told 503 while Redis cannot record (never `Unsubscribe`), OK again once
//! it can, and every device ends with the badge of the last notification it was told OK
//! for.

use std::time::{Duration, Instant};

use herald_broker::testsuite::RedisServer;

use crate::harness::{Cluster, Told, register};
use crate::load::{Load, Seen};
use crate::mib;
#[allow(dead_code, reason = "cutting the link is for the regions tests")]
#[path = "../regions/proxy.rs"]
mod proxy;

const DEVICES: usize = 30;
/// Load before the fault, during it, and after it ends.
const BEFORE: Duration = Duration::from_secs(2);
const DURING: Duration = Duration::from_secs(4);
const AFTER: Duration = Duration::from_secs(6);

/// What a fault did to the answers, printed and checked.
fn report(name: &str, seen: &Seen, fault: (Instant, Instant), lost: usize) {
    let (start, end) = fault;
    let during: Vec<_> = seen.between(start, end).collect();
    let ok = during.iter().filter(|a| matches!(a.told, Told::Ok)).count();
    let unavailable = during.len() - ok;
    let slowest = during.iter().map(|a| a.took).max().unwrap_or_default();
    let recovered = seen.recovered_after(end);
    eprintln!(
        "{name}: {} notifications in all; during the fault ({:?}) {ok} OK and {unavailable} 503, slowest answer {slowest:?}; OK again {recovered:?} after it ended; devices whose last badge was lost: {lost}",
        seen.answers.len(),
        end - start,
    );
    assert!(unavailable > 0, "{name}: the fault was not felt");
    assert!(recovered.is_some(), "{name}: never OK again");
    assert_eq!(lost, 0, "{name}: accepted notifications lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_under_load_loses_nothing() {
    let mut redis = RedisServer::start_durable();
    let cluster = Cluster::start(&redis.url(), 1).await;
    let node = &cluster.nodes[0];
    let load = Load::start(node.gateway, register(&cluster, DEVICES, "restart").await);
    tokio::time::sleep(BEFORE).await;
    let killed = Instant::now();
    redis.kill();
    tokio::time::sleep(DURING).await;
    let restarted = Instant::now();
    redis.restart();
    tokio::time::sleep(AFTER).await;
    let seen = load.stop().await;
    let lost = seen.badges_lost(|| node.sent()).await;
    report(
        "Redis killed and restarted (AOF)",
        &seen,
        (killed, restarted),
        lost,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_turns_answers_into_503_at_the_deadline_with_memory_bounded() {
    let redis = RedisServer::start();
    let proxy = proxy::Proxy::start(redis.port()).await;
    let url = format!("redis://127.0.0.1:{}", proxy.port);
    let cluster = Cluster::start(&url, 1).await;
    let node = &cluster.nodes[0];
    let load = Load::start(node.gateway, register(&cluster, DEVICES, "slow").await);
    tokio::time::sleep(BEFORE).await;
    let before = node.rss_bytes();
    let slowed = Instant::now();
    // Three times `redis.response_timeout` on every chunk, each way.
    proxy.slow_down(Duration::from_millis(1500));
    let mut peak = before;
    while slowed.elapsed() < DURING {
        peak = peak.max(node.rss_bytes());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let healed = Instant::now();
    proxy.slow_down(Duration::ZERO);
    tokio::time::sleep(AFTER).await;
    let seen = load.stop().await;
    let lost = seen.badges_lost(|| node.sent()).await;
    let slowest = seen
        .between(slowed, healed)
        .map(|a| a.took)
        .max()
        .unwrap_or_default();
    eprintln!(
        "slow Redis: node RSS {:.0} MiB before, {:.0} MiB at most during",
        mib(before),
        mib(peak)
    );
    report(
        "Redis slowed by 1.5 s per chunk",
        &seen,
        (slowed, healed),
        lost,
    );
    // The resolve (`redis.response_timeout`) and the actor call (`actors.call_timeout`)
    // bound an answer; a pile-up would grow with the fault.
    assert!(
        slowest < Duration::from_secs(6),
        "answers piled up: {slowest:?}"
    );
    assert!(
        peak.saturating_sub(before) < 64 * 1024 * 1024,
        "memory grew"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_is_503_never_unsubscribe_and_recovers() {
    let redis = RedisServer::start();
    let cluster = Cluster::start(&redis.url(), 1).await;
    let node = &cluster.nodes[0];
    let load = Load::start(node.gateway, register(&cluster, DEVICES, "full").await);
    tokio::time::sleep(BEFORE).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut admin)
        .await
        .unwrap();
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let full = Instant::now();
    let set = |bytes: u64| {
        let mut admin = admin.clone();
        async move {
            let () = redis::cmd("CONFIG")
                .arg("SET")
                .arg("maxmemory-policy")
                .arg("noeviction")
                .arg("maxmemory")
                .arg(bytes)
                .query_async(&mut admin)
                .await
                .unwrap();
        }
    };
    // Below what it holds: every write is refused with OOM.
    set(used / 2).await;
    tokio::time::sleep(DURING).await;
    let freed = Instant::now();
    set(0).await;
    tokio::time::sleep(AFTER).await;
    let seen = load.stop().await;
    let lost = seen.badges_lost(|| node.sent()).await;
    report(
        "Redis full (maxmemory, noeviction)",
        &seen,
        (full, freed),
        lost,
    );
}
