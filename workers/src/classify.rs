//! What a provider's answer means for the broker (protocol note apns-fcm.md §F.5): pure
//! functions from (HTTP status, body, `Retry-After`) to a [`Verdict`]. They classify on the
//! status and the raw reason string — `a2::ErrorReason` is a closed enum that loses reasons
//! Apple added later — and fall back on the status class for anything unknown.

use std::time::{Duration, SystemTime};

use serde::Deserialize;

/// Where a retry applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryScope {
    /// This request, on a fresh connection (the old one is closed or unusable).
    Reconnect,
    /// This device token only; other devices carry on.
    Device,
    /// The whole project or app: slow every send down (quota).
    Project,
    /// This request with exponential back-off; a per-app circuit breaker watches these.
    Backoff,
}

/// What to do after one provider answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// The token will never work again: mark the registration dead. For APNs `Unregistered`,
    /// `since_ms` is when Apple learned it (only registrations older than that are dead).
    TokenDead {
        reason: String,
        since_ms: Option<u64>,
    },
    /// Send again (the latest badge) after `after` (at least), in `scope`.
    Retry {
        scope: RetryScope,
        after: Option<Duration>,
        reason: String,
    },
    /// "This token is not for you" (APNs `BadDeviceToken`, `DeviceTokenNotForTopic`, FCM
    /// `SENDER_ID_MISMATCH`): a dead token, or the app's environment or project is wrong and
    /// every token is refused. Delivery tells which (`delivery::refusals`).
    TokenRefused {
        reason: String,
    },
    /// The provider credential (APNs JWT, FCM OAuth token) is stale: refresh it, retry once.
    RefreshAuth {
        reason: String,
    },
    /// Minting provider tokens too often: keep the current one, retry later.
    AuthThrottled {
        after: Duration,
    },
    /// The app's credentials or entitlements are wrong: stop sending for this app and alert.
    PauseApp {
        reason: String,
    },
    /// This one message is refused for good (not the token): drop it and count it.
    Drop {
        reason: String,
    },
    /// Our request was malformed: a bug in Herald or its configuration. Drop it and alert.
    Bug {
        reason: String,
    },
}

/// The longest wait a provider can ask for: a `Retry-After` beyond it (a year, `u64::MAX`
/// seconds, a date far ahead) is read as this, so no later arithmetic on it can overflow and
/// no burst waits longer than its badge is worth.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// A `Retry-After` value: delta seconds or an HTTP date, relative to `now`; at most
/// [`MAX_RETRY_AFTER`].
pub fn retry_after(raw: Option<&str>, now: SystemTime) -> Option<Duration> {
    let raw = raw?.trim();
    let wait = match raw.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = httpdate::parse_http_date(raw).ok()?;
            at.duration_since(now).unwrap_or_default()
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

const AT_LEAST_A_MINUTE: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
struct ApnsBody {
    reason: Option<String>,
    timestamp: Option<u64>,
}

/// Classifies an APNs answer.
pub fn apns(status: u16, body: &[u8], retry_after: Option<Duration>) -> Verdict {
    if status == 200 {
        return Verdict::Delivered;
    }
    let parsed: Option<ApnsBody> = serde_json::from_slice(body).ok();
    let timestamp = parsed.as_ref().and_then(|b| b.timestamp);
    let reason = parsed.and_then(|b| b.reason).unwrap_or_default();
    let said = |what: &str| format!("apns {status} {what}");
    let dead = |since_ms| Verdict::TokenDead {
        reason: said(&reason),
        since_ms,
    };
    let retry = |scope, after| Verdict::Retry {
        scope,
        after,
        reason: said(&reason),
    };
    match (status, reason.as_str()) {
        (400, "BadDeviceToken" | "DeviceTokenNotForTopic") => Verdict::TokenRefused {
            reason: said(&reason),
        },
        (
            400,
            "BadCollapseId" | "BadExpirationDate" | "BadMessageId" | "BadPriority" | "BadTopic"
            | "DuplicateHeaders" | "InvalidPushType" | "MissingDeviceToken" | "MissingTopic"
            | "PayloadEmpty",
        )
        | (404, "BadPath")
        | (405, "MethodNotAllowed")
        | (413, "PayloadTooLarge") => Verdict::Bug {
            reason: said(&reason),
        },
        (400, "IdleTimeout") => retry(RetryScope::Reconnect, None),
        (400, "TopicDisallowed")
        | (
            403,
            "InvalidProviderToken"
            | "MissingProviderToken"
            | "BadEnvironmentKeyIdInToken"
            | "BadCertificate"
            | "BadCertificateEnvironment",
        ) => Verdict::PauseApp {
            reason: said(&reason),
        },
        (403, "ExpiredProviderToken") => Verdict::RefreshAuth {
            reason: said(&reason),
        },
        (403, "UnrelatedKeyIdInToken") => retry(RetryScope::Reconnect, None),
        (403, "Forbidden") => Verdict::Drop {
            reason: said(&reason),
        },
        (410, "Unregistered") => dead(timestamp),
        (410, "ExpiredToken") => dead(None),
        (429, "TooManyRequests") => retry(
            RetryScope::Device,
            Some(retry_after.unwrap_or_default().max(AT_LEAST_A_MINUTE)),
        ),
        (429, "TooManyProviderTokenUpdates") => Verdict::AuthThrottled {
            after: retry_after.unwrap_or_default().max(AT_LEAST_A_MINUTE),
        },
        (500, _) => retry(RetryScope::Backoff, retry_after),
        (503, _) => retry(RetryScope::Reconnect, retry_after),
        _ => by_status_class(
            status,
            said(&format!("unknown reason {reason:?}")),
            retry_after,
        ),
    }
}

/// Anything not in the tables: 4xx is our bug, 5xx is worth retrying.
fn by_status_class(status: u16, reason: String, retry_after: Option<Duration>) -> Verdict {
    tracing::warn!(status, %reason, "unclassified provider answer");
    if (500..600).contains(&status) {
        Verdict::Retry {
            scope: RetryScope::Backoff,
            after: retry_after,
            reason,
        }
    } else {
        Verdict::Bug { reason }
    }
}

#[derive(Deserialize)]
struct FcmBody {
    error: Option<FcmError>,
}

#[derive(Deserialize)]
struct FcmError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<FcmDetail>,
}

#[derive(Deserialize)]
struct FcmDetail {
    #[serde(rename = "@type", default)]
    kind: String,
    #[serde(rename = "errorCode")]
    error_code: Option<String>,
    #[serde(rename = "fieldViolations", default)]
    field_violations: Vec<FieldViolation>,
    #[serde(default)]
    violations: Vec<QuotaViolation>,
}

#[derive(Deserialize)]
struct FieldViolation {
    #[serde(default)]
    field: String,
}

#[derive(Deserialize)]
struct QuotaViolation {
    #[serde(default)]
    subject: String,
    #[serde(default)]
    description: String,
}

/// Classifies an FCM v1 answer.
pub fn fcm(status: u16, body: &[u8], retry_after: Option<Duration>) -> Verdict {
    if status == 200 {
        return Verdict::Delivered;
    }
    let error = serde_json::from_slice::<FcmBody>(body)
        .ok()
        .and_then(|b| b.error);
    let Some(error) = error else {
        return by_status_class(
            status,
            format!("fcm {status} without an error body"),
            retry_after,
        );
    };
    let code = error
        .details
        .iter()
        .find(|d| d.kind.ends_with("google.firebase.fcm.v1.FcmError"))
        .and_then(|d| d.error_code.clone())
        .unwrap_or_else(|| error.status.clone());
    let said = format!("fcm {status} {code}");
    let token_field = error
        .details
        .iter()
        .flat_map(|d| &d.field_violations)
        .any(|v| v.field.contains("token"))
        || error.message.contains("not a valid FCM registration token");
    let device_quota = error.details.iter().flat_map(|d| &d.violations).any(|v| {
        let text = format!("{} {}", v.subject, v.description).to_ascii_lowercase();
        text.contains("device")
    });
    match (status, code.as_str()) {
        (400, "INVALID_ARGUMENT") if token_field => Verdict::TokenDead {
            reason: said,
            since_ms: None,
        },
        (400, "INVALID_ARGUMENT") => Verdict::Bug { reason: said },
        (401, "THIRD_PARTY_AUTH_ERROR") => Verdict::PauseApp { reason: said },
        (401, _) => Verdict::RefreshAuth { reason: said },
        (403, "SENDER_ID_MISMATCH") => Verdict::TokenRefused { reason: said },
        (404, "UNREGISTERED" | "NOT_FOUND") => Verdict::TokenDead {
            reason: said,
            since_ms: None,
        },
        (403, "PERMISSION_DENIED") => Verdict::PauseApp { reason: said },
        (429, _) if device_quota => Verdict::Retry {
            scope: RetryScope::Device,
            after: Some(retry_after.unwrap_or_default().max(AT_LEAST_A_MINUTE)),
            reason: said,
        },
        (429, _) => Verdict::Retry {
            scope: RetryScope::Project,
            after: Some(retry_after.unwrap_or(AT_LEAST_A_MINUTE)),
            reason: said,
        },
        (500, "INTERNAL") | (503, "UNAVAILABLE") => Verdict::Retry {
            scope: RetryScope::Backoff,
            after: retry_after,
            reason: said,
        },
        _ => by_status_class(status, said, retry_after),
    }
}

/// A connection reset, GOAWAY, TLS failure or timeout: retry on a fresh connection (a badge
/// resend is idempotent).
pub fn transport_failure(what: &str) -> Verdict {
    Verdict::Retry {
        scope: RetryScope::Reconnect,
        after: None,
        reason: format!("transport: {what}"),
    }
}

#[cfg(test)]
mod tests;
