//! The senders against the mock providers over real TLS: what reaches APNs and FCM, and
//! what the broker is told for every kind of answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_workers::apns::{InProcessShare, TokenShare, TokenSigner};
use herald_workers::mock::{
    Fault, MockApnsOptions, MockFcmOptions, MockProviders, Reply, ShareRule, TEST_APNS_KEY,
    TEST_KEY_ID, TEST_TEAM_ID, TokenRule,
};
use herald_workers::{
    AppConfig, Delivery, DeliveryMetrics, DeliverySettings, Provider, PushOutcome, PushRequest,
    PushSender,
};

mod connection_faults;
mod refusals;

const IOS: &str = "com.example.mail";
const ANDROID: &str = "com.example.mail.android";

struct World {
    mocks: MockProviders,
    delivery: Arc<Delivery>,
    metrics: DeliveryMetrics,
    share: Arc<InProcessShare>,
    _dir: tempfile::TempDir,
}

fn settings() -> DeliverySettings {
    DeliverySettings {
        retry_base: Duration::from_millis(10),
        retry_cap: Duration::from_millis(100),
        breaker_failures: 3,
        breaker_open: Duration::from_secs(30),
        ..DeliverySettings::default()
    }
}

async fn world_with(apns: MockApnsOptions, settings: DeliverySettings) -> World {
    world_shared(apns, settings, Arc::new(InProcessShare::default())).await
}

async fn world_shared(
    apns: MockApnsOptions,
    settings: DeliverySettings,
    share: Arc<InProcessShare>,
) -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let mocks = MockProviders::start(dir.path(), apns, MockFcmOptions::default())
        .await
        .expect("mocks start");
    let apps = mocks
        .apps(&[IOS], &[ANDROID], "example-mail")
        .expect("sa file");
    let metrics = DeliveryMetrics::default();
    let delivery =
        Delivery::new(&apps, &settings, share.clone(), metrics.clone()).expect("delivery");
    World {
        mocks,
        delivery: Arc::new(delivery),
        metrics,
        share,
        _dir: dir,
    }
}

async fn world() -> World {
    world_with(MockApnsOptions::default(), settings()).await
}

fn apns_token(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

fn push(provider: Provider, token: &str, badge: u32) -> PushRequest {
    PushRequest {
        provider,
        app_id: match provider {
            Provider::Apns => IOS.into(),
            Provider::Fcm => ANDROID.into(),
        },
        device_token: token.to_owned(),
        badge,
        new_mail: 1,
        collapse_id: format!("badge-{token:.8}"),
        push_id: uuid::Uuid::new_v4().to_string(),
        attempt: 0,
        send_before: None,
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[tokio::test]
async fn a_badge_reaches_the_mock_apns_over_tls_as_apple_wants_it() {
    let w = world().await;
    let request = push(Provider::Apns, &apns_token(1), 5);
    assert_eq!(
        w.delivery.send(request.clone()).await,
        PushOutcome::Delivered
    );
    let pushes = w.mocks.apns.pushes();
    assert_eq!(pushes.len(), 1);
    let p = &pushes[0];
    assert_eq!(p.payload, r#"{"aps":{"badge":5}}"#);
    assert_eq!(p.badge, Some(5));
    assert_eq!(p.topic, IOS);
    assert_eq!(p.push_type.as_deref(), Some("alert"));
    assert_eq!(p.priority.as_deref(), Some("5"));
    assert_eq!(p.apns_id, request.push_id);
    assert_eq!(p.collapse_id.as_deref(), Some(request.collapse_id.as_str()));
    let expires_in = p.expiration.expect("apns-expiration") as i64 - now_secs() as i64;
    assert!((3500..=3600).contains(&expires_in), "{expires_in}");
}

#[tokio::test]
async fn a_data_message_reaches_the_mock_fcm_with_a_token_from_the_service_account() {
    let w = world().await;
    for badge in [3, 4] {
        let outcome = w.delivery.send(push(Provider::Fcm, "fcm-a", badge)).await;
        assert_eq!(outcome, PushOutcome::Delivered);
    }
    let pushes = w.mocks.fcm.pushes();
    assert_eq!(pushes.len(), 2);
    assert_eq!(pushes[1].project, "example-mail");
    assert_eq!(pushes[1].token, "fcm-a");
    assert_eq!(pushes[1].data["kind"], "mail");
    assert_eq!(pushes[1].data["badge"], "4");
    assert_eq!(pushes[1].data["new_mail"], "1");
    assert_eq!(pushes[1].ttl.as_deref(), Some("3600s"));
    assert_eq!(pushes[1].collapse_key.as_deref(), Some("badge-fcm-a"));
    assert_eq!(w.mocks.fcm.tokens_issued(), 1, "the access token is cached");
}

#[tokio::test]
async fn apns_unregistered_is_a_dead_token_with_apples_date() {
    let w = world().await;
    let token = apns_token(2);
    w.mocks.apns.script().for_token(TokenRule {
        token: token.clone(),
        fault: Fault::Reply(Reply {
            timestamp_ms: Some(1_700_000_000_000),
            ..Reply::new(410, "Unregistered")
        }),
        times: None,
    });
    let outcome = w.delivery.send(push(Provider::Apns, &token, 1)).await;
    assert_eq!(
        outcome,
        PushOutcome::TokenDead {
            reason: "apns 410 Unregistered".into(),
            since_ms: Some(1_700_000_000_000),
        }
    );
}

#[tokio::test]
async fn fcm_unregistered_and_a_bad_token_are_dead_tokens() {
    let w = world().await;
    w.mocks.fcm.script().for_token(TokenRule {
        token: "gone".into(),
        fault: Fault::Reply(Reply::new(404, "UNREGISTERED")),
        times: None,
    });
    let gone = w.delivery.send(push(Provider::Fcm, "gone", 1)).await;
    assert!(matches!(gone, PushOutcome::TokenDead { .. }), "{gone:?}");
    let empty = w.delivery.send(push(Provider::Fcm, "", 1)).await;
    assert!(matches!(empty, PushOutcome::TokenDead { .. }), "{empty:?}");
}

/// Seeds the cluster's share with a provider token issued `age` ago.
async fn seed_token(share: &InProcessShare, age: Duration) -> u64 {
    let signer = TokenSigner::from_p8(TEST_TEAM_ID, TEST_KEY_ID, TEST_APNS_KEY.as_bytes())
        .expect("test key");
    let iat = now_secs() - age.as_secs();
    let token = signer.sign(iat).expect("sign");
    share
        .offer(&format!("{TEST_TEAM_ID}:{TEST_KEY_ID}"), token, 0)
        .await
        .expect("offer");
    iat
}

#[tokio::test]
async fn an_expired_provider_token_is_replaced_once_and_the_push_sent_again() {
    let share = Arc::new(InProcessShare::default());
    let old = seed_token(&share, Duration::from_secs(30 * 60)).await;
    // This APNs calls tokens older than 10 minutes expired.
    let apns = MockApnsOptions {
        max_token_age: Duration::from_secs(600),
        ..MockApnsOptions::default()
    };
    let w = world_shared(apns, settings(), share).await;
    for badge in [1, 2, 3] {
        let outcome = w
            .delivery
            .send(push(Provider::Apns, &apns_token(3), badge))
            .await;
        assert_eq!(outcome, PushOutcome::Delivered);
    }
    assert_eq!(
        w.mocks.apns.refused().get("403 ExpiredProviderToken"),
        Some(&1),
        "one refusal, then the new token"
    );
    let iats: std::collections::BTreeSet<u64> =
        w.mocks.apns.pushes().iter().map(|p| p.token_iat).collect();
    assert_eq!(iats.len(), 1, "one new token for all three pushes");
    assert!(iats.iter().all(|iat| *iat > old));
    let shared = w
        .share
        .current(&format!("{TEST_TEAM_ID}:{TEST_KEY_ID}"))
        .await
        .expect("share")
        .expect("a token");
    assert!(iats.contains(&shared.iat), "the new token is shared");
}

#[tokio::test]
async fn a_young_token_called_expired_is_not_replaced() {
    let share = Arc::new(InProcessShare::default());
    seed_token(&share, Duration::from_secs(10 * 60)).await;
    let apns = MockApnsOptions {
        max_token_age: Duration::from_secs(5 * 60),
        ..MockApnsOptions::default()
    };
    let w = world_shared(apns, settings(), share).await;
    let outcome = w
        .delivery
        .send(push(Provider::Apns, &apns_token(4), 1))
        .await;
    assert!(matches!(outcome, PushOutcome::RetryAfter(_)), "{outcome:?}");
    assert_eq!(
        w.mocks.apns.refused().get("403 ExpiredProviderToken"),
        Some(&1)
    );
    assert!(w.mocks.apns.pushes().is_empty());
}

#[tokio::test]
async fn a_revoked_fcm_access_token_is_fetched_again() {
    let w = world().await;
    assert_eq!(
        w.delivery.send(push(Provider::Fcm, "f", 1)).await,
        PushOutcome::Delivered
    );
    w.mocks.fcm.revoke_tokens();
    assert_eq!(
        w.delivery.send(push(Provider::Fcm, "f", 2)).await,
        PushOutcome::Delivered
    );
    assert_eq!(w.mocks.fcm.tokens_issued(), 2);
    assert_eq!(w.mocks.fcm.refused().get("401 UNAUTHENTICATED"), Some(&1));
    assert_eq!(w.mocks.fcm.pushes().len(), 2);
}

#[tokio::test]
async fn throttling_and_outages_come_back_as_retries_no_sooner_than_asked() {
    let w = world().await;
    let token = apns_token(5);
    w.mocks.apns.script().for_token(TokenRule {
        token: token.clone(),
        fault: Fault::Reply(Reply::new(429, "TooManyRequests")),
        times: Some(1),
    });
    match w.delivery.send(push(Provider::Apns, &token, 1)).await {
        PushOutcome::RetryAfter(wait) => assert!(wait >= Duration::from_secs(60), "{wait:?}"),
        other => panic!("{other:?}"),
    }
    w.mocks.fcm.script().for_token(TokenRule {
        token: "busy".into(),
        fault: Fault::Reply(Reply {
            retry_after_secs: Some(7),
            ..Reply::new(503, "UNAVAILABLE")
        }),
        times: Some(1),
    });
    match w.delivery.send(push(Provider::Fcm, "busy", 1)).await {
        PushOutcome::RetryAfter(wait) => assert!(wait >= Duration::from_secs(7), "{wait:?}"),
        other => panic!("{other:?}"),
    }
    // The scripts lapsed: the next attempts go through.
    assert_eq!(
        w.delivery.send(push(Provider::Apns, &token, 2)).await,
        PushOutcome::Delivered
    );
    assert_eq!(
        w.delivery.send(push(Provider::Fcm, "busy", 2)).await,
        PushOutcome::Delivered
    );
}

#[tokio::test]
async fn a_dropped_connection_is_replaced_and_the_push_sent_again() {
    let w = world().await;
    let token = apns_token(6);
    w.mocks.apns.script().for_token(TokenRule {
        token: token.clone(),
        fault: Fault::Drop,
        times: Some(1),
    });
    assert_eq!(
        w.delivery.send(push(Provider::Apns, &token, 9)).await,
        PushOutcome::Delivered
    );
    assert_eq!(w.mocks.apns.pushes().len(), 1);
}

#[tokio::test]
async fn a_5xx_storm_opens_the_apps_circuit_and_spares_the_provider() {
    let w = world().await;
    w.mocks.apns.script().for_share(ShareRule {
        share: 1.0,
        fault: Fault::Reply(Reply::new(500, "InternalServerError")),
    });
    for n in 0..3 {
        let outcome = w
            .delivery
            .send(push(Provider::Apns, &apns_token(n), 1))
            .await;
        assert!(matches!(outcome, PushOutcome::RetryAfter(_)), "{outcome:?}");
    }
    let held = w
        .delivery
        .send(push(Provider::Apns, &apns_token(9), 1))
        .await;
    match held {
        PushOutcome::RetryAfter(wait) => assert!(wait >= Duration::from_secs(20), "{wait:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        w.mocks.apns.refused().values().sum::<u64>(),
        3,
        "the 4th never left"
    );
    // FCM is another app: unaffected.
    assert_eq!(
        w.delivery.send(push(Provider::Fcm, "f", 1)).await,
        PushOutcome::Delivered
    );
    // The state on /metrics: the iOS app's circuit open, the Android app's closed.
    let mut registry = prometheus_client::registry::Registry::default();
    w.metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains(&format!("herald_push_circuit_open{{app=\"{IOS}\"}} 1")),
        "{text}"
    );
    assert!(
        text.contains(&format!("herald_push_circuit_open{{app=\"{ANDROID}\"}} 0")),
        "{text}"
    );
    assert!(
        text.contains(&format!("herald_push_app_pause_active{{app=\"{IOS}\"}} 0")),
        "{text}"
    );
}

#[tokio::test]
async fn refused_credentials_pause_the_app() {
    let w = world().await;
    w.mocks.apns.script().for_share(ShareRule {
        share: 1.0,
        fault: Fault::Reply(Reply::new(403, "InvalidProviderToken")),
    });
    for _ in 0..2 {
        match w
            .delivery
            .send(push(Provider::Apns, &apns_token(7), 1))
            .await
        {
            PushOutcome::RetryAfter(wait) => assert!(wait >= Duration::from_secs(200), "{wait:?}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        w.mocks.apns.refused().get("403 InvalidProviderToken"),
        Some(&1),
        "paused: the second push was not sent"
    );
}

#[tokio::test]
async fn a_stalled_apns_does_not_hold_up_fcm() {
    let settings = DeliverySettings {
        apns_in_flight: 2,
        ..settings()
    };
    let w = world_with(MockApnsOptions::default(), settings).await;
    w.mocks.apns.script().for_share(ShareRule {
        share: 1.0,
        fault: Fault::DelayMs(5_000),
    });
    let stalled: Vec<_> = (0..4)
        .map(|n| {
            let delivery = w.delivery.clone();
            tokio::spawn(
                async move { delivery.send(push(Provider::Apns, &apns_token(n), 1)).await },
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for badge in 1..=5 {
        assert_eq!(
            w.delivery.send(push(Provider::Fcm, "f", badge)).await,
            PushOutcome::Delivered
        );
    }
    assert!(
        stalled.iter().all(|s| !s.is_finished()),
        "FCM delivered while every APNs push was still waiting"
    );
    assert_eq!(w.mocks.fcm.pushes().len(), 5);
    for s in stalled {
        assert_eq!(s.await.expect("join"), PushOutcome::Delivered);
    }
}

#[tokio::test]
async fn a_push_for_an_unknown_app_fails_clearly() {
    let w = world().await;
    let request = PushRequest {
        app_id: "com.example.other".into(),
        ..push(Provider::Apns, &apns_token(8), 1)
    };
    match w.delivery.send(request).await {
        PushOutcome::Failed { reason } => assert!(reason.contains("com.example.other")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_control_api_scripts_the_mocks_and_shows_what_they_received() {
    let w = world().await;
    let providers = std::sync::Arc::new(w.mocks);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let control = format!("http://{}", listener.local_addr().unwrap());
    let router = herald_workers::mock::control::router(providers.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    herald_workers::install_crypto_provider();
    let http = reqwest::Client::new();
    let token = apns_token(11);
    let scripted = http
        .post(format!("{control}/apns/script/token"))
        .json(&serde_json::json!({
            "token": token,
            "fault": {"reply": {"status": 410, "reason": "ExpiredToken"}},
            "times": 1
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(scripted.status(), 204);
    let dead = w.delivery.send(push(Provider::Apns, &token, 1)).await;
    assert!(matches!(dead, PushOutcome::TokenDead { .. }), "{dead:?}");
    assert_eq!(
        w.delivery.send(push(Provider::Apns, &token, 2)).await,
        PushOutcome::Delivered
    );
    let get = |path: &str| {
        let request = http.get(format!("{control}{path}"));
        async move {
            let answer = request.send().await.unwrap();
            answer.json::<serde_json::Value>().await.unwrap()
        }
    };
    let pushes = get("/apns/pushes").await;
    assert_eq!(pushes.as_array().map(Vec::len), Some(1));
    assert_eq!(pushes[0]["badge"], 2);
    let stats = get("/stats").await;
    assert_eq!(stats["apns"]["refused"]["410 ExpiredToken"], 1);
    let bad_share = http
        .post(format!("{control}/fcm/script/share"))
        .json(&serde_json::json!({"share": 1.5, "fault": "drop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_share.status(), 422);
    let reset = http.post(format!("{control}/reset")).send().await.unwrap();
    assert_eq!(reset.status(), 204);
    assert!(providers.apns.pushes().is_empty());
}

#[tokio::test]
async fn a_push_that_finds_no_free_slot_comes_back_to_be_retried() {
    let settings = DeliverySettings {
        apns_in_flight: 1,
        request_timeout: Duration::from_secs(1),
        ..settings()
    };
    let w = world_with(MockApnsOptions::default(), settings).await;
    w.mocks.apns.script().for_share(ShareRule {
        share: 1.0,
        fault: Fault::DelayMs(3_000),
    });
    let delivery = w.delivery.clone();
    // Holds the only slot for two request timeouts (the first try and its retry).
    let holder =
        tokio::spawn(async move { delivery.send(push(Provider::Apns, &apns_token(1), 1)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let waiting = w
        .delivery
        .send(push(Provider::Apns, &apns_token(2), 1))
        .await;
    assert!(matches!(waiting, PushOutcome::RetryAfter(_)), "{waiting:?}");
    assert!(!holder.is_finished(), "the slot was still taken");
    let held = holder.await.unwrap();
    assert!(
        matches!(held, PushOutcome::RetryAfter(_)),
        "timed out: {held:?}"
    );
}

#[tokio::test]
async fn certificate_auth_presents_the_apps_push_certificate() {
    let w = world().await;
    let apps = [
        AppConfig::Apns(
            w.mocks
                .apns_certificate_app("com.example.cert", "com.example.cert")
                .unwrap(),
        ),
        AppConfig::Apns(
            w.mocks
                .apns_certificate_app("com.example.wrong", "com.example.other")
                .unwrap(),
        ),
    ];
    let delivery = Delivery::new(
        &apps,
        &settings(),
        Arc::new(InProcessShare::default()),
        DeliveryMetrics::default(),
    )
    .unwrap();
    let request = |app: &str| PushRequest {
        app_id: app.into(),
        ..push(Provider::Apns, &apns_token(12), 3)
    };
    assert_eq!(
        delivery.send(request("com.example.cert")).await,
        PushOutcome::Delivered
    );
    let pushes = w.mocks.apns.pushes();
    assert_eq!(pushes.len(), 1);
    assert_eq!(pushes[0].topic, "com.example.cert");
    assert_eq!(pushes[0].token_iat, 0, "no provider token was sent");
    // A certificate for another topic: Apple refuses, the app is paused.
    match delivery.send(request("com.example.wrong")).await {
        PushOutcome::RetryAfter(wait) => assert!(wait >= Duration::from_secs(200), "{wait:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.mocks.apns.refused().get("400 TopicDisallowed"), Some(&1));
}

#[tokio::test]
async fn a_push_whose_sender_lease_ended_before_it_could_leave_is_not_sent() {
    let w = world().await;
    let mut late = push(Provider::Apns, &apns_token(9), 2);
    late.send_before = Some(std::time::Instant::now());
    assert!(matches!(
        w.delivery.send(late).await,
        PushOutcome::RetryAfter(_)
    ));
    assert!(
        w.mocks.apns.pushes().is_empty(),
        "a push left after its deadline"
    );
    let mut in_time = push(Provider::Apns, &apns_token(9), 2);
    in_time.send_before = Some(std::time::Instant::now() + Duration::from_secs(60));
    assert_eq!(w.delivery.send(in_time).await, PushOutcome::Delivered);
    assert_eq!(w.mocks.apns.pushes().len(), 1);
}
