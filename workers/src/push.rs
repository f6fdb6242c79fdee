//! The port between the broker and delivery: a [`PushRequest`] in, a [`PushOutcome`] out.
//! The broker acts on outcomes only, never on provider details.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The push provider a device is reached through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Apns,
    Fcm,
}

/// One push to one device: its total badge, and how many new messages arrived since the
/// last push (FCM's "new mail" data message).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushRequest {
    pub provider: Provider,
    /// The APNs topic (bundle id) or the Firebase app.
    pub app_id: String,
    pub device_token: String,
    pub badge: u32,
    pub new_mail: u32,
    /// Replaces an undelivered earlier push to the same device.
    pub collapse_id: String,
    /// Names this push in logs and to APNs (`apns-id`, a UUID); the same for every retry
    /// of one burst.
    #[serde(default)]
    pub push_id: String,
    /// How many times this burst was already retried (drives the back-off).
    #[serde(default)]
    pub attempt: u32,
    /// The last moment the push may leave: the end of the sender's lease on the device's
    /// shard. A push still waiting for a delivery slot then is not sent; it comes back to
    /// be retried by whoever holds the shard.
    #[serde(skip)]
    pub send_before: Option<std::time::Instant>,
}

impl fmt::Debug for PushRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Device tokens never appear in logs in clear.
        f.debug_struct("PushRequest")
            .field("provider", &self.provider)
            .field("app_id", &self.app_id)
            .field("badge", &self.badge)
            .field("new_mail", &self.new_mail)
            .field("push_id", &self.push_id)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

/// What became of a push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    Delivered,
    /// The provider says the token will never work again. `since_ms` (APNs `Unregistered`)
    /// is when it stopped working: a registration made after that is not dead.
    TokenDead {
        reason: String,
        since_ms: Option<u64>,
    },
    /// Not delivered now; the provider asks to wait.
    RetryAfter(Duration),
    /// Not delivered, for a reason retrying will not fix.
    Failed {
        reason: String,
    },
}

impl PushOutcome {
    /// The short name recorded on the registration (`last_push_outcome`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::TokenDead { .. } => "token_dead",
            Self::RetryAfter(_) => "retrying",
            Self::Failed { .. } => "failed",
        }
    }
}

/// A boxed future, so senders can be used as trait objects.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = PushOutcome> + Send + 'a>>;

/// Delivers pushes.
pub trait PushSender: Send + Sync + fmt::Debug + 'static {
    fn send(&self, request: PushRequest) -> SendFuture<'_>;
}
