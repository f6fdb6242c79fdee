//! The changes the rest of the node asks of a registration, each applied by its actor in
//! order with every other change (DESIGN.md §4, one writer per registration).

use crate::domain::{SubscriptionId, UnixMillis};

#[derive(Clone, Debug)]
pub enum Command {
    /// `BindSubscription`: bind the EWS subscription id (refused if another one is bound).
    Bind(SubscriptionId),
    /// `UpdateDeviceToken`: the raw token, checked against the registration's platform. A
    /// token of another shard moves the registration there.
    SetToken(String),
    /// `Unregister`: delete the registration.
    Unregister,
    /// The liveness sweep: mark the registration `STALE` if Exchange has not been heard for
    /// it since before `threshold`.
    MarkStale { threshold: UnixMillis },
}

impl Command {
    /// The method name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Bind(_) => "bind",
            Self::SetToken(_) => "set_token",
            Self::Unregister => "unregister",
            Self::MarkStale { .. } => "mark_stale",
        }
    }
}
