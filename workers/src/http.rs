//! The HTTP clients that talk to Apple and Google: rustls on ring, the platform's trust
//! store plus an optional extra CA (a mock's), HTTP/2 keep-alive, timeouts.

use std::path::Path;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use crate::DeliveryError;

/// What every provider client shares.
#[derive(Clone, Debug)]
pub(crate) struct ClientOptions {
    pub(crate) request_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) keep_alive: Duration,
    /// APNs speaks only HTTP/2; FCM negotiates it by ALPN.
    pub(crate) http2_only: bool,
}

impl ClientOptions {
    pub(crate) fn new(settings: &crate::DeliverySettings, http2_only: bool) -> Self {
        Self {
            request_timeout: settings.request_timeout,
            connect_timeout: settings.connect_timeout,
            keep_alive: settings.keep_alive,
            http2_only,
        }
    }
}

/// A connection is replaced at most this often: Apple reads rapid reconnects as an attack,
/// and Google's front ends are no kinder to a client that reconnects in a loop.
pub(crate) const MIN_RECONNECT_INTERVAL: Duration = Duration::from_secs(1);

/// When a client last replaced its connection: one per connection (APNs lane, FCM client).
#[derive(Debug, Default)]
pub(crate) struct Reconnects {
    last: Mutex<Option<Instant>>,
}

impl Reconnects {
    /// Runs `replace` unless the connection was replaced less than
    /// [`MIN_RECONNECT_INTERVAL`] ago; whether a new connection is in place.
    pub(crate) fn replace(
        &self,
        provider: &str,
        replace: impl FnOnce() -> Result<(), DeliveryError>,
    ) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| at.elapsed() < MIN_RECONNECT_INTERVAL) {
            return false;
        }
        match replace() {
            Ok(()) => {
                *last = Some(Instant::now());
                true
            }
            Err(error) => {
                tracing::warn!(provider, %error, "cannot replace a provider connection");
                false
            }
        }
    }
}

/// `base_url` without a trailing slash, if it is an http(s) URL.
pub(crate) fn base_url<'a>(app: &str, base_url: &'a str) -> Result<&'a str, DeliveryError> {
    let base = base_url.trim_end_matches('/');
    if base.starts_with("https://") || base.starts_with("http://") {
        Ok(base)
    } else {
        Err(DeliveryError::BaseUrl {
            app: app.to_owned(),
            url: base_url.to_owned(),
        })
    }
}

/// Reads an extra trusted CA (PEM); an empty path means none.
pub(crate) fn extra_ca(path: &Path) -> Result<Vec<reqwest::Certificate>, DeliveryError> {
    if path.as_os_str().is_empty() {
        return Ok(Vec::new());
    }
    let pem = std::fs::read(path).map_err(|e| DeliveryError::File {
        path: path.to_owned(),
        error: e.to_string(),
    })?;
    reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| DeliveryError::File {
        path: path.to_owned(),
        error: format!("not a PEM certificate: {e}"),
    })
}

/// A client: one HTTP/2 connection per host.
pub(crate) fn client(
    options: &ClientOptions,
    extra_ca: &[reqwest::Certificate],
    identity: Option<&reqwest::Identity>,
) -> Result<reqwest::Client, DeliveryError> {
    install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .timeout(options.request_timeout)
        .connect_timeout(options.connect_timeout)
        .http2_keep_alive_interval(options.keep_alive)
        .http2_keep_alive_timeout(options.connect_timeout.max(Duration::from_secs(5)))
        .http2_keep_alive_while_idle(true)
        .pool_idle_timeout(None)
        .tcp_nodelay(true)
        .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")));
    if options.http2_only {
        builder = builder.http2_prior_knowledge();
    }
    if let Some(identity) = identity {
        builder = builder.identity(identity.clone());
    }
    if !extra_ca.is_empty() {
        builder = builder.tls_certs_merge(extra_ca.iter().cloned());
    }
    builder
        .build()
        .map_err(|e| DeliveryError::Client(e.to_string()))
}

/// reqwest is built without a default crypto provider (`rustls-no-provider`): the whole
/// process uses ring, as gcp_auth and a2 do. Call it before building any other reqwest
/// client in a process that links Herald's workers.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another part of the process installed one first: it is used instead.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A reqwest error with its causes (the top level alone says little: "error sending
/// request"), without its URL: an APNs URL ends in the device token, which never appears in
/// a log line or a recorded reason.
pub(crate) fn describe(error: reqwest::Error) -> String {
    let error = &error.without_url();
    let mut text = if error.is_timeout() {
        "timeout".to_owned()
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_replaced_at_most_once_a_second() {
        let reconnects = Reconnects::default();
        let mut made = 0;
        let mut replace = || {
            made += 1;
            Ok(())
        };
        assert!(reconnects.replace("fcm", &mut replace));
        assert!(!reconnects.replace("fcm", &mut replace), "too soon");
        assert_eq!(made, 1);
        // A failed replacement does not count: the next one is tried at once.
        let fresh = Reconnects::default();
        assert!(!fresh.replace("apns", || Err(DeliveryError::Client("refused".into()))));
        assert!(fresh.replace("apns", || Ok(())));
    }
}
