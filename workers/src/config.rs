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
    /// Apple developer team id (10 characters).
    pub team_id: String,
    /// Id of the token-signing key (10 characters).
    pub key_id: String,
    /// The ES256 private key (`.p8`).
    pub key_file: PathBuf,
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

fn apns_production() -> String {
    "https://api.push.apple.com".to_owned()
}

fn fcm_production() -> String {
    "https://fcm.googleapis.com".to_owned()
}
