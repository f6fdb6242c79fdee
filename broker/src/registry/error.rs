//! The registry's errors, each mapped once to a gRPC code.

use tonic::{Code, Status};

use crate::domain::FieldError;
use crate::store::StoreError;
use crate::subscription::{CommandError, DeliverError};
use herald_cluster::NotOwner;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    InvalidArgument(#[from] FieldError),
    #[error("registration not found")]
    NotFound,
    /// Not in this region's replica of its home, which may lag the home's primary.
    #[error(
        "registration not found in this region's replica of home {0} (a replica may lag its primary by the replication lag)"
    )]
    NotInReplica(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error(transparent)]
    NotOwner(#[from] NotOwner),
    /// The registration's actor could not apply the change now (the registration is
    /// moving, its actor did not answer in time); the caller may retry.
    #[error("{0}")]
    Unavailable(String),
    #[error("registration store: {0}")]
    Store(#[source] StoreError),
    #[error("no randomness available: {0}")]
    Entropy(String),
}

impl RegistryError {
    pub(super) fn entropy(err: getrandom::Error) -> Self {
        Self::Entropy(err.to_string())
    }

    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::NotFound | Self::NotInReplica(_) => Code::NotFound,
            Self::AlreadyExists(_) => Code::AlreadyExists,
            Self::NotOwner(_) | Self::Store(_) | Self::Entropy(_) | Self::Unavailable(_) => {
                Code::Unavailable
            }
        }
    }
}

impl From<StoreError> for RegistryError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => Self::NotFound,
            StoreError::SubscriptionTaken(_) => {
                Self::AlreadyExists("subscription_id is bound to another registration".into())
            }
            other => Self::Store(other),
        }
    }
}

impl From<CommandError> for RegistryError {
    fn from(err: CommandError) -> Self {
        match err {
            CommandError::NotFound => Self::NotFound,
            CommandError::Invalid(field) => Self::InvalidArgument(field),
            CommandError::Refused(why) => Self::AlreadyExists(why),
            CommandError::Unavailable(DeliverError::Store(store)) => store.into(),
            CommandError::Unavailable(DeliverError::NotOwner(not_owner)) => {
                Self::NotOwner(not_owner)
            }
            CommandError::Unavailable(other) => Self::Unavailable(format!("{other}; retry")),
        }
    }
}

impl From<RegistryError> for Status {
    fn from(err: RegistryError) -> Self {
        let message = match &err {
            // Say what is wrong without leaking internals of the store.
            RegistryError::Store(StoreError::Fenced { .. }) | RegistryError::NotOwner(_) => {
                "this node does not own the registration's shard; retry".to_owned()
            }
            RegistryError::Store(_) => "the registration store is unavailable; retry".to_owned(),
            other => other.to_string(),
        };
        Status::new(err.code(), message)
    }
}
