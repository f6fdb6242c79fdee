//! Every home is readable from every region; only the region serving a home writes it or
//! answers Exchange for it.

use std::time::Duration;

use herald_broker::api::REPLICA_OF_KEY;
use herald_broker::domain::home_tag;
use herald_broker::testsuite::eventually;
use herald_proto::v1::{
    GetRegistrationRequest, ListDeviceRegistrationsRequest, Platform, RegisterRequest,
    UnregisterRequest, UpdateDeviceTokenRequest,
};

use super::harness::{Told, authed, heartbeat, post};
use super::world::{REGIONS, World, register_at};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_home_is_read_everywhere_and_answered_only_where_it_is_served() {
    let _one = super::ONE_WORLD.lock().await;
    let world = World::start(1).await;
    let mut devices = Vec::new();
    for (r, region) in world.regions.iter().enumerate() {
        devices.push(register_at(&region.nodes[0], 2, &format!("routing-{r}")).await);
    }
    for h in 0..REGIONS.len() {
        world.synced(h).await;
    }

    for (h, home_devices) in devices.iter().enumerate() {
        let device = &home_devices[0];
        for (r, region) in world.regions.iter().enumerate() {
            let node = &region.nodes[0];
            let mut client = node.registrations().await;
            // Read from this region's copy: a replica's answer says so.
            let read = client
                .get_registration(authed(GetRegistrationRequest {
                    registration_id: device.registration_id.clone(),
                }))
                .await
                .unwrap();
            let replica = read
                .metadata()
                .get(REPLICA_OF_KEY)
                .map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(read.get_ref().home_region, REGIONS[h]);
            assert_eq!(replica, (r != h).then(|| REGIONS[h].to_owned()), "{r} {h}");
            let listed = client
                .list_device_registrations(authed(ListDeviceRegistrationsRequest {
                    device_token: device.device_token.clone(),
                }))
                .await
                .unwrap();
            assert_eq!(listed.get_ref().registrations.len(), 1);

            // Exchange: OK where the home is served, 503 anywhere else — never Unsubscribe.
            let told = post(node.gateway, &device.path, &heartbeat(device)).await;
            let expected = if r == h { Told::Ok } else { Told::Unavailable };
            assert_eq!(
                told, expected,
                "home {} posted to {}",
                REGIONS[h], REGIONS[r]
            );

            if r != h {
                // A change is made only where the home is served.
                let status = client
                    .update_device_token(authed(UpdateDeviceTokenRequest {
                        registration_id: device.registration_id.clone(),
                        device_token: "ab".repeat(32),
                    }))
                    .await
                    .expect_err("a change in a home not served here");
                assert_eq!(status.code(), tonic::Code::Unavailable);
                let status = client
                    .register(authed(RegisterRequest {
                        home_region: REGIONS[h].to_owned(),
                        device_token: "cd".repeat(32),
                        platform: Platform::Apns.into(),
                        app_id: "com.example.mail".into(),
                        ..Default::default()
                    }))
                    .await
                    .expect_err("a registration in a home not served here");
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                let status = client
                    .unregister(authed(UnregisterRequest {
                        registration_id: device.registration_id.clone(),
                    }))
                    .await
                    .expect_err("an unregistration in a home not served here");
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                // An id of that home this region's replica does not hold: not found here,
                // and the answer says it came from a replica.
                let unknown = format!("0000{:02x}{}", home_tag(REGIONS[h]), "0".repeat(26));
                let status = client
                    .get_registration(authed(GetRegistrationRequest {
                        registration_id: unknown,
                    }))
                    .await
                    .expect_err("unknown");
                assert_eq!(status.code(), tonic::Code::NotFound);
                assert!(status.message().contains("replica"), "{status:?}");
            }
        }
    }

    // An unknown token of another region's home is 503 too: only the home knows it is
    // unknown. In its own home it is Unsubscribe.
    let unknown = "/ews/v1/eu-west-1/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let body = heartbeat(&devices[1][0]);
    assert_eq!(
        post(world.regions[0].nodes[0].gateway, unknown, &body).await,
        Told::Unavailable
    );
    let answer = herald_gateway::testsuite::post(
        world.regions[1].nodes[0].gateway,
        unknown,
        Some("text/xml"),
        &body,
    )
    .await;
    assert_eq!(
        answer.soap_status().map(|(_, s)| s).as_deref(),
        Some("Unsubscribe")
    );

    // The node's metrics say which homes it serves and count what it refused.
    let metrics = world.regions[0].nodes[0].metrics().await;
    assert!(
        metrics.contains(r#"herald_home_served{home="us-east-1"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"herald_home_served{home="eu-west-1"} 0"#));
    let refused = eventually(Duration::from_secs(5), || async {
        let metrics = world.regions[0].nodes[0].metrics().await;
        metrics
            .lines()
            .find(|l| l.starts_with(r#"herald_ews_unserved_home_total{home="eu-west-1"}"#))
            .map(str::to_owned)
    })
    .await;
    assert!(!refused.ends_with(" 0"), "{refused}");
}
