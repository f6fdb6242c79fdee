//! Answers that must not be taken at their word: a refused token that may be a wrong
//! configuration rather than a dead one, and a `Retry-After` past any sense.

use herald_workers::classify::MAX_RETRY_AFTER;
use herald_workers::mock::{Fault, MockApnsOptions, Reply, ShareRule, TokenRule};
use herald_workers::{DeliverySettings, Provider, PushOutcome, PushSender};

use super::{apns_token, push, settings, world, world_with};

#[tokio::test]
async fn a_spike_of_refused_tokens_pauses_the_app_and_kills_no_registration() {
    // A production build talking to the sandbox: every token is "BadDeviceToken".
    let w = world_with(
        MockApnsOptions::default(),
        DeliverySettings {
            refusal_spike: 5,
            ..settings()
        },
    )
    .await;
    w.mocks.apns.script().for_share(ShareRule {
        share: 1.0,
        fault: Fault::Reply(Reply::new(400, "BadDeviceToken")),
    });
    let mut outcomes = Vec::new();
    for n in 0..8 {
        outcomes.push(
            w.delivery
                .send(push(Provider::Apns, &apns_token(n), 1))
                .await,
        );
    }
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, PushOutcome::RetryAfter(_))),
        "nothing delivered proves the configuration: no token is dead: {outcomes:?}"
    );
    assert_eq!(
        w.mocks.apns.refused().get("400 BadDeviceToken"),
        Some(&5),
        "the fifth refusal paused the app: later pushes were not sent"
    );
    // FCM is not paused by APNs' trouble.
    assert_eq!(
        w.delivery.send(push(Provider::Fcm, "f", 1)).await,
        PushOutcome::Delivered
    );
}

#[tokio::test]
async fn a_refused_token_is_dead_once_the_app_has_delivered() {
    let w = world().await;
    assert_eq!(
        w.delivery
            .send(push(Provider::Apns, &apns_token(1), 1))
            .await,
        PushOutcome::Delivered
    );
    w.mocks.apns.script().for_token(TokenRule {
        token: apns_token(2),
        fault: Fault::Reply(Reply::new(400, "BadDeviceToken")),
        times: None,
    });
    let refused = w
        .delivery
        .send(push(Provider::Apns, &apns_token(2), 1))
        .await;
    assert!(
        matches!(refused, PushOutcome::TokenDead { .. }),
        "{refused:?}"
    );
}

#[tokio::test]
async fn an_absurd_retry_after_is_capped_at_an_hour() {
    let w = world().await;
    w.mocks.apns.script().for_share(ShareRule {
        share: 1.0,
        fault: Fault::Reply(Reply {
            retry_after_secs: Some(u64::MAX),
            ..Reply::new(503, "ServiceUnavailable")
        }),
    });
    match w
        .delivery
        .send(push(Provider::Apns, &apns_token(3), 1))
        .await
    {
        PushOutcome::RetryAfter(wait) => assert_eq!(wait, MAX_RETRY_AFTER),
        other => panic!("{other:?}"),
    }
}
