//! What a store operation can fail with.

use herald_cluster::{Epoch, ShardId};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The shard's recorded epoch is newer than the writer's: another node owns it now.
    #[error("shard {shard} is fenced at epoch {}, the write carried {}", current.0, presented.0)]
    Fenced {
        shard: ShardId,
        current: Epoch,
        presented: Epoch,
    },
    /// The record changed since it was read; read it again and retry.
    #[error("the registration was changed concurrently")]
    Conflict,
    #[error("the registration does not exist")]
    NotFound,
    /// The subscription id is bound to another registration.
    #[error("subscription id is bound to registration {0}")]
    SubscriptionTaken(crate::domain::RegistrationId),
    /// The store cannot be reached or answered an error; nothing was written.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Stored data could not be decoded (a bug, or a writer of another version).
    #[error("corrupt record {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

impl From<redis::RedisError> for StoreError {
    fn from(err: redis::RedisError) -> Self {
        Self::Unavailable(Box::new(err))
    }
}

impl From<redis::ParsingError> for StoreError {
    fn from(err: redis::ParsingError) -> Self {
        Self::Corrupt {
            key: "a Redis answer".into(),
            reason: err.to_string(),
        }
    }
}
