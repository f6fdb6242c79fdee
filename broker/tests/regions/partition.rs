//! A region cut off from the other two: its primary refuses writes as soon as no replica
//! is in reach (`min-replicas-to-write`), its nodes' leases lapse within `lease_ttl`, and
//! from then on it neither writes nor pushes for its home, and answers Exchange 503 —
//! for unknown tokens too, since a home promoted elsewhere may have minted them.

use std::time::{Duration, Instant};

use herald_broker::testsuite::eventually;

use super::harness::{TEST_TIMING, Told, post, post_until_ok};
use super::world::{MAX_LAG, World, ms_since, register_at};
use super::{burst_of, pushed_by};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_cut_off_stops_writing_and_pushing_for_its_home_within_the_bound() {
    let _one = super::ONE_WORLD.lock().await;
    let world = World::start(1).await;
    let node = &world.regions[0].nodes[0];
    let devices = register_at(node, 6, "partition").await;
    world.synced(0).await;
    post_until_ok(
        node.gateway,
        &devices[0].path,
        &burst_of(&devices[0], 4, 'a'),
    )
    .await;
    pushed_by(node, &devices[..1], 4).await;

    world.cut(0);
    let cut = Instant::now();
    // Its writes stop: Exchange is told 503 (and never Unsubscribe) from then on.
    let refused_after = eventually(Duration::from_secs(20), || async {
        let told = post(
            node.gateway,
            &devices[1].path,
            &burst_of(&devices[1], 5, 'a'),
        )
        .await;
        assert_ne!(told, Told::Other);
        (told == Told::Unavailable).then(|| ms_since(cut))
    })
    .await;

    // Past the bound, no lease is trusted: nothing is pushed, and an unknown token is 503.
    let bound = MAX_LAG + TEST_TIMING.lease_ttl + 2 * TEST_TIMING.heartbeat;
    tokio::time::sleep(bound.saturating_sub(cut.elapsed())).await;
    assert_eq!(
        post(
            node.gateway,
            &unknown_of_this_home(&devices[0].path),
            &burst_of(&devices[0], 1, 'a')
        )
        .await,
        Told::Unavailable
    );
    let pushes = node.sent().len();
    for device in &devices[2..] {
        assert_eq!(
            post(node.gateway, &device.path, &burst_of(device, 5, 'a')).await,
            Told::Unavailable
        );
    }
    // Longer than a burst is held (coalesce.max_delay 4 s).
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(node.sent().len(), pushes, "a region cut off pushed");
    println!(
        "partition: writes refused {refused_after} ms after the cut; bound {} ms",
        bound.as_millis()
    );

    // Healed: it writes and pushes again.
    world.heal(0);
    for device in &devices[1..] {
        post_until_ok(node.gateway, &device.path, &burst_of(device, 5, 'a')).await;
    }
    pushed_by(node, &devices[1..], 5).await;
}

/// The callback path of a registration of the same home that this region never saw — one
/// a region that took the home over could have minted: `path`'s, with the id's random
/// part and the secret changed (the shard and the home's tag kept).
fn unknown_of_this_home(path: &str) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (base, token) = path.rsplit_once('/').unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(token).unwrap();
    for b in &mut bytes[3..] {
        *b ^= 0x5a;
    }
    format!("{base}/{}", URL_SAFE_NO_PAD.encode(bytes))
}
