//! The broker's side of the gateway: resolves a callback token to its registration, decides
//! each response message (see [`crate::registry::decide`]) and hands what it accepts to the
//! registration's subscription actor, which applies and durably records it before the
//! gateway answers.

use std::sync::Arc;

use herald_gateway::model::SendNotification;
use herald_gateway::{Callback, NotificationSink, Verdict};

use crate::domain::{RegState, RegistrationId, RegistrationRecord, SubscriptionId};
use crate::metrics::{Metrics, StoreLabels};
use crate::registry::{MessageEffect, Registry, RegistryError, decide};
use crate::routing::{MOVING_WAIT, ROUTE_ATTEMPTS, Router};
use crate::subscription::DeliverError;

/// Hands gateway requests to the subscription actors.
#[derive(Clone, Debug)]
pub struct EwsSink {
    registry: Registry,
    router: Router,
    /// The home regions whose data this node reaches.
    served_regions: Arc<[String]>,
    metrics: Arc<Metrics>,
}

impl EwsSink {
    pub fn new(
        registry: Registry,
        router: Router,
        served_regions: Vec<String>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            registry,
            router,
            served_regions: served_regions.into(),
            metrics,
        }
    }

    /// The registration a callback token names, if its secret matches: the live actor's
    /// copy when there is one (no store read), else the store's.
    async fn resolve(
        &self,
        raw_token: &str,
    ) -> Result<Option<Arc<RegistrationRecord>>, RegistryError> {
        self.registry
            .resolve_callback_from(raw_token, |id| self.router.live_record(id))
            .await
    }

    /// Each message's verdict. The registration is looked up again when its actor says it
    /// moved meanwhile; `Unsubscribe` is answered only for what Herald knows: no
    /// registration for this token and secret, a dead one, or Exchange's own error.
    async fn decide_all(
        &self,
        callback: &Callback,
        request: SendNotification,
    ) -> Result<Vec<Verdict>, SinkError> {
        let count = request.messages.len();
        let every = |verdict| vec![verdict; count];
        let request = Arc::new(request);
        let mut last = DeliverError::Elsewhere;
        for _ in 0..ROUTE_ATTEMPTS {
            let Some(record) = self.resolve(callback.token()).await? else {
                // Not a token we minted, or its registration is gone.
                return Ok(every(Verdict::Unsubscribe));
            };
            if record.home_region != callback.home_region() || record.state == RegState::Dead {
                return Ok(every(Verdict::Unsubscribe));
            }
            let effects = self.effects(&record, &request).await?;
            let id = record.id.clone();
            let needs_actor = effects
                .iter()
                .any(|e| matches!(e, MessageEffect::Accept { .. } | MessageEffect::Kill { .. }));
            if !needs_actor {
                return Ok(effects.into_iter().map(|e| verdict(&id, e)).collect());
            }
            match self.router.deliver(record, effects, request.clone()).await {
                Ok(held) => return Ok(held.into_iter().map(|e| verdict(&id, e)).collect()),
                Err(DeliverError::Elsewhere) => last = DeliverError::Elsewhere,
                Err(DeliverError::Moving) => {
                    last = DeliverError::Moving;
                    tokio::time::sleep(MOVING_WAIT).await;
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(last.into())
    }

    /// What each message would do to `record` (see [`decide`]).
    async fn effects(
        &self,
        record: &RegistrationRecord,
        request: &SendNotification,
    ) -> Result<Vec<MessageEffect>, RegistryError> {
        // A subscription id Herald cannot store (not printable ASCII, too long) cannot be
        // bound to this registration: such a message is not ours.
        let claims: Vec<Result<Option<SubscriptionId>, ()>> = request
            .messages
            .iter()
            .map(|m| match m.subscription_id() {
                None => Ok(None),
                Some(raw) => SubscriptionId::parse("subscription_id", raw)
                    .map(Some)
                    .map_err(|_| ()),
            })
            .collect();
        let valid: Vec<Option<SubscriptionId>> =
            claims.iter().map(|c| c.clone().ok().flatten()).collect();
        let bindings = self.registry.bindings(record, &valid).await?;
        Ok(request
            .messages
            .iter()
            .zip(&claims)
            .zip(bindings)
            .map(|((message, claim), binding)| match claim {
                Ok(sub) => decide(record, message, sub.as_ref(), binding),
                Err(()) => MessageEffect::Unsubscribe,
            })
            .collect())
    }
}

/// The gateway's verdict for an effect that held, logged where it matters.
fn verdict(id: &RegistrationId, effect: MessageEffect) -> Verdict {
    match effect {
        MessageEffect::Accept { bind, .. } => {
            if bind.is_some() {
                tracing::info!(registration = %id, "subscription bound on first notification");
            }
            Verdict::Ok
        }
        MessageEffect::Kill { reason } => {
            tracing::info!(registration = %id, %reason, "registration marked dead");
            Verdict::Unsubscribe
        }
        MessageEffect::Unsubscribe => Verdict::Unsubscribe,
        MessageEffect::Foreign => {
            tracing::warn!(
                registration = %id,
                "a notification on this registration's URL names a subscription bound to another registration: leaked URL or forgery"
            );
            Verdict::Reject
        }
    }
}

/// Why a request could not be recorded: answered 503.
#[derive(Debug, thiserror::Error)]
enum SinkError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Deliver(#[from] DeliverError),
}

impl NotificationSink for EwsSink {
    async fn deliver(&self, callback: &Callback, request: SendNotification) -> Vec<Verdict> {
        let unavailable = vec![Verdict::Unavailable; request.messages.len()];
        if !self
            .served_regions
            .iter()
            .any(|r| r == callback.home_region())
        {
            tracing::warn!(home_region = %callback.home_region().escape_debug(), "a notification for a home region this node does not serve");
            return unavailable;
        }
        match self.decide_all(callback, request).await {
            Ok(verdicts) => verdicts,
            Err(error) => {
                self.metrics
                    .store_errors
                    .get_or_create(&StoreLabels {
                        operation: "ews_notification",
                    })
                    .inc();
                tracing::warn!(%error, "cannot record an ews notification; answering 503");
                unavailable
            }
        }
    }
}
