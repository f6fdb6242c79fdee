//! A provider failing at the connection level — resetting connections (TCP RST) with
//! pushes in flight, or sending HTTP/2 GOAWAY while streams are open — costs retries, never
//! a push, and the other provider does not notice.

use std::time::Duration;

use super::*;

const PUSHES: u8 = 40;

/// Sends `request` until it is delivered, waiting as told in between (as the subscription
/// actor does), for up to 30 s; the attempts it took.
async fn until_delivered(delivery: Arc<Delivery>, request: PushRequest) -> u32 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut attempt = 0;
    while tokio::time::Instant::now() < deadline {
        attempt += 1;
        let mut sent = request.clone();
        sent.attempt = attempt - 1;
        match delivery.send(sent).await {
            PushOutcome::Delivered => return attempt,
            PushOutcome::RetryAfter(wait) => {
                tokio::time::sleep(wait.max(Duration::from_millis(10))).await;
            }
            other => panic!("a connection fault ended as {other:?}"),
        }
    }
    panic!("not delivered in 30 s ({attempt} attempts)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_and_goaways_are_retried_and_spare_the_other_provider() {
    for fault in [Fault::Reset, Fault::Goaway] {
        // A reset fails every stream of its connection at once, and 20 of them in a row
        // open the app's circuit (tested on its own elsewhere): here the breaker stays out
        // of the way, so that what is measured is the connection faults alone.
        let settings = DeliverySettings {
            retry_base: Duration::from_millis(10),
            retry_cap: Duration::from_millis(100),
            breaker_failures: 10_000,
            ..DeliverySettings::default()
        };
        let w = world_with(MockApnsOptions::default(), settings).await;
        w.mocks.apns.script().for_share(ShareRule {
            share: 0.3,
            fault: fault.clone(),
        });
        let apns: Vec<_> = (0..PUSHES)
            .map(|n| {
                let request = push(Provider::Apns, &apns_token(n), u32::from(n) + 1);
                tokio::spawn(until_delivered(w.delivery.clone(), request))
            })
            .collect();
        // FCM meanwhile: every push delivered at the first attempt.
        for badge in 1..=10 {
            assert_eq!(
                w.delivery.send(push(Provider::Fcm, "f", badge)).await,
                PushOutcome::Delivered,
                "{fault:?}"
            );
        }
        let mut attempts = 0;
        for task in apns {
            attempts += task.await.unwrap();
        }
        let delivered: std::collections::HashSet<_> = w
            .mocks
            .apns
            .pushes()
            .into_iter()
            .map(|p| p.device_token)
            .collect();
        let connections = w.mocks.apns.connections();
        eprintln!(
            "{fault:?} on 30% of APNs requests: {PUSHES} pushes delivered in {attempts} attempts over {connections} connections; FCM 10 of 10 at the first"
        );
        assert!(
            connections > 1,
            "{fault:?}: the connection was never replaced"
        );
        if fault == Fault::Reset {
            assert!(attempts > u32::from(PUSHES), "no push was ever cut off");
        }
        assert_eq!(
            w.mocks.fcm.connections(),
            1,
            "FCM's connection was not touched"
        );
        assert_eq!(delivered.len(), usize::from(PUSHES), "{fault:?}");
        assert_eq!(w.mocks.fcm.pushes().len(), 10);
    }
}
