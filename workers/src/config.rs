//! The `[[apps]]` configuration: the apps Herald pushes for, with their provider settings.
//! Secrets are file paths, never inline values.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One app, tagged by `platform = "apns" | "fcm"`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(tag = "platform", rename_all = "lowercase")]
pub enum AppConfig {
    Apns(ApnsAppConfig),
    Fcm(FcmAppConfig),
}

impl AppConfig {
    /// The app id registrations name (APNs: the bundle id, also the topic).
    pub fn id(&self) -> &str {
        match self {
            Self::Apns(app) => &app.id,
            Self::Fcm(app) => &app.id,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ApnsAppConfig {
    pub id: String,
    /// Token auth: Apple developer team id (10 characters).
    #[serde(default)]
    pub team_id: String,
    /// Token auth: id of the token-signing key (10 characters).
    #[serde(default)]
    pub key_id: String,
    /// Token auth: the ES256 private key (`.p8`).
    #[serde(default)]
    pub key_file: PathBuf,
    /// Certificate auth instead of token auth: a PEM file holding the app's push
    /// certificate (and its chain) and its private key. Empty: token auth.
    #[serde(default)]
    pub cert_file: PathBuf,
    #[serde(default = "apns_production")]
    pub base_url: String,
    /// Extra trusted CA (PEM), for a mock; empty: none.
    #[serde(default)]
    pub ca_file: PathBuf,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FcmAppConfig {
    pub id: String,
    /// The Firebase project the messages are sent through.
    pub project_id: String,
    /// The Google service-account JSON; its `token_uri` may point at a mock.
    pub service_account_file: PathBuf,
    #[serde(default = "fcm_production")]
    pub base_url: String,
    /// Extra trusted CA (PEM), for a mock; empty: none.
    #[serde(default)]
    pub ca_file: PathBuf,
}

impl ApnsAppConfig {
    /// Whether the app authenticates with a client certificate rather than a token.
    pub fn certificate_auth(&self) -> bool {
        !self.cert_file.as_os_str().is_empty()
    }
}

fn apns_production() -> String {
    "https://api.push.apple.com".to_owned()
}

fn fcm_production() -> String {
    "https://fcm.googleapis.com".to_owned()
}
