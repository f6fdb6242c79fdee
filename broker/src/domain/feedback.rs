//! The feedback event published when a push provider declares a device token dead, for the
//! internal services that registered it (the Redis stream `herald:feedback`).

use super::{DeviceToken, Platform, RegistrationId, UnixMillis};

/// A registration killed by its push provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadToken {
    pub registration_id: RegistrationId,
    pub device_token: DeviceToken,
    pub platform: Platform,
    pub app_id: String,
    /// The provider's answer, e.g. `apns 410 Unregistered`.
    pub reason: String,
    /// When Herald marked the registration dead.
    pub dead_at: UnixMillis,
    /// APNs `Unregistered`: when Apple says the token stopped working.
    pub provider_since_ms: Option<u64>,
}

impl DeadToken {
    /// The stream entry's fields, as documented in docs/feedback.md.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("event", "token_dead".to_owned()),
            ("registration_id", self.registration_id.as_str().to_owned()),
            ("device_token", self.device_token.as_str().to_owned()),
            (
                "platform",
                match self.platform {
                    Platform::Apns => "apns",
                    Platform::Fcm => "fcm",
                }
                .to_owned(),
            ),
            ("app_id", self.app_id.clone()),
            ("reason", self.reason.clone()),
            ("dead_at_ms", self.dead_at.0.to_string()),
        ];
        if let Some(since) = self.provider_since_ms {
            fields.push(("provider_since_ms", since.to_string()));
        }
        fields
    }
}
