//! The APNs HTTP/2 client of one app: several independent connections (one reqwest client
//! each), a bounded number of streams on each, the shared provider token, and the one-shot
//! retries the protocol asks for (a refreshed token, a fresh connection).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use tokio::sync::Semaphore;

use super::request;
use super::share::{SharedProviderTokens, TokenShare};
use super::token::{ProviderToken, ProviderTokens, TokenSigner};
use crate::classify::{self, RetryScope, Verdict};
use crate::http::{ClientOptions, Reconnects, base_url, client, describe, extra_ca};
use crate::{ApnsAppConfig, DeliveryError, DeliverySettings, PushRequest};

#[derive(Debug)]
pub struct ApnsClient {
    topic: String,
    device_url: String,
    lanes: Vec<Lane>,
    next_lane: AtomicUsize,
    auth: Auth,
    options: ClientOptions,
    extra_ca: Vec<reqwest::Certificate>,
    badge_lifetime: Duration,
}

/// How the app proves itself to Apple.
#[derive(Debug)]
enum Auth {
    /// A provider token (JWT) on every request.
    Token(SharedProviderTokens),
    /// The app's push certificate, presented when each connection is made.
    Certificate(reqwest::Identity),
}

/// One HTTP/2 connection and its stream budget.
#[derive(Debug)]
struct Lane {
    client: RwLock<reqwest::Client>,
    streams: Semaphore,
    reconnects: Reconnects,
}

impl ApnsClient {
    /// A client for `app`, its provider token shared through `share`.
    pub fn new(
        app: &ApnsAppConfig,
        settings: &DeliverySettings,
        share: Arc<dyn TokenShare>,
    ) -> Result<Self, DeliveryError> {
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| DeliveryError::File {
                path: path.to_owned(),
                error: e.to_string(),
            })
        };
        let auth = if app.certificate_auth() {
            let pem = read(&app.cert_file)?;
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                DeliveryError::credential(
                    &app.id,
                    format!("cert_file is not a PEM certificate and key: {e}"),
                )
            })?;
            Auth::Certificate(identity)
        } else {
            let signer = TokenSigner::from_p8(&app.team_id, &app.key_id, &read(&app.key_file)?)
                .map_err(|e| DeliveryError::credential(&app.id, e))?;
            Auth::Token(SharedProviderTokens::new(
                ProviderTokens::new(signer),
                share,
            ))
        };
        let base = base_url(&app.id, &app.base_url)?;
        let options = ClientOptions::new(settings, true);
        let extra_ca = extra_ca(&app.ca_file)?;
        let lanes = (0..settings.apns_connections.max(1))
            .map(|_| {
                Ok(Lane {
                    client: RwLock::new(client(&options, &extra_ca, auth.identity())?),
                    streams: Semaphore::new(settings.apns_streams_per_connection.max(1)),
                    reconnects: Reconnects::default(),
                })
            })
            .collect::<Result<_, DeliveryError>>()?;
        Ok(Self {
            topic: app.id.clone(),
            device_url: format!("{base}/3/device/"),
            lanes,
            next_lane: AtomicUsize::new(0),
            auth,
            options,
            extra_ca,
            badge_lifetime: settings.badge_lifetime,
        })
    }

    /// Sends `request` and classifies Apple's answer. An expired provider token is replaced
    /// and the push sent once more; a connection-level failure is retried once on a fresh
    /// connection.
    pub async fn send(&self, request: &PushRequest) -> Verdict {
        let lane = self.lane();
        let token = match &self.auth {
            Auth::Certificate(_) => None,
            Auth::Token(tokens) => match tokens.token(unix_now()).await {
                Ok(token) => Some(token),
                Err(error) => {
                    return Verdict::PauseApp {
                        reason: error.to_string(),
                    };
                }
            },
        };
        match self.post(lane, request, token.as_ref()).await {
            Verdict::RefreshAuth { reason } => match (&self.auth, &token) {
                (Auth::Token(tokens), Some(token)) => {
                    self.after_expired(tokens, lane, request, token, reason)
                        .await
                }
                _ => retry_later(reason),
            },
            Verdict::Retry {
                scope: RetryScope::Reconnect,
                after: None,
                reason,
            } => {
                if !self.reconnect(lane) {
                    return retry_later(reason);
                }
                tracing::debug!(%reason, "APNs connection replaced; the push is sent again");
                self.post(lane, request, token.as_ref()).await
            }
            verdict => verdict,
        }
    }

    async fn after_expired(
        &self,
        tokens: &SharedProviderTokens,
        lane: &Lane,
        request: &PushRequest,
        rejected: &ProviderToken,
        reason: String,
    ) -> Verdict {
        match tokens.replace_rejected(rejected, unix_now()).await {
            Ok(Some(token)) => match self.post(lane, request, Some(&token)).await {
                // Refreshed once; refusing the new one too is not fixed by minting more.
                Verdict::RefreshAuth { reason } => retry_later(reason),
                verdict => verdict,
            },
            Ok(None) => {
                tracing::error!(
                    topic = %self.topic,
                    age_secs = unix_now().saturating_sub(rejected.iat),
                    "APNs calls a provider token younger than 20 minutes expired: check this host's clock"
                );
                retry_later(reason)
            }
            Err(error) => Verdict::PauseApp {
                reason: error.to_string(),
            },
        }
    }

    async fn post(
        &self,
        lane: &Lane,
        request: &PushRequest,
        token: Option<&ProviderToken>,
    ) -> Verdict {
        // The semaphore is never closed.
        let Ok(_stream) = lane.streams.acquire().await else {
            return classify::transport_failure("connection closed");
        };
        let client = lane
            .client
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut headers =
            request::headers(request, &self.topic, self.badge_lifetime, SystemTime::now());
        if let Some(token) = token
            && let Ok(bearer) = HeaderValue::try_from(format!("bearer {}", token.jwt))
        {
            headers.insert(AUTHORIZATION, bearer);
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let url = format!("{}{}", self.device_url, request.device_token);
        let sent = client
            .post(url)
            .headers(headers)
            .body(request::body(request))
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => return classify::transport_failure(&describe(error)),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| classify::retry_after(Some(v), SystemTime::now()));
        match response.bytes().await {
            Ok(body) => classify::apns(status, &body, retry_after),
            Err(error) => classify::transport_failure(&describe(error)),
        }
    }

    fn lane(&self) -> &Lane {
        let i = self.next_lane.fetch_add(1, Ordering::Relaxed) % self.lanes.len();
        &self.lanes[i]
    }

    /// Replaces the lane's connection unless it was replaced a moment ago; whether it was.
    fn reconnect(&self, lane: &Lane) -> bool {
        lane.reconnects.replace("apns", || {
            let fresh = client(&self.options, &self.extra_ca, self.auth.identity())?;
            *lane.client.write().unwrap_or_else(|e| e.into_inner()) = fresh;
            Ok(())
        })
    }
}

impl Auth {
    fn identity(&self) -> Option<&reqwest::Identity> {
        match self {
            Self::Certificate(identity) => Some(identity),
            Self::Token(_) => None,
        }
    }
}

fn retry_later(reason: String) -> Verdict {
    Verdict::Retry {
        scope: RetryScope::Backoff,
        after: None,
        reason,
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
