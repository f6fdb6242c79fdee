//! The FCM v1 request body: a data message (DESIGN.md §3), collapse key, TTL and priority.

use std::time::Duration;

use serde::Serialize;

use crate::PushRequest;

#[derive(Serialize)]
struct Send<'a> {
    message: Message<'a>,
}

#[derive(Serialize)]
struct Message<'a> {
    token: &'a str,
    data: Data,
    android: Android<'a>,
}

/// FCM data values are strings.
#[derive(Serialize)]
struct Data {
    kind: &'static str,
    badge: String,
    new_mail: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Android<'a> {
    collapse_key: &'a str,
    priority: &'static str,
    ttl: String,
}

/// The body of `messages:send` for `request`. New mail is something the user sees (the app
/// shows a notification), so it goes `high`; a badge-only change goes `normal` — FCM
/// deprioritizes apps whose high-priority messages show nothing.
pub(crate) fn body(request: &PushRequest, ttl: Duration) -> Vec<u8> {
    let send = Send {
        message: Message {
            token: &request.device_token,
            data: Data {
                kind: "mail",
                badge: request.badge.to_string(),
                new_mail: request.new_mail.to_string(),
            },
            android: Android {
                collapse_key: &request.collapse_id,
                priority: if request.new_mail > 0 {
                    "high"
                } else {
                    "normal"
                },
                ttl: format!("{}s", ttl.as_secs()),
            },
        },
    };
    // Plain strings always serialize.
    serde_json::to_vec(&send).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::Provider;

    fn request(new_mail: u32) -> PushRequest {
        PushRequest {
            provider: Provider::Fcm,
            app_id: "com.example.mail.android".into(),
            device_token: "fcm-token-1".into(),
            badge: 12,
            new_mail,
            collapse_id: "badge-77".into(),
            push_id: "p".into(),
            attempt: 0,
            send_before: None,
        }
    }

    #[test]
    fn new_mail_is_a_high_priority_data_message() {
        let body: Value = serde_json::from_slice(&body(&request(3), Duration::from_secs(3600)))
            .unwrap_or_default();
        assert_eq!(
            body,
            json!({"message": {
                "token": "fcm-token-1",
                "data": {"kind": "mail", "badge": "12", "new_mail": "3"},
                "android": {"collapseKey": "badge-77", "priority": "high", "ttl": "3600s"}
            }})
        );
    }

    #[test]
    fn a_badge_only_change_is_normal_priority() {
        let body: Value =
            serde_json::from_slice(&body(&request(0), Duration::from_secs(60))).unwrap_or_default();
        assert_eq!(body["message"]["android"]["priority"], "normal");
        assert_eq!(body["message"]["android"]["ttl"], "60s");
        assert_eq!(body["message"]["data"]["new_mail"], "0");
    }
}
