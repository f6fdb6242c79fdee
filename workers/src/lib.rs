//! Push delivery: the APNs HTTP/2 client and the FCM v1 client, their credentials (APNs
//! ES256 JWTs, FCM OAuth2 tokens), the classification of every provider answer into a small
//! outcome, retries with backoff, rate limits and circuit breakers; and, behind the `mock`
//! feature, mock APNs and FCM servers for tests, the demo and load tests.
//!
//! It knows nothing of registrations, actors or Redis state: the broker hands it push
//! requests through a trait and acts on the outcomes it returns.

#![forbid(unsafe_code)]

pub mod apns;
pub mod classify;
mod config;
mod delivery;
mod error;
pub mod fcm;
mod http;
#[cfg(feature = "mock")]
pub mod mock;
mod push;
mod recording;
mod settings;

pub use config::{ApnsAppConfig, AppConfig, FcmAppConfig};
pub use delivery::{Backoff, Delivery, DeliveryMetrics};
pub use error::DeliveryError;
pub use http::install_crypto_provider;
pub use push::{Provider, PushOutcome, PushRequest, PushSender, SendFuture};
pub use recording::{NoDelivery, RecordingSender};
pub use settings::DeliverySettings;
