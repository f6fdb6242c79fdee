//! The FCM v1 client of one app: `POST {base}/v1/projects/{project}/messages:send` with an
//! OAuth2 bearer, the project's send rate, and the one-shot retries the protocol asks for
//! (a refreshed access token, a fresh connection).

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use http::HeaderValue;
use http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};

use super::auth::{AccessTokens, ServiceAccountTokens};
use super::message;
use crate::classify::{self, RetryScope, Verdict};
use crate::delivery::RateLimit;
use crate::http::{ClientOptions, Reconnects, base_url, client, describe, extra_ca};
use crate::{DeliveryError, DeliverySettings, FcmAppConfig, PushRequest};

#[derive(Debug)]
pub struct FcmClient {
    app: String,
    send_url: String,
    client: RwLock<reqwest::Client>,
    reconnects: Reconnects,
    auth: Arc<dyn AccessTokens>,
    rate: RateLimit,
    options: ClientOptions,
    extra_ca: Vec<reqwest::Certificate>,
    ttl: Duration,
}

impl FcmClient {
    pub fn new(app: &FcmAppConfig, settings: &DeliverySettings) -> Result<Self, DeliveryError> {
        let json = std::fs::read_to_string(&app.service_account_file).map_err(|e| {
            DeliveryError::File {
                path: app.service_account_file.clone(),
                error: e.to_string(),
            }
        })?;
        let auth = ServiceAccountTokens::from_json(json)
            .map_err(|e| DeliveryError::credential(&app.id, e))?;
        Self::with_auth(app, settings, Arc::new(auth))
    }

    /// A client whose bearer tokens come from `auth`.
    pub fn with_auth(
        app: &FcmAppConfig,
        settings: &DeliverySettings,
        auth: Arc<dyn AccessTokens>,
    ) -> Result<Self, DeliveryError> {
        let base = base_url(&app.id, &app.base_url)?;
        let options = ClientOptions::new(settings, false);
        let extra_ca = extra_ca(&app.ca_file)?;
        Ok(Self {
            app: app.id.clone(),
            send_url: format!("{base}/v1/projects/{}/messages:send", app.project_id),
            client: RwLock::new(client(&options, &extra_ca, None)?),
            reconnects: Reconnects::default(),
            auth,
            rate: RateLimit::new(settings.fcm_max_per_second, Instant::now()),
            options,
            extra_ca,
            ttl: settings.badge_lifetime,
        })
    }

    /// Sends `request` and classifies Google's answer. A refused access token is dropped and
    /// the message sent once more with a new one; a connection-level failure is retried once
    /// on a fresh connection; a spent project quota pauses the app's sends.
    pub async fn send(&self, request: &PushRequest) -> Verdict {
        let verdict = match self.post(request).await {
            (Verdict::RefreshAuth { .. }, Some(rejected)) => {
                self.auth.invalidate(&rejected);
                match self.post(request).await.0 {
                    Verdict::RefreshAuth { reason } => {
                        tracing::error!(app = %self.app, %reason, "FCM refuses a freshly fetched access token");
                        Verdict::Retry {
                            scope: RetryScope::Backoff,
                            after: None,
                            reason,
                        }
                    }
                    verdict => verdict,
                }
            }
            (
                Verdict::Retry {
                    scope: RetryScope::Reconnect,
                    after: None,
                    reason,
                },
                _,
            ) => {
                if !self.reconnect() {
                    return Verdict::Retry {
                        scope: RetryScope::Backoff,
                        after: None,
                        reason,
                    };
                }
                tracing::debug!(%reason, "FCM connection replaced; the message is sent again");
                self.post(request).await.0
            }
            (verdict, _) => verdict,
        };
        if let Verdict::Retry {
            scope: RetryScope::Project,
            after: Some(wait),
            ..
        } = &verdict
        {
            tracing::warn!(app = %self.app, wait_secs = wait.as_secs(), "FCM project quota spent: sends paused");
            self.rate.pause(Instant::now(), *wait);
        }
        verdict
    }

    /// One request; the verdict and the bearer token it carried.
    async fn post(&self, request: &PushRequest) -> (Verdict, Option<String>) {
        while let Err(wait) = self.rate.take(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let token = match self.auth.token().await {
            Ok(token) => token,
            Err(error) => {
                // The token endpoint is down or refuses the account: retry with back-off.
                return (
                    Verdict::Retry {
                        scope: RetryScope::Backoff,
                        after: None,
                        reason: format!("fcm access token: {error}"),
                    },
                    None,
                );
            }
        };
        let Ok(bearer) = HeaderValue::try_from(format!("Bearer {token}")) else {
            return (
                Verdict::Bug {
                    reason: "the access token is not a header value".into(),
                },
                None,
            );
        };
        let client = self
            .client
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let sent = client
            .post(&self.send_url)
            .header(AUTHORIZATION, bearer)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(message::body(request, self.ttl))
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => return (classify::transport_failure(&describe(error)), Some(token)),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| classify::retry_after(Some(v), SystemTime::now()));
        let verdict = match response.bytes().await {
            Ok(body) => classify::fcm(status, &body, retry_after),
            Err(error) => classify::transport_failure(&describe(error)),
        };
        (verdict, Some(token))
    }

    /// Replaces the connection unless it was replaced a moment ago (as APNs lanes do);
    /// whether it was.
    fn reconnect(&self) -> bool {
        self.reconnects.replace("fcm", || {
            let fresh = client(&self.options, &self.extra_ca, None)?;
            *self.client.write().unwrap_or_else(|e| e.into_inner()) = fresh;
            Ok(())
        })
    }
}
