//! FCM delivery over the HTTP v1 API: the client of each app, its message body, and its
//! OAuth2 access tokens.

mod auth;
mod client;
mod message;

pub use auth::{AccessTokens, AuthFuture, ServiceAccountTokens};
pub use client::FcmClient;
