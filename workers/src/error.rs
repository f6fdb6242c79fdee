//! Why delivery cannot start: configuration and credential errors, found at start-up.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("cannot read {path}: {error}")]
    File { path: PathBuf, error: String },
    #[error("app {app}: {error}")]
    Credential { app: String, error: String },
    #[error("cannot build an HTTP client: {0}")]
    Client(String),
    #[error("app {app}: base_url {url:?} is not an http(s) URL")]
    BaseUrl { app: String, url: String },
}

impl DeliveryError {
    pub(crate) fn credential(app: &str, error: impl std::fmt::Display) -> Self {
        Self::Credential {
            app: app.to_owned(),
            error: error.to_string(),
        }
    }
}
