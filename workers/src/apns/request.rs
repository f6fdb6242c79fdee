//! One APNs request: the badge-only payload and the headers, built with `a2`'s types
//! (apns-fcm.md §A.8).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use a2::request::notification::{CollapseId, NotificationOptions, Priority, PushType};
use a2::request::payload::{APS, Payload};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::PushRequest;

/// `{"aps":{"badge":N}}` exactly: a2's builder would add `"mutable-content":0`.
pub(crate) fn body(request: &PushRequest) -> Vec<u8> {
    let payload = Payload {
        options: NotificationOptions::default(),
        device_token: &request.device_token,
        aps: APS {
            badge: Some(request.badge),
            ..APS::default()
        },
        data: Default::default(),
    };
    // A struct of plain fields always serializes.
    serde_json::to_vec(&payload).unwrap_or_default()
}

/// The `apns-*` headers: push type `alert` (a badge is user-visible; `background` may not
/// carry one), priority 5 (not urgent), the app's topic, a collapse id per device, an
/// expiry a badge lifetime away, and the push id for correlation.
pub(crate) fn headers(
    request: &PushRequest,
    topic: &str,
    badge_lifetime: Duration,
    now: SystemTime,
) -> HeaderMap {
    let expiration = now
        .checked_add(badge_lifetime)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let options = NotificationOptions {
        apns_id: Some(&request.push_id)
            .filter(|id| !id.is_empty())
            .map(|s| s.as_str()),
        apns_push_type: Some(PushType::Alert),
        apns_expiration: Some(expiration),
        apns_priority: Some(Priority::Normal),
        apns_topic: Some(topic),
        // Longer than Apple's 64 bytes: sent without, not refused.
        apns_collapse_id: CollapseId::new(&request.collapse_id).ok(),
    };
    let mut headers = HeaderMap::with_capacity(6);
    let mut put = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    if let Some(id) = options.apns_id {
        put("apns-id", id.to_owned());
    }
    if let Some(push_type) = &options.apns_push_type {
        put("apns-push-type", push_type.to_string());
    }
    if let Some(expiration) = options.apns_expiration {
        put("apns-expiration", expiration.to_string());
    }
    if let Some(priority) = &options.apns_priority {
        put("apns-priority", priority.to_string());
    }
    if let Some(topic) = options.apns_topic {
        put("apns-topic", topic.to_owned());
    }
    if let Some(collapse) = &options.apns_collapse_id {
        put("apns-collapse-id", collapse.value.to_owned());
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Provider;

    fn request() -> PushRequest {
        PushRequest {
            provider: Provider::Apns,
            app_id: "com.example.mail".into(),
            device_token: "ab".repeat(32),
            badge: 7,
            new_mail: 2,
            collapse_id: "badge-1f2e".into(),
            push_id: "5b0f2c4e-8a5d-4a4e-9f55-3b6f1d2c9e01".into(),
            attempt: 0,
            send_before: None,
        }
    }

    #[test]
    fn the_body_is_the_badge_and_nothing_else() {
        assert_eq!(body(&request()), br#"{"aps":{"badge":7}}"#);
        let zero = PushRequest {
            badge: 0,
            ..request()
        };
        assert_eq!(body(&zero), br#"{"aps":{"badge":0}}"#, "0 clears the badge");
    }

    #[test]
    fn headers_follow_apples_rules_for_a_badge() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let h = headers(
            &request(),
            "com.example.mail",
            Duration::from_secs(3600),
            now,
        );
        let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
        assert_eq!(get("apns-push-type"), Some("alert"));
        assert_eq!(get("apns-priority"), Some("5"));
        assert_eq!(get("apns-topic"), Some("com.example.mail"));
        assert_eq!(get("apns-collapse-id"), Some("badge-1f2e"));
        assert_eq!(get("apns-expiration"), Some("1800003600"));
        assert_eq!(get("apns-id"), Some("5b0f2c4e-8a5d-4a4e-9f55-3b6f1d2c9e01"));
    }

    #[test]
    fn an_overlong_collapse_id_is_left_out() {
        let long = PushRequest {
            collapse_id: "x".repeat(65),
            ..request()
        };
        let h = headers(&long, "t", Duration::from_secs(1), SystemTime::now());
        assert!(h.get("apns-collapse-id").is_none());
    }
}
