//! The stored registration record.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use herald_cluster::ShardId;

use super::callback::CallbackSecretHash;
use super::ids::{DeviceToken, RegistrationId, SubscriptionId};
use super::progress::Progress;

/// Milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixMillis(pub u64);

impl UnixMillis {
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }
}

/// The push provider a device is reached through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Platform {
    Apns,
    Fcm,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Apns => "apns",
            Self::Fcm => "fcm",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "apns" => Some(Self::Apns),
            "fcm" => Some(Self::Fcm),
            _ => None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a registration is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegState {
    /// Registered; nothing heard from Exchange yet.
    Pending,
    Active,
    /// Silent for more than twice the expected heartbeat interval.
    Stale,
    /// The token or the subscription is gone for good.
    Dead,
}

impl RegState {
    pub const ALL: [RegState; 4] = [Self::Pending, Self::Active, Self::Stale, Self::Dead];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Stale => "stale",
            Self::Dead => "dead",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

impl RegistrationRecord {
    /// An active APNs registration for unit tests: id bytes and device token from `n`,
    /// app `com.example.mail`, nothing else set.
    #[cfg(test)]
    pub(crate) fn sample(n: u8) -> Self {
        Self {
            id: RegistrationId::from_bytes([n; 16]),
            device_token: DeviceToken::from_stored(format!("{n:02x}").repeat(32)),
            platform: Platform::Apns,
            app_id: "com.example.mail".into(),
            home_region: "us-east-1".into(),
            subscription_id: None,
            inbox_folder_id: None,
            state: RegState::Active,
            dead_reason: None,
            badge: 0,
            created_at: UnixMillis(0),
            last_notification_at: None,
            last_watermark: None,
            progress: Progress::default(),
            last_push_at: None,
            last_push_outcome: None,
            callback_hash: super::callback::CallbackSecretHash([0; 32]),
            moving_to: None,
            version: 1,
        }
    }

    /// When Exchange was last heard for a registration that should be hearing from it
    /// (pending or active, and not leaving this copy): its last notification, else its
    /// creation. `None` otherwise.
    pub fn last_heard(&self) -> Option<UnixMillis> {
        (matches!(self.state, RegState::Pending | RegState::Active) && self.moving_to.is_none())
            .then(|| self.last_notification_at.unwrap_or(self.created_at))
    }

    /// The shard this copy of the registration lives in: its device token's.
    pub fn shard(&self) -> ShardId {
        self.device_token.shard()
    }

    /// Since when this copy has work its shard's owner must finish — a burst to flush, or a
    /// move to complete (then 0: at once). The shard's pending index holds it by this time.
    pub fn pending_since(&self) -> Option<UnixMillis> {
        match (&self.moving_to, &self.progress.burst) {
            (Some(_), _) => Some(UnixMillis(0)),
            (None, Some(burst)) => Some(burst.first_at),
            (None, None) => None,
        }
    }
}

/// Everything Herald stores about one registration. No mailbox address, no user name, no
/// password; the callback token only as a hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrationRecord {
    pub id: RegistrationId,
    pub device_token: DeviceToken,
    pub platform: Platform,
    pub app_id: String,
    pub home_region: String,
    pub subscription_id: Option<SubscriptionId>,
    pub inbox_folder_id: Option<String>,
    pub state: RegState,
    pub dead_reason: Option<String>,
    pub badge: u32,
    pub created_at: UnixMillis,
    pub last_notification_at: Option<UnixMillis>,
    /// The last EWS watermark seen for the subscription (opaque; equality only).
    pub last_watermark: Option<String>,
    /// Inbox count, recent notification keys and the pending burst.
    pub progress: Progress,
    pub last_push_at: Option<UnixMillis>,
    pub last_push_outcome: Option<String>,
    pub callback_hash: CallbackSecretHash,
    /// Set while the registration moves to the shard of this new device token: this copy is
    /// frozen until the move completes (docs/subscriptions.md, "Changing the device token").
    pub moving_to: Option<DeviceToken>,
    /// Bumped by every write of the registration, wherever its copy lives: a move carries it
    /// on, so a newer copy always has a larger version than an older one. 0 before the
    /// first write.
    pub version: u64,
}
