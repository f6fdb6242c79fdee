//! Why a request for a registration did not land, and why a command was refused.

use crate::domain::FieldError;
use crate::store::StoreError;

/// Why a request could not be applied by the registration's actor. Every one of them is
/// transient to the caller (answered 503 / `UNAVAILABLE` once retries are spent), never a
/// reason to tell Exchange `Unsubscribe`.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// The registration has no copy in the shard the request went to (it moved, or the
    /// request was routed from an old read): resolve it again.
    #[error("the registration is not in this shard any more")]
    Elsewhere,
    /// The registration is moving to another shard and the move is not finished.
    #[error("the registration is moving to another shard; retry")]
    Moving,
    /// This node does not serve the registration's shard (its owner does).
    #[error(transparent)]
    NotOwner(#[from] herald_cluster::NotOwner),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the subscription actor did not answer: {0}")]
    Actor(String),
}

/// Why a change asked of a registration (an API call) was not made.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The registration does not exist.
    #[error("registration not found")]
    NotFound,
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// The change contradicts the registration (a subscription bound to another one).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Unavailable(#[from] DeliverError),
}

impl From<herald_cluster::NotOwner> for CommandError {
    fn from(err: herald_cluster::NotOwner) -> Self {
        Self::Unavailable(DeliverError::NotOwner(err))
    }
}

impl From<StoreError> for CommandError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::SubscriptionTaken(_) => {
                Self::Refused("subscription_id is bound to another registration".into())
            }
            other => Self::Unavailable(DeliverError::Store(other)),
        }
    }
}
