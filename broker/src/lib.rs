//! The Herald node: the registration domain, the registration store (Redis, or in memory),
//! the gRPC API, the admin listener, and the `herald` binary that wires them together with
//! the gateway, the cluster and the push workers.
//!
//! This is the only crate that sees every other Herald crate; the others know nothing of it.

#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod cluster;
pub mod config;
pub mod domain;
pub mod ews_sink;
pub mod homes;
pub mod liveness;
pub mod metrics;
pub mod node;
pub mod registry;
pub mod routing;
pub mod store;
pub mod subscription;
pub mod telemetry;
#[cfg(feature = "testsuite")]
pub mod testsuite;
