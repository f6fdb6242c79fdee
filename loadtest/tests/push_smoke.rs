//! The push load drives a node's sender to the mock providers: every push delivered and
//! received, on both providers, in accept-all and validating modes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use herald_loadtest::push::{Providers, PushLoad, run};
use herald_workers::DeliverySettings;

fn load(providers: Providers, validate: bool) -> PushLoad {
    PushLoad {
        providers,
        count: 200,
        concurrency: 16,
        devices: 50,
        validate,
        settings: DeliverySettings::default(),
        max_duration: Duration::from_secs(60),
    }
}

#[tokio::test]
async fn every_push_reaches_the_accept_all_mocks() {
    let (summary, (apns, fcm)) = run(load(Providers::Both, false)).await.unwrap();
    assert_eq!((summary.ok, summary.errors), (200, 0));
    // One warm-up push each, then half of the load each.
    assert_eq!((apns, fcm), (101, 101));
}

#[tokio::test]
async fn the_validating_mock_accepts_the_senders_pushes_too() {
    let (summary, (apns, fcm)) = run(load(Providers::Apns, true)).await.unwrap();
    assert_eq!((summary.ok, summary.errors), (200, 0));
    assert_eq!((apns, fcm), (201, 1));
}
