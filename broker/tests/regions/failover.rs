//! A region lost under load: its home is promoted in a survivor, whose gateway then takes
//! the home's callback URLs; nothing older than the replication lag is lost, and every
//! device gets its last badge. The region comes back as a replica and the home moves back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use herald_broker::api::REPLICA_OF_KEY;
use herald_broker::testsuite::eventually;
use herald_proto::v1::GetRegistrationRequest;

use super::harness::{Device, Told, authed, heartbeat, post, post_until_ok};
use super::world::{REGIONS, World, promote_command, register_at, replica_of, role};
use super::{burst_of, pushed_by, try_post};

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

/// Exchange's traffic for `devices`, posted to `gateway` by `posters` tasks until `stop`:
/// the count of OK answers.
fn load(
    gateway: std::net::SocketAddr,
    devices: Arc<Vec<Device>>,
    posters: usize,
    stop: Arc<AtomicBool>,
) -> (Arc<AtomicU64>, Vec<tokio::task::JoinHandle<()>>) {
    let ok = Arc::new(AtomicU64::new(0));
    let tasks = (0..posters)
        .map(|p| {
            let (devices, stop, ok) = (devices.clone(), stop.clone(), ok.clone());
            tokio::spawn(async move {
                let mut i = p;
                while !stop.load(Ordering::Relaxed) {
                    let device = &devices[i % devices.len()];
                    match try_post(gateway, &device.path, &heartbeat(device)).await {
                        Some(Told::Ok) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        // 503, or the region is gone.
                        Some(Told::Unavailable) | None => {}
                        Some(Told::Other) => {
                            panic!("Exchange told something other than OK or 503")
                        }
                    }
                    i += posters;
                }
            })
        })
        .collect();
    (ok, tasks)
}

/// How long a write to home `h`'s primary takes to be readable at region `r`'s copy, for
/// `samples` writes.
async fn replication_delays(world: &World, h: usize, r: usize, samples: usize) -> Vec<Duration> {
    let primary = redis::Client::open(world.regions[h].primary.url()).unwrap();
    let replica = redis::Client::open(world.regions[r].copies[h].as_ref().unwrap().url()).unwrap();
    let mut primary = primary.get_multiplexed_async_connection().await.unwrap();
    let mut replica = replica.get_multiplexed_async_connection().await.unwrap();
    let mut delays = Vec::new();
    for i in 0..samples {
        let marker = format!("{i}");
        let written = Instant::now();
        let _: () = redis::cmd("SET")
            .arg("herald-test:replication-marker")
            .arg(&marker)
            .query_async(&mut primary)
            .await
            .unwrap();
        loop {
            let seen: Option<String> = redis::cmd("GET")
                .arg("herald-test:replication-marker")
                .query_async(&mut replica)
                .await
                .unwrap();
            if seen.as_deref() == Some(marker.as_str()) {
                break;
            }
            assert!(
                written.elapsed() < Duration::from_secs(10),
                "replication stalled"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        delays.push(written.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    delays.sort();
    delays
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_region_is_served_by_a_survivor_and_the_home_moves_back() {
    let _one = super::ONE_WORLD.lock().await;
    let mut world = World::start(1).await;
    let devices = register_at(&world.regions[A].nodes[0], 20, "failover").await;
    for device in &devices {
        post_until_ok(
            world.regions[A].nodes[0].gateway,
            &device.path,
            &burst_of(device, 4, 'a'),
        )
        .await;
    }
    pushed_by(&world.regions[A].nodes[0], &devices, 4).await;
    world.synced(A).await;

    // Exchange's load on the home; the replication lag under it.
    let devices = Arc::new(devices);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let (ok, posters) = load(
        world.regions[A].nodes[0].gateway,
        devices.clone(),
        4,
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let delays = replication_delays(&world, A, B, 50).await;
    let rate = ok.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    println!(
        "replication under load ({rate:.0} notifications/s): p50 {:?}, p99 {:?}, max {:?}",
        delays[delays.len() / 2],
        delays[delays.len() * 99 / 100],
        delays[delays.len() - 1]
    );
    // Registrations made just before the loss, not waited for: those within the lag may be lost.
    let late = register_at(&world.regions[A].nodes[0], 5, "failover-late").await;
    // Bursts accepted and not pushed yet (held for `coalesce.quiet`) when the region is lost,
    // older than the lag: the survivor pushes them.
    let pending = &devices[..5];
    for device in pending {
        post_until_ok(
            world.regions[A].nodes[0].gateway,
            &device.path,
            &burst_of(device, 6, 'p'),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !world.regions[A].nodes[0]
            .sent()
            .iter()
            .any(|p| p.badge == 6),
        "still held when the region is lost"
    );

    // The whole region is lost, under load: its node, its primary, its copies.
    let lost = Instant::now();
    let region = &mut world.regions[A];
    region.nodes[0].sigkill();
    region.primary.kill();
    for copy in region.copies.iter_mut().flatten() {
        copy.kill();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for poster in posters {
        poster.await.unwrap();
    }
    // Until the promotion, the survivors answer the home's URLs 503.
    let survivor = &world.regions[B].nodes[0];
    for device in devices.iter().take(3) {
        assert_eq!(
            post(survivor.gateway, &device.path, &heartbeat(device)).await,
            Told::Unavailable
        );
    }

    // Without the third region's copy named, the old primary could still write through it
    // if it were alive: refused, nothing changed.
    let refused = promote_command(survivor.config(), REGIONS[A], &[]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("--replica"), "{said}");
    assert_eq!(
        role(world.regions[B].copies[A].as_ref().unwrap()).as_deref(),
        Some("slave")
    );

    let promoting = Instant::now();
    let third = world.regions[C].copies[A].as_ref().unwrap().port();
    let said = world.promote(
        survivor.config(),
        REGIONS[A],
        &["--replica".to_owned(), format!("127.0.0.1:{third}")],
    );
    let promoted = promoting.elapsed();
    println!("{said}");
    assert!(said.contains("does not answer"), "{said}");
    // The bursts pending at the loss are pushed by the survivor, with nothing more from
    // Exchange.
    pushed_by(survivor, pending, 6).await;
    let recovered = lost.elapsed();
    post_until_ok(
        survivor.gateway,
        &devices[0].path,
        &burst_of(&devices[0], 7, 'b'),
    )
    .await;
    let first_ok = promoting.elapsed();
    let served_after_loss = lost.elapsed();
    let mut client = survivor.registrations().await;
    for device in devices.iter() {
        let read = client
            .get_registration(authed(GetRegistrationRequest {
                registration_id: device.registration_id.clone(),
            }))
            .await
            .expect("a registration older than the lag survives");
        assert!(
            read.metadata().get(REPLICA_OF_KEY).is_none(),
            "served here now"
        );
    }
    let mut kept = 0;
    for device in &late {
        kept += usize::from(
            client
                .get_registration(authed(GetRegistrationRequest {
                    registration_id: device.registration_id.clone(),
                }))
                .await
                .is_ok(),
        );
    }
    for device in devices.iter().skip(1) {
        post_until_ok(survivor.gateway, &device.path, &burst_of(device, 7, 'b')).await;
    }
    pushed_by(survivor, &devices, 7).await;
    println!(
        "failover: promotion done in {} ms, first OK at the survivor {} ms after it began \
         ({} ms after the loss; pending bursts pushed {} ms after the loss); \
         {} of {} registrations older than the lag kept, {kept} of {} made just before the loss",
        promoted.as_millis(),
        first_ok.as_millis(),
        served_after_loss.as_millis(),
        recovered.as_millis(),
        devices.len(),
        devices.len(),
        late.len()
    );

    // The region returns, by mistake with its Redis a primary again: the copies elsewhere
    // know of the later promotion, so its node does not serve the home and the command
    // refuses to promote the stale copy.
    let region = &mut world.regions[A];
    region.primary.restart();
    for copy in region.copies.iter_mut().flatten() {
        copy.restart();
    }
    world.synced(B).await;
    world.synced(C).await;
    world.regions[A].nodes[0].start().await;
    let returned = &world.regions[A].nodes[0];
    assert_eq!(role(&world.regions[A].primary).as_deref(), Some("master"));
    eventually(Duration::from_secs(10), || async {
        returned
            .log_text()
            .contains("the home was promoted elsewhere since")
            .then_some(())
    })
    .await;
    assert!(
        returned
            .metrics()
            .await
            .contains(r#"herald_home_served{home="us-east-1"} 0"#)
    );
    assert_eq!(
        post(returned.gateway, &devices[0].path, &heartbeat(&devices[0])).await,
        Told::Unavailable
    );
    let refused = promote_command(returned.config(), REGIONS[A], &[]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("stale primary"), "{said}");

    // Failback: its Redis now a replica of the survivor's copy.
    let survivor_copy = world.regions[B].copies[A].as_ref().unwrap().port();
    world.regions[A]
        .primary
        .restart_with(&replica_of(survivor_copy));
    world.synced(A).await;
    assert_eq!(role(&world.regions[A].primary).as_deref(), Some("slave"));
    let returned = &world.regions[A].nodes[0];
    assert_eq!(
        post(returned.gateway, &devices[0].path, &heartbeat(&devices[0])).await,
        Told::Unavailable,
        "a region whose copy of its home is a replica does not serve it"
    );

    let said = world.promote(returned.config(), REGIONS[A], &[]);
    assert!(said.contains("switched over"), "{said}");
    world.served(A, A).await;
    assert_eq!(
        role(world.regions[B].copies[A].as_ref().unwrap()).as_deref(),
        Some("slave")
    );
    assert_eq!(
        post(
            world.regions[B].nodes[0].gateway,
            &devices[0].path,
            &heartbeat(&devices[0])
        )
        .await,
        Told::Unavailable
    );
    let returned = &world.regions[A].nodes[0];
    for device in devices.iter() {
        post_until_ok(returned.gateway, &device.path, &burst_of(device, 9, 'c')).await;
    }
    pushed_by(returned, &devices, 9).await;
    assert!(
        !world.regions[B].nodes[0]
            .sent()
            .iter()
            .any(|p| p.badge == 9),
        "the survivor pushed for a home it no longer serves"
    );
}
