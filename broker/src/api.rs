//! The gRPC API: the `herald.v1.Registrations` service, its bearer-token check and its
//! metrics, over the transport-free [`Registry`](crate::registry::Registry).

mod auth;
mod convert;
mod registrations;

pub use auth::ApiTokens;
pub use registrations::{REPLICA_OF_KEY, RegistrationsApi};
