//! The `herald.v1.Registrations` contract over real gRPC, run once against the in-memory
//! store and once against a real Redis.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_broker::testsuite::{RedisServer, TestNode, authed, http_get, test_config};
use herald_proto::v1::{
    BindSubscriptionRequest, GetRegistrationRequest, ListDeviceRegistrationsRequest, Platform,
    RegisterRequest, Registration, State, UnregisterRequest, UpdateDeviceTokenRequest,
};
use tonic::Code;

const APNS_TOKEN: &str = "A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F90";
const APNS_TOKEN_2: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const FCM_TOKEN: &str = "fcm-token_abcdefghijklmnopqrstuvwxyz:APA91bHPRgkF3JUikC4ENAHEeMrd41Zxv3hVZjC9KtT8OvPVGJ-hQMRKRrZuJAEcl7B338qju59zJMjw2DeLExample";
const SUB_A: &str =
    "HABleG1ieDAxLmNvcnAuY29udG9zby5leGFtcGxlEAAAAJpyRUCk4gv0pegvppfUERwE4egXN7kayg==";
const SUB_B: &str =
    "HABleG1ieDAxLmNvcnAuY29udG9zby5leGFtcGxlEAAAAMioJjgxGopPY/WO3to9Tia1vLxIquZWmw==";

/// Runs each scenario against both stores.
macro_rules! on_both_stores {
    ($($scenario:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $scenario() {
                    let node = herald_broker::testsuite::TestNode::start(&super::test_config(None)).await;
                    super::$scenario(&node).await;
                    node.stop().await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $scenario() {
                    let redis = super::RedisServer::start();
                    let node = herald_broker::testsuite::TestNode::start(&super::test_config(Some(redis.url()))).await;
                    super::$scenario(&node).await;
                    node.stop().await;
                }
            )*
        }
    };
}

on_both_stores!(
    register_mints_a_callback_url_shown_once,
    register_refuses_each_bad_field_by_name,
    every_method_requires_a_known_bearer_token,
    a_subscription_id_binds_to_one_registration_only,
    updating_the_device_token_moves_the_registration,
    unregister_is_idempotent,
    device_listing_is_in_creation_order,
    lookups_of_unknown_or_malformed_ids_fail_clearly,
    admin_endpoints_report_health_and_metrics,
    callback_tokens_resolve_only_with_the_right_secret,
);

fn apns(token: &str) -> RegisterRequest {
    RegisterRequest {
        device_token: token.into(),
        platform: Platform::Apns.into(),
        app_id: "com.example.mail".into(),
        ..Default::default()
    }
}

async fn register(node: &TestNode, request: RegisterRequest) -> Registration {
    node.client()
        .await
        .register(authed(request))
        .await
        .expect("register")
        .into_inner()
}

async fn get(node: &TestNode, id: &str) -> Result<Registration, tonic::Status> {
    let request = GetRegistrationRequest {
        registration_id: id.into(),
    };
    node.client()
        .await
        .get_registration(authed(request))
        .await
        .map(|r| r.into_inner())
}

async fn register_mints_a_callback_url_shown_once(node: &TestNode) {
    let created = register(
        node,
        RegisterRequest {
            inbox_folder_id: "AQMkInbox==".into(),
            ..apns(APNS_TOKEN)
        },
    )
    .await;
    let prefix = "https://push.example.test/ews/v1/us-east-1/";
    let token = created
        .callback_url
        .strip_prefix(prefix)
        .expect("callback url shape");
    assert_eq!(token.len(), 43, "128-bit secret plus the id, base64url");
    assert_eq!(created.state(), State::Pending);
    assert_eq!(created.device_token, APNS_TOKEN.to_ascii_lowercase());
    assert_eq!(created.home_region, "us-east-1");
    assert_eq!(created.inbox_folder_id, "AQMkInbox==");
    assert!(created.created_at.is_some());

    let read = get(node, &created.registration_id).await.expect("get");
    assert_eq!(
        read.callback_url, "",
        "the callback URL is never returned again"
    );
    assert_eq!(
        Registration {
            callback_url: created.callback_url.clone(),
            ..read
        },
        created
    );

    // Another home, which this node (alone in us-east-1) does not serve: its registrations
    // are written only in that home's region.
    let elsewhere = node
        .client()
        .await
        .register(authed(RegisterRequest {
            home_region: "eu-west-1".into(),
            ..apns(APNS_TOKEN)
        }))
        .await
        .expect_err("a home not served here");
    assert_eq!(elsewhere.code(), tonic::Code::Unavailable);
    assert!(
        elsewhere.message().contains("eu-west-1 is not served"),
        "{}",
        elsewhere.message()
    );
}

async fn register_refuses_each_bad_field_by_name(node: &TestNode) {
    let fcm = |token: &str| RegisterRequest {
        device_token: token.into(),
        platform: Platform::Fcm.into(),
        app_id: "com.example.mail.android".into(),
        ..Default::default()
    };
    let cases = [
        (
            RegisterRequest {
                platform: 0,
                ..apns(APNS_TOKEN)
            },
            "platform",
        ),
        (apns(""), "device_token"),
        (apns("abc"), "device_token"),
        (apns(&APNS_TOKEN.replace('A', "Z")), "device_token"),
        (fcm("not a token"), "device_token"),
        (
            RegisterRequest {
                app_id: String::new(),
                ..apns(APNS_TOKEN)
            },
            "app_id",
        ),
        (
            RegisterRequest {
                app_id: "com.unknown".into(),
                ..apns(APNS_TOKEN)
            },
            "app_id",
        ),
        (
            RegisterRequest {
                app_id: "com.example.mail.android".into(),
                ..apns(APNS_TOKEN)
            },
            "app_id",
        ),
        (
            RegisterRequest {
                home_region: "mars-1".into(),
                ..apns(APNS_TOKEN)
            },
            "home_region",
        ),
        (
            RegisterRequest {
                subscription_id: "has space".into(),
                ..apns(APNS_TOKEN)
            },
            "subscription_id",
        ),
        (
            RegisterRequest {
                inbox_folder_id: "x".repeat(600),
                ..apns(APNS_TOKEN)
            },
            "inbox_folder_id",
        ),
    ];
    let mut client = node.client().await;
    for (request, field) in cases {
        let status = client.register(authed(request)).await.expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(
            status.message().starts_with(field),
            "{field}: {}",
            status.message()
        );
    }
    let ok = client
        .register(authed(fcm(FCM_TOKEN)))
        .await
        .expect("valid FCM registration");
    assert_eq!(ok.into_inner().platform(), Platform::Fcm);
    let listed = client
        .list_device_registrations(authed(ListDeviceRegistrationsRequest {
            device_token: APNS_TOKEN.into(),
        }))
        .await
        .expect("list");
    assert!(
        listed.into_inner().registrations.is_empty(),
        "refused requests store nothing"
    );
}

fn with_token<T>(token: Option<&str>, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

async fn every_method_requires_a_known_bearer_token(node: &TestNode) {
    let mut client = node.client().await;
    for token in [None, Some("wrong-token")] {
        let codes = [
            client
                .register(with_token(token, apns(APNS_TOKEN)))
                .await
                .map(drop),
            client
                .get_registration(with_token(token, GetRegistrationRequest::default()))
                .await
                .map(drop),
            client
                .bind_subscription(with_token(token, BindSubscriptionRequest::default()))
                .await
                .map(drop),
            client
                .update_device_token(with_token(token, UpdateDeviceTokenRequest::default()))
                .await
                .map(drop),
            client
                .unregister(with_token(token, UnregisterRequest::default()))
                .await
                .map(drop),
            client
                .list_device_registrations(with_token(
                    token,
                    ListDeviceRegistrationsRequest::default(),
                ))
                .await
                .map(drop),
        ];
        for result in codes {
            assert_eq!(result.unwrap_err().code(), Code::Unauthenticated);
        }
    }
}

async fn a_subscription_id_binds_to_one_registration_only(node: &TestNode) {
    let mut client = node.client().await;
    let first = register(node, apns(APNS_TOKEN)).await;
    let second = register(node, apns(APNS_TOKEN_2)).await;
    let bind = |id: &str, sub: &str| BindSubscriptionRequest {
        registration_id: id.into(),
        subscription_id: sub.into(),
    };

    let bound = client
        .bind_subscription(authed(bind(&first.registration_id, SUB_A)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bound.subscription_id, SUB_A);
    let again = client
        .bind_subscription(authed(bind(&first.registration_id, SUB_A)))
        .await;
    assert_eq!(
        again.unwrap().into_inner().subscription_id,
        SUB_A,
        "binding again is idempotent"
    );

    let taken = client
        .bind_subscription(authed(bind(&second.registration_id, SUB_A)))
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);
    let rebind = client
        .bind_subscription(authed(bind(&first.registration_id, SUB_B)))
        .await
        .unwrap_err();
    assert_eq!(rebind.code(), Code::AlreadyExists);
    let at_register = client
        .register(authed(RegisterRequest {
            subscription_id: SUB_A.into(),
            ..apns(APNS_TOKEN_2)
        }))
        .await;
    assert_eq!(at_register.unwrap_err().code(), Code::AlreadyExists);
    let bad = client
        .bind_subscription(authed(bind(&second.registration_id, "")))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().starts_with("subscription_id"));

    client
        .unregister(authed(UnregisterRequest {
            registration_id: first.registration_id.clone(),
        }))
        .await
        .unwrap();
    let freed = client
        .bind_subscription(authed(bind(&second.registration_id, SUB_A)))
        .await;
    assert_eq!(
        freed.unwrap().into_inner().subscription_id,
        SUB_A,
        "an unregistered owner frees the id"
    );

    let with_sub = client
        .register(authed(RegisterRequest {
            subscription_id: SUB_B.into(),
            ..apns(APNS_TOKEN)
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        get(node, &with_sub.registration_id)
            .await
            .unwrap()
            .subscription_id,
        SUB_B
    );
}

async fn updating_the_device_token_moves_the_registration(node: &TestNode) {
    let mut client = node.client().await;
    let created = register(
        node,
        RegisterRequest {
            subscription_id: SUB_A.into(),
            ..apns(APNS_TOKEN)
        },
    )
    .await;
    let update = |token: &str| UpdateDeviceTokenRequest {
        registration_id: created.registration_id.clone(),
        device_token: token.into(),
    };
    let moved = client
        .update_device_token(authed(update(APNS_TOKEN_2)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(moved.device_token, APNS_TOKEN_2);
    assert_eq!(moved.subscription_id, SUB_A);
    assert_eq!(
        get(node, &created.registration_id)
            .await
            .unwrap()
            .device_token,
        APNS_TOKEN_2
    );

    let list = |token: &str| ListDeviceRegistrationsRequest {
        device_token: token.into(),
    };
    let old = client
        .list_device_registrations(authed(list(APNS_TOKEN)))
        .await
        .unwrap()
        .into_inner();
    assert!(old.registrations.is_empty());
    let new = client
        .list_device_registrations(authed(list(APNS_TOKEN_2)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(new.registrations.len(), 1);

    let invalid = client
        .update_device_token(authed(update(FCM_TOKEN)))
        .await
        .unwrap_err();
    assert_eq!(
        invalid.code(),
        Code::InvalidArgument,
        "an FCM token for an APNs registration"
    );
    let unknown = client
        .update_device_token(authed(UpdateDeviceTokenRequest {
            registration_id: "00".repeat(16),
            device_token: APNS_TOKEN.into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    // The subscription stays bound to the moved registration.
    let other = register(node, apns(APNS_TOKEN)).await;
    let taken = client
        .bind_subscription(authed(BindSubscriptionRequest {
            registration_id: other.registration_id,
            subscription_id: SUB_A.into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);
}

async fn unregister_is_idempotent(node: &TestNode) {
    let mut client = node.client().await;
    let created = register(node, apns(APNS_TOKEN)).await;
    let request = || UnregisterRequest {
        registration_id: created.registration_id.clone(),
    };
    client
        .unregister(authed(request()))
        .await
        .expect("first unregister");
    assert_eq!(
        get(node, &created.registration_id)
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    client
        .unregister(authed(request()))
        .await
        .expect("second unregister succeeds too");
    let malformed = client
        .unregister(authed(UnregisterRequest {
            registration_id: "nope".into(),
        }))
        .await;
    assert_eq!(malformed.unwrap_err().code(), Code::InvalidArgument);
}

async fn device_listing_is_in_creation_order(node: &TestNode) {
    let mut client = node.client().await;
    let mut ids = Vec::new();
    for inbox in ["AQMkOne==", "AQMkTwo==", "AQMkThree=="] {
        let created = register(
            node,
            RegisterRequest {
                inbox_folder_id: inbox.into(),
                ..apns(APNS_TOKEN)
            },
        )
        .await;
        ids.push(created.registration_id);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    register(node, apns(APNS_TOKEN_2)).await;
    let listed = client
        .list_device_registrations(authed(ListDeviceRegistrationsRequest {
            device_token: APNS_TOKEN.into(),
        }))
        .await
        .unwrap()
        .into_inner();
    let listed: Vec<String> = listed
        .registrations
        .into_iter()
        .map(|r| r.registration_id)
        .collect();
    assert_eq!(listed, ids);
    let bad = client
        .list_device_registrations(authed(ListDeviceRegistrationsRequest {
            device_token: "??".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
}

async fn lookups_of_unknown_or_malformed_ids_fail_clearly(node: &TestNode) {
    assert_eq!(
        get(node, &"ab".repeat(16)).await.unwrap_err().code(),
        Code::NotFound
    );
    let malformed = get(node, "not-an-id").await.unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert!(malformed.message().starts_with("registration_id"));
    assert_eq!(
        get(node, "").await.unwrap_err().code(),
        Code::InvalidArgument
    );
}

async fn admin_endpoints_report_health_and_metrics(node: &TestNode) {
    register(node, apns(APNS_TOKEN)).await;
    register(node, apns(APNS_TOKEN_2)).await;
    let _ = get(node, "bad").await;
    let (status, body) = http_get(node.node.admin_addr, "/healthz").await;
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, body) = http_get(node.node.admin_addr, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let (status, metrics) = http_get(node.node.admin_addr, "/metrics").await;
    assert_eq!(status, 200);
    for line in [
        r#"herald_grpc_requests_total{method="Register",code="OK"} 2"#,
        r#"herald_grpc_requests_total{method="GetRegistration",code="INVALID_ARGUMENT"} 1"#,
        r#"herald_registrations{state="pending"} 2"#,
        r#"herald_registrations{state="dead"} 0"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line} in\n{metrics}"
        );
    }
    assert!(metrics.contains("herald_grpc_request_duration_seconds_bucket"));
    assert!(
        !metrics.contains(&APNS_TOKEN.to_ascii_lowercase()),
        "no tokens in label values"
    );
}

async fn callback_tokens_resolve_only_with_the_right_secret(node: &TestNode) {
    let created = register(node, apns(APNS_TOKEN)).await;
    let token = created.callback_url.rsplit('/').next().unwrap().to_owned();
    let registry = &node.node.registry;
    let found = registry
        .resolve_callback(&token)
        .await
        .unwrap()
        .expect("the token resolves");
    assert_eq!(found.id.as_str(), created.registration_id);
    // Same registration id, different secret.
    let mut forged = token.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert!(registry.resolve_callback(&forged).await.unwrap().is_none());
    assert!(
        registry
            .resolve_callback("garbage")
            .await
            .unwrap()
            .is_none()
    );
}
