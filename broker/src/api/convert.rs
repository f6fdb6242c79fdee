//! Domain records to `herald.v1` messages.

use herald_proto::v1;

use crate::domain::{Platform, RegState, RegistrationRecord, UnixMillis};

pub(super) fn platform_from_proto(raw: i32) -> Option<Platform> {
    match v1::Platform::try_from(raw).ok()? {
        v1::Platform::Apns => Some(Platform::Apns),
        v1::Platform::Fcm => Some(Platform::Fcm),
        v1::Platform::Unspecified => None,
    }
}

fn platform(p: Platform) -> v1::Platform {
    match p {
        Platform::Apns => v1::Platform::Apns,
        Platform::Fcm => v1::Platform::Fcm,
    }
}

fn state(s: RegState) -> v1::State {
    match s {
        RegState::Pending => v1::State::Pending,
        RegState::Active => v1::State::Active,
        RegState::Stale => v1::State::Stale,
        RegState::Dead => v1::State::Dead,
    }
}

fn timestamp(t: UnixMillis) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: i64::try_from(t.0 / 1000).unwrap_or(i64::MAX),
        // Below 1e9, so it fits.
        nanos: ((t.0 % 1000) * 1_000_000) as i32,
    }
}

/// The message for `record`; `callback_url` is empty unless given (only `Register` does).
pub(super) fn registration(record: RegistrationRecord, callback_url: String) -> v1::Registration {
    v1::Registration {
        registration_id: record.id.to_string(),
        callback_url,
        device_token: record.device_token.as_str().to_owned(),
        platform: platform(record.platform).into(),
        app_id: record.app_id,
        home_region: record.home_region,
        subscription_id: record
            .subscription_id
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        inbox_folder_id: record.inbox_folder_id.unwrap_or_default(),
        state: state(record.state).into(),
        dead_reason: record.dead_reason.unwrap_or_default(),
        badge: record.badge,
        created_at: Some(timestamp(record.created_at)),
        last_notification_at: record.last_notification_at.map(timestamp),
        last_push_at: record.last_push_at.map(timestamp),
        last_push_outcome: record.last_push_outcome.unwrap_or_default(),
    }
}
