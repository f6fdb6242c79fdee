//! One assertion per row of apns-fcm.md §F.5.

use std::time::{Duration, SystemTime};

use super::*;

fn apns_body(reason: &str) -> Vec<u8> {
    format!(r#"{{"reason":"{reason}"}}"#).into_bytes()
}

fn dead(v: &Verdict) -> bool {
    matches!(v, Verdict::TokenDead { .. })
}

fn refused(v: &Verdict) -> bool {
    matches!(v, Verdict::TokenRefused { .. })
}

fn bug(v: &Verdict) -> bool {
    matches!(v, Verdict::Bug { .. })
}

fn pause(v: &Verdict) -> bool {
    matches!(v, Verdict::PauseApp { .. })
}

fn retry(v: &Verdict, scope: RetryScope) -> bool {
    matches!(v, Verdict::Retry { scope: s, .. } if *s == scope)
}

#[test]
fn apns_200_is_delivered() {
    assert_eq!(apns(200, b"", None), Verdict::Delivered);
}

#[test]
fn apns_bad_or_foreign_device_tokens_are_refusals_delivery_judges() {
    for reason in ["BadDeviceToken", "DeviceTokenNotForTopic"] {
        assert!(refused(&apns(400, &apns_body(reason), None)), "{reason}");
    }
}

#[test]
fn apns_malformed_requests_are_bugs() {
    for reason in [
        "BadCollapseId",
        "BadExpirationDate",
        "BadMessageId",
        "BadPriority",
        "BadTopic",
        "DuplicateHeaders",
        "InvalidPushType",
        "MissingDeviceToken",
        "MissingTopic",
        "PayloadEmpty",
    ] {
        assert!(bug(&apns(400, &apns_body(reason), None)), "{reason}");
    }
    assert!(bug(&apns(404, &apns_body("BadPath"), None)));
    assert!(bug(&apns(405, &apns_body("MethodNotAllowed"), None)));
    assert!(bug(&apns(413, &apns_body("PayloadTooLarge"), None)));
}

#[test]
fn apns_idle_timeout_reconnects_and_retries_at_once() {
    let v = apns(400, &apns_body("IdleTimeout"), None);
    assert!(retry(&v, RetryScope::Reconnect));
    assert!(matches!(v, Verdict::Retry { after: None, .. }));
}

#[test]
fn apns_credential_and_entitlement_problems_pause_the_app() {
    assert!(pause(&apns(400, &apns_body("TopicDisallowed"), None)));
    for reason in [
        "InvalidProviderToken",
        "MissingProviderToken",
        "BadEnvironmentKeyIdInToken",
        "BadCertificate",
        "BadCertificateEnvironment",
    ] {
        assert!(pause(&apns(403, &apns_body(reason), None)), "{reason}");
    }
}

#[test]
fn apns_expired_provider_token_refreshes_auth() {
    assert!(matches!(
        apns(403, &apns_body("ExpiredProviderToken"), None),
        Verdict::RefreshAuth { .. }
    ));
}

#[test]
fn apns_unrelated_key_id_retries_on_a_new_connection() {
    assert!(retry(
        &apns(403, &apns_body("UnrelatedKeyIdInToken"), None),
        RetryScope::Reconnect
    ));
}

#[test]
fn apns_forbidden_drops_the_message_only() {
    assert!(matches!(
        apns(403, &apns_body("Forbidden"), None),
        Verdict::Drop { .. }
    ));
}

#[test]
fn apns_unregistered_is_dead_since_apples_timestamp() {
    let body = br#"{"reason":"Unregistered","timestamp":1458114061260}"#;
    assert!(matches!(
        apns(410, body, None),
        Verdict::TokenDead {
            since_ms: Some(1_458_114_061_260),
            ..
        }
    ));
    assert!(dead(&apns(410, &apns_body("ExpiredToken"), None)));
}

#[test]
fn apns_too_many_requests_backs_off_that_device_for_at_least_a_minute() {
    let v = apns(
        429,
        &apns_body("TooManyRequests"),
        Some(Duration::from_secs(5)),
    );
    assert_eq!(
        v,
        Verdict::Retry {
            scope: RetryScope::Device,
            after: Some(Duration::from_secs(60)),
            reason: "apns 429 TooManyRequests".into()
        }
    );
}

#[test]
fn apns_too_many_token_updates_stops_minting() {
    assert_eq!(
        apns(429, &apns_body("TooManyProviderTokenUpdates"), None),
        Verdict::AuthThrottled {
            after: Duration::from_secs(60)
        }
    );
}

#[test]
fn apns_server_errors_retry() {
    let after = Some(Duration::from_secs(7));
    assert!(retry(
        &apns(500, &apns_body("InternalServerError"), after),
        RetryScope::Backoff
    ));
    for reason in ["ServiceUnavailable", "Shutdown"] {
        let v = apns(503, &apns_body(reason), after);
        assert!(retry(&v, RetryScope::Reconnect), "{reason}");
        assert!(matches!(v, Verdict::Retry { after: Some(a), .. } if a == Duration::from_secs(7)));
    }
}

#[test]
fn apns_unknown_reasons_fall_back_on_the_status_class() {
    assert!(bug(&apns(400, &apns_body("SomethingNew"), None)));
    assert!(bug(&apns(400, b"not json", None)));
    assert!(retry(&apns(502, b"", None), RetryScope::Backoff));
}

#[test]
fn transport_failures_retry_on_a_fresh_connection() {
    assert!(retry(&transport_failure("GOAWAY"), RetryScope::Reconnect));
}

fn fcm_body(status: &str, code: Option<&str>, extra: &str) -> Vec<u8> {
    let fcm_detail = code
        .map(|c| {
            format!(
                r#"{{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"{c}"}}"#
            )
        })
        .unwrap_or_default();
    let separator = if fcm_detail.is_empty() || extra.is_empty() {
        ""
    } else {
        ","
    };
    format!(
        r#"{{"error":{{"code":0,"message":"m","status":"{status}","details":[{fcm_detail}{separator}{extra}]}}}}"#
    )
    .into_bytes()
}

#[test]
fn fcm_200_is_delivered() {
    assert_eq!(
        fcm(200, br#"{"name":"projects/p/messages/1"}"#, None),
        Verdict::Delivered
    );
}

#[test]
fn fcm_invalid_tokens_are_dead_other_invalid_arguments_are_bugs() {
    let violation = r#"{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"message.token","description":"Invalid registration token"}]}"#;
    assert!(dead(&fcm(
        400,
        &fcm_body("INVALID_ARGUMENT", Some("INVALID_ARGUMENT"), violation),
        None
    )));
    let by_message = br#"{"error":{"code":400,"message":"The registration token is not a valid FCM registration token","status":"INVALID_ARGUMENT"}}"#;
    assert!(dead(&fcm(400, by_message, None)));
    let ttl = r#"{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"message.android.ttl"}]}"#;
    assert!(bug(&fcm(
        400,
        &fcm_body("INVALID_ARGUMENT", Some("INVALID_ARGUMENT"), ttl),
        None
    )));
}

#[test]
fn fcm_unauthenticated_refreshes_the_oauth_token() {
    assert!(matches!(
        fcm(401, &fcm_body("UNAUTHENTICATED", None, ""), None),
        Verdict::RefreshAuth { .. }
    ));
}

#[test]
fn fcm_third_party_auth_and_permission_problems_pause_the_app() {
    assert!(pause(&fcm(
        401,
        &fcm_body("UNAUTHENTICATED", Some("THIRD_PARTY_AUTH_ERROR"), ""),
        None
    )));
    assert!(pause(&fcm(
        403,
        &fcm_body("PERMISSION_DENIED", None, ""),
        None
    )));
}

#[test]
fn fcm_sender_mismatch_is_a_refusal_and_unregistered_tokens_are_dead() {
    assert!(refused(&fcm(
        403,
        &fcm_body("PERMISSION_DENIED", Some("SENDER_ID_MISMATCH"), ""),
        None
    )));
    assert!(dead(&fcm(
        404,
        &fcm_body("NOT_FOUND", Some("UNREGISTERED"), ""),
        None
    )));
    assert!(dead(&fcm(404, &fcm_body("NOT_FOUND", None, ""), None)));
}

#[test]
fn fcm_quota_is_retried_per_project_or_per_device() {
    let project = fcm(
        429,
        &fcm_body("RESOURCE_EXHAUSTED", Some("QUOTA_EXCEEDED"), ""),
        None,
    );
    assert!(
        matches!(project, Verdict::Retry { scope: RetryScope::Project, after: Some(a), .. } if a == Duration::from_secs(60))
    );
    let honoured = fcm(
        429,
        &fcm_body("RESOURCE_EXHAUSTED", Some("QUOTA_EXCEEDED"), ""),
        Some(Duration::from_secs(90)),
    );
    assert!(
        matches!(honoured, Verdict::Retry { after: Some(a), .. } if a == Duration::from_secs(90))
    );
    let device = r#"{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"subject":"device","description":"Device message rate exceeded"}]}"#;
    assert!(retry(
        &fcm(
            429,
            &fcm_body("RESOURCE_EXHAUSTED", Some("QUOTA_EXCEEDED"), device),
            None
        ),
        RetryScope::Device
    ));
}

#[test]
fn fcm_server_errors_retry_honouring_retry_after() {
    let after = Some(Duration::from_secs(3));
    for (status, code) in [(500, "INTERNAL"), (503, "UNAVAILABLE")] {
        let v = fcm(status, &fcm_body(code, Some(code), ""), after);
        assert!(
            matches!(v, Verdict::Retry { scope: RetryScope::Backoff, after: Some(a), .. } if a == Duration::from_secs(3)),
            "{code}"
        );
    }
}

#[test]
fn fcm_unknown_answers_fall_back_on_the_status_class() {
    assert!(bug(&fcm(
        400,
        &fcm_body("FAILED_PRECONDITION", Some("UNSPECIFIED_ERROR"), ""),
        None
    )));
    assert!(retry(
        &fcm(502, b"<html>bad gateway</html>", None),
        RetryScope::Backoff
    ));
    assert!(bug(&fcm(418, b"", None)));
}

#[test]
fn retry_after_reads_seconds_and_http_dates() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    assert_eq!(
        retry_after(Some("120"), now),
        Some(Duration::from_secs(120))
    );
    let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
    assert_eq!(
        retry_after(Some(&later), now),
        Some(Duration::from_secs(30))
    );
    let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
    assert_eq!(retry_after(Some(&earlier), now), Some(Duration::ZERO));
    assert_eq!(retry_after(Some("soon"), now), None);
    // Absurd values are capped rather than overflowing the arithmetic that follows.
    for huge in [
        "18446744073709551615",
        "31536000",
        "Fri, 31 Dec 9999 23:59:59 GMT",
    ] {
        assert_eq!(
            retry_after(Some(huge), now),
            Some(MAX_RETRY_AFTER),
            "{huge}"
        );
    }
    assert_eq!(retry_after(None, now), None);
}
