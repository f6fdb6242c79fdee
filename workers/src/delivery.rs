//! The push sender of a node: routes each push to its app's provider client, within the
//! provider's concurrency budget, behind the app's circuit breaker and pause, and turns the
//! classified answer into an outcome for the broker — a retry always comes back to the
//! broker, which resends the device's *latest* badge after the back-off given here.

mod backoff;
mod breaker;
mod metrics;
mod rate;
mod refusals;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::Instrument as _;

use tokio::sync::Semaphore;

pub use backoff::Backoff;
use breaker::{Admission, Breaker};
pub use metrics::DeliveryMetrics;
use metrics::{
    AnswerLabels, AppState, ProviderLabels, RefusalLabels, count_for_app, provider_label,
};
pub(crate) use rate::RateLimit;
use refusals::{Judgement, Refusals};

use crate::apns::{ApnsClient, TokenShare};
use crate::classify::{RetryScope, Verdict};
use crate::fcm::FcmClient;
use crate::{
    AppConfig, DeliveryError, DeliverySettings, Provider, PushOutcome, PushRequest, PushSender,
    SendFuture,
};

/// Pushes to APNs and FCM for the configured apps.
#[derive(Debug)]
pub struct Delivery {
    apps: Arc<HashMap<String, App>>,
    apns_budget: Semaphore,
    fcm_budget: Semaphore,
    backoff: Backoff,
    /// Longest wait for a budget slot.
    budget_wait: Duration,
    pause: Duration,
    metrics: DeliveryMetrics,
}

#[derive(Debug)]
struct App {
    client: Client,
    breaker: Breaker,
    refusals: Refusals,
    paused_until: Mutex<Option<Instant>>,
}

#[derive(Debug)]
enum Client {
    Apns(ApnsClient),
    Fcm(FcmClient),
}

impl Client {
    fn provider(&self) -> Provider {
        match self {
            Self::Apns(_) => Provider::Apns,
            Self::Fcm(_) => Provider::Fcm,
        }
    }

    async fn send(&self, request: &PushRequest) -> Verdict {
        match self {
            Self::Apns(client) => client.send(request).await,
            Self::Fcm(client) => client.send(request).await,
        }
    }
}

impl Delivery {
    /// Clients for every app in `apps`; APNs provider tokens are shared through `share`.
    pub fn new(
        apps: &[AppConfig],
        settings: &DeliverySettings,
        share: Arc<dyn TokenShare>,
        metrics: DeliveryMetrics,
    ) -> Result<Self, DeliveryError> {
        let clients = apps
            .iter()
            .map(|app| {
                let client = match app {
                    AppConfig::Apns(apns) => {
                        Client::Apns(ApnsClient::new(apns, settings, share.clone())?)
                    }
                    AppConfig::Fcm(fcm) => Client::Fcm(FcmClient::new(fcm, settings)?),
                };
                Ok((app.id().to_owned(), client))
            })
            .collect::<Result<Vec<_>, DeliveryError>>()?;
        Ok(Self::with_clients(clients, settings, metrics))
    }

    fn with_clients(
        clients: Vec<(String, Client)>,
        settings: &DeliverySettings,
        metrics: DeliveryMetrics,
    ) -> Self {
        let apps: Arc<HashMap<String, App>> = Arc::new(
            clients
                .into_iter()
                .map(|(id, client)| {
                    let app = App {
                        client,
                        breaker: Breaker::new(
                            settings.breaker_failures,
                            settings.breaker_open,
                            settings.breaker_max_open,
                        ),
                        refusals: Refusals::new(settings.refusal_window, settings.refusal_spike),
                        paused_until: Mutex::new(None),
                    };
                    (id, app)
                })
                .collect(),
        );
        let weak = Arc::downgrade(&apps);
        metrics.app_states.read_from(Box::new(move || {
            let now = Instant::now();
            weak.upgrade().map_or_else(Vec::new, |apps| {
                apps.iter()
                    .map(|(id, app)| AppState {
                        app: id.clone(),
                        paused: app.paused(now),
                        circuit_open: app.breaker.is_open(now),
                    })
                    .collect()
            })
        }));
        Self {
            apps,
            apns_budget: Semaphore::new(settings.apns_in_flight.max(1)),
            fcm_budget: Semaphore::new(settings.fcm_in_flight.max(1)),
            backoff: Backoff {
                base: settings.retry_base,
                cap: settings.retry_cap,
            },
            budget_wait: settings.request_timeout,
            pause: settings.pause,
            metrics,
        }
    }

    async fn deliver(&self, request: PushRequest) -> PushOutcome {
        let Some(app) = self.apps.get(&request.app_id) else {
            tracing::error!(app = %request.app_id, "a push for an app that is not configured");
            return PushOutcome::Failed {
                reason: format!("no app {:?} is configured", request.app_id),
            };
        };
        let provider = app.client.provider();
        if provider != request.provider {
            return PushOutcome::Failed {
                reason: format!("app {:?} is not a {provider:?} app", request.app_id),
            };
        }
        if let Some(wait) = app.held_back(Instant::now()) {
            count_for_app(&self.metrics.held_back, &request.app_id);
            return PushOutcome::RetryAfter(self.backoff.delay(request.attempt, Some(wait)));
        }
        let budget = match provider {
            Provider::Apns => &self.apns_budget,
            Provider::Fcm => &self.fcm_budget,
        };
        let labels = ProviderLabels {
            provider: provider_label(provider),
        };
        let in_flight = self.metrics.in_flight.get_or_create(&labels).clone();
        in_flight.inc();
        // A provider slower than the budget drains: the push waits at most a request's
        // time for a slot, then comes back to be retried later.
        let slot = tokio::time::timeout(self.budget_wait, budget.acquire()).await;
        let verdict = match slot {
            Err(_) => {
                in_flight.dec();
                count_for_app(&self.metrics.held_back, &request.app_id);
                tracing::debug!(app = %request.app_id, "no delivery slot free: push retried later");
                return PushOutcome::RetryAfter(self.backoff.delay(request.attempt, None));
            }
            Ok(Ok(_slot)) if request.send_before.is_some_and(|t| Instant::now() >= t) => {
                in_flight.dec();
                tracing::debug!(app = %request.app_id, "the sender's lease ended while the push waited: not sent");
                return PushOutcome::RetryAfter(self.backoff.delay(request.attempt, None));
            }
            Ok(Ok(_slot)) => {
                let started = Instant::now();
                // Traced within a traced flush only (when traces are exported).
                let verdict = if tracing::Span::current().is_disabled() {
                    app.client.send(&request).await
                } else {
                    let span = tracing::info_span!(
                        "push.send",
                        provider = labels.provider,
                        app = %request.app_id,
                        attempt = request.attempt,
                        verdict = tracing::field::Empty,
                    );
                    let verdict = app.client.send(&request).instrument(span.clone()).await;
                    span.record("verdict", verdict_name(&verdict));
                    verdict
                };
                self.metrics
                    .seconds
                    .get_or_create(&labels)
                    .observe(started.elapsed().as_secs_f64());
                verdict
            }
            // The budgets are never closed.
            Ok(Err(_)) => Verdict::Retry {
                scope: RetryScope::Backoff,
                after: None,
                reason: "delivery is shutting down".into(),
            },
        };
        in_flight.dec();
        self.metrics
            .answers
            .get_or_create(&AnswerLabels {
                provider: labels.provider,
                app: request.app_id.clone(),
                verdict: verdict_name(&verdict),
            })
            .inc();
        self.outcome(app, &request, verdict)
    }

    fn outcome(&self, app: &App, request: &PushRequest, verdict: Verdict) -> PushOutcome {
        let now = Instant::now();
        let retry = |floor: Option<Duration>| {
            PushOutcome::RetryAfter(self.backoff.delay(request.attempt, floor))
        };
        match verdict {
            Verdict::Delivered => {
                app.breaker.success();
                app.refusals.delivered(now);
                PushOutcome::Delivered
            }
            Verdict::TokenRefused { reason } => {
                app.breaker.success();
                self.refused(app, request, reason, now)
            }
            Verdict::TokenDead { reason, since_ms } => {
                app.breaker.success();
                PushOutcome::TokenDead { reason, since_ms }
            }
            Verdict::Retry {
                scope: RetryScope::Backoff | RetryScope::Reconnect,
                after,
                reason,
            } => {
                tracing::debug!(app = %request.app_id, push = %request.push_id, %reason, "push to be retried");
                if let Some(open) = app.breaker.failure(now) {
                    tracing::error!(app = %request.app_id, %reason, open_secs = open.as_secs(), "provider failing: the app's circuit is open");
                    count_for_app(&self.metrics.circuit_opened, &request.app_id);
                }
                retry(after)
            }
            Verdict::Retry {
                scope: RetryScope::Device | RetryScope::Project,
                after,
                reason,
            } => {
                tracing::info!(app = %request.app_id, push = %request.push_id, %reason, "provider asks to slow down");
                app.breaker.success();
                retry(after)
            }
            Verdict::RefreshAuth { reason } => {
                tracing::warn!(app = %request.app_id, %reason, "provider credential refused after a refresh");
                retry(None)
            }
            Verdict::AuthThrottled { after } => {
                tracing::error!(app = %request.app_id, "APNs says provider tokens change too often: keeping the current one");
                retry(Some(after))
            }
            Verdict::PauseApp { reason } => {
                tracing::error!(app = %request.app_id, %reason, pause_secs = self.pause.as_secs(), "the provider refuses the app's credentials: app paused, an operator must fix its configuration");
                app.pause(now.checked_add(self.pause).unwrap_or(now));
                count_for_app(&self.metrics.app_paused, &request.app_id);
                retry(Some(self.pause))
            }
            Verdict::Drop { reason } => {
                tracing::warn!(app = %request.app_id, push = %request.push_id, %reason, "provider refused this push");
                PushOutcome::Failed { reason }
            }
            Verdict::Bug { reason } => {
                tracing::error!(app = %request.app_id, push = %request.push_id, %reason, "provider calls our request malformed: a bug in Herald or its configuration");
                PushOutcome::Failed { reason }
            }
        }
    }
}

impl Delivery {
    /// A token refused as "not for you": dead, or a sign of a wrong configuration.
    fn refused(
        &self,
        app: &App,
        request: &PushRequest,
        reason: String,
        now: Instant,
    ) -> PushOutcome {
        let judgement = app.refusals.judge(now);
        self.metrics
            .token_refusals
            .get_or_create(&RefusalLabels {
                app: request.app_id.clone(),
                judgement: match judgement {
                    Judgement::Dead => "dead",
                    Judgement::Suspect => "suspect",
                    Judgement::Spike => "spike",
                },
            })
            .inc();
        match judgement {
            Judgement::Dead => PushOutcome::TokenDead {
                reason,
                since_ms: None,
            },
            Judgement::Suspect => {
                tracing::info!(app = %request.app_id, push = %request.push_id, %reason, "token refused while nothing delivered lately proves the app's configuration: kept, retried later");
                PushOutcome::RetryAfter(self.backoff.delay(request.attempt, Some(SUSPECT_WAIT)))
            }
            Judgement::Spike => {
                tracing::error!(app = %request.app_id, %reason, pause_secs = self.pause.as_secs(), "a spike of refused tokens: the app's environment (sandbox/production) or Firebase project is likely wrong; app paused, no registration marked dead");
                app.pause(now.checked_add(self.pause).unwrap_or(now));
                count_for_app(&self.metrics.app_paused, &request.app_id);
                PushOutcome::RetryAfter(self.backoff.delay(request.attempt, Some(self.pause)))
            }
        }
    }
}

/// The least wait before a push whose token was refused on suspicion is tried again.
const SUSPECT_WAIT: Duration = Duration::from_secs(60);

impl App {
    /// How long sends to this app wait, if they may not go now (paused, circuit open).
    fn held_back(&self, now: Instant) -> Option<Duration> {
        let paused = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = paused.filter(|until| now < *until) {
            return Some(until - now);
        }
        match self.breaker.admit(now) {
            Admission::Closed | Admission::Probe => None,
            Admission::Open(wait) => Some(wait),
        }
    }

    /// Whether the app is paused now.
    fn paused(&self, now: Instant) -> bool {
        self.paused_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|until| now < until)
    }

    fn pause(&self, until: Instant) {
        *self.paused_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(until);
    }
}

fn verdict_name(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Delivered => "delivered",
        Verdict::TokenDead { .. } => "token_dead",
        Verdict::TokenRefused { .. } => "token_refused",
        Verdict::Retry { .. } => "retry",
        Verdict::RefreshAuth { .. } => "refresh_auth",
        Verdict::AuthThrottled { .. } => "auth_throttled",
        Verdict::PauseApp { .. } => "pause_app",
        Verdict::Drop { .. } => "drop",
        Verdict::Bug { .. } => "bug",
    }
}

impl PushSender for Delivery {
    fn send(&self, request: PushRequest) -> SendFuture<'_> {
        Box::pin(self.deliver(request))
    }
}
