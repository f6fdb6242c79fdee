//! The gRPC API: the `herald.v1.Registrations` service, the guard every gRPC call passes
//! (credentials and rates, before the message is decoded) and its metrics, over the transport-free [`Registry`](crate::registry::Registry).

mod auth;
mod convert;
mod guard;
mod registrations;

pub use auth::ApiTokens;
pub use guard::{GuardLayer, Guarded};
pub use registrations::{REPLICA_OF_KEY, RegistrationsApi};
