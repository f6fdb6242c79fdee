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

    /// What is wrong with the app's credential file, if it can be read: not a P-256
    /// `.p8`, not a PEM certificate and key, not a service-account file.
    pub fn credential_problem(&self) -> Option<String> {
        let read = |path: &PathBuf| std::fs::read(path).ok();
        match self {
            Self::Apns(app) if app.certificate_auth() => {
                let pem = read(&app.cert_file)?;
                crate::http::install_crypto_provider();
                reqwest::Identity::from_pem(&pem).err().map(|e| {
                    let e = crate::http::describe(e);
                    format!("cert_file is not a PEM certificate and private key: {e}")
                })
            }
            Self::Apns(app) => {
                let p8 = read(&app.key_file)?;
                crate::apns::TokenSigner::from_p8(&app.team_id, &app.key_id, &p8)
                    .err()
                    .map(|e| format!("key_file: {e}"))
            }
            Self::Fcm(app) => {
                let json = read(&app.service_account_file)?;
                match serde_json::from_slice::<ServiceAccount>(&json) {
                    Err(e) => Some(format!(
                        "service_account_file is not a service-account JSON file: {e}"
                    )),
                    Ok(sa) if sa.kind != "service_account" => Some(format!(
                        "service_account_file is of type {:?}, not \"service_account\"",
                        sa.kind
                    )),
                    Ok(sa) if !sa.private_key.contains("PRIVATE KEY") => {
                        Some("service_account_file has no private_key".to_owned())
                    }
                    Ok(sa) if sa.client_email.is_empty() || sa.token_uri.is_empty() => {
                        Some("service_account_file lacks client_email or token_uri".to_owned())
                    }
                    Ok(_) => None,
                }
            }
        }
    }
}

/// The fields of a Google service-account file that matter here.
#[derive(Deserialize)]
struct ServiceAccount {
    #[serde(rename = "type")]
    kind: String,
    private_key: String,
    client_email: String,
    token_uri: String,
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
