//! The broker's side of the gateway: resolves a callback token to its registration, decides
//! each response message (see [`crate::registry::decide`]) and hands what it accepts to the
//! registration's subscription actor, which applies and durably records it before the
//! gateway answers.

use std::sync::Arc;

use herald_gateway::model::SendNotification;
use herald_gateway::{Admission, Callback, NotificationSink, Verdict};

use futures_util::future::BoxFuture;
use herald_cluster::peer::is_not_owner;
use herald_proto::v1 as pb;

use crate::cluster::{Hop, PeerCall};
use crate::domain::{
    CallbackToken, RegState, RegistrationId, RegistrationRecord, SubscriptionId, home_tag,
};
use crate::metrics::{Metrics, StoreLabels};
use crate::registry::{MessageEffect, Registry, RegistryError, decide};
use crate::routing::{MOVING_WAIT, ROUTE_ATTEMPTS, Router};
use crate::subscription::DeliverError;
use herald_cluster::ShardId;

/// How long a registration read when its callback URL was admitted stands for it once the
/// body has arrived; an older read (a slow body) is read again, so that an actor is never
/// started from a copy that other writers may have overtaken.
const ADMITTED_FRESH: std::time::Duration = std::time::Duration::from_millis(100);

/// A callback URL's registration, as read when the URL was admitted.
#[derive(Clone, Debug)]
pub struct Admitted {
    record: Arc<RegistrationRecord>,
    read_at: std::time::Instant,
}

/// Hands gateway requests to the subscription actors.
#[derive(Clone, Debug)]
pub struct EwsSink {
    registry: Registry,
    router: Router,
    /// Whether this node serves the sink's home now (its copy is the home's primary).
    serving: Arc<std::sync::atomic::AtomicBool>,
    metrics: Arc<Metrics>,
}

impl EwsSink {
    /// The sink of one home: `registry` and `router` are that home's; `serving` says
    /// whether this node serves it.
    pub fn new(
        registry: Registry,
        router: Router,
        serving: Arc<std::sync::atomic::AtomicBool>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            registry,
            router,
            serving,
            metrics,
        }
    }

    /// The registration a callback token names, if its secret matches: the live actor's
    /// copy when there is one (no store read), else the store's.
    async fn resolve(
        &self,
        token: &CallbackToken,
    ) -> Result<Option<Arc<RegistrationRecord>>, RegistryError> {
        self.registry
            .resolve_callback_from(token, |id| self.router.live_record(id))
            .await
    }

    /// What a callback URL names, before its body is read: `Unknown` only for what Herald
    /// knows — a token it never minted for this home, or no live registration with this
    /// token and secret in a store that is the home's current state.
    async fn admit_record(&self, callback: &Callback) -> Result<Admission<Admitted>, SinkError> {
        let home = callback.home_region();
        let token = CallbackToken::parse(callback.token())
            .filter(|token| token.registration_id().home_tag() == home_tag(home));
        let Some(token) = token else {
            return Ok(Admission::Unknown);
        };
        let read_at = std::time::Instant::now();
        let Some(record) = self.resolve(&token).await? else {
            // Not a token we minted, or its registration is gone — if the store is the
            // home's current state.
            self.gone().await?;
            return Ok(Admission::Unknown);
        };
        if record.home_region != home || record.state == RegState::Dead {
            return Ok(Admission::Unknown);
        }
        Ok(Admission::Known(Admitted { record, read_at }))
    }

    /// `Ok` when the store's "no such registration" is final: the store is the home's
    /// current state. A node without a trusted lease cannot tell — its store may be a
    /// primary cut off from the others while the home is served elsewhere — and says so.
    async fn gone(&self) -> Result<(), SinkError> {
        if self.store_is_current().await {
            Ok(())
        } else {
            Err(SinkError::Uncertain)
        }
    }

    /// Each message's verdict for `record`'s registration, decided on the node that serves
    /// its shard (this one, or its owner one hop away).
    async fn decide_all(
        &self,
        admitted: Admitted,
        request: SendNotification,
    ) -> Result<Vec<Verdict>, SinkError> {
        let count = request.messages.len();
        let home = admitted.record.home_region.clone();
        let request = Arc::new(request);
        let id = admitted.record.id.clone();
        // A read from before a slow body is read again below.
        let mut record = (admitted.read_at.elapsed() <= ADMITTED_FRESH).then_some(admitted.record);
        for _ in 0..ROUTE_ATTEMPTS {
            let record = match record.take() {
                Some(record) => record,
                // It moved to another shard meanwhile, or the read is old: where is it now?
                None => match self.router.lookup(&id).await.map_err(DeliverError::Store)? {
                    Some(record) => record,
                    None => {
                        self.gone().await?;
                        return Ok(vec![Verdict::Unsubscribe; count]);
                    }
                },
            };
            match self.decide_at_owner(&home, &request, record).await {
                Err(SinkError::Deliver(DeliverError::Elsewhere)) => {}
                other => return other,
            }
        }
        Err(DeliverError::Elsewhere.into())
    }

    fn count_error(&self, error: &SinkError) {
        self.metrics
            .store_errors
            .get_or_create(&StoreLabels {
                operation: "ews_notification",
            })
            .inc();
        tracing::warn!(%error, "cannot record an ews notification; answering 503");
    }

    /// Whether the store's "no such registration" is the home's: this node serves the home
    /// (its copy is the home's primary, not a stale one), holds a lease the store renewed
    /// within the lease's time, and the store is still a primary now (a copy demoted a
    /// moment ago may lag the new primary).
    async fn store_is_current(&self) -> bool {
        self.serving.load(std::sync::atomic::Ordering::Acquire)
            && self.router.home_current()
            && matches!(self.registry.store().is_primary().await, Ok(true))
    }

    /// [`decide_all`](Self::decide_all) for `record`, on the node that holds its shard:
    /// `Elsewhere` when the registration left that shard meanwhile.
    async fn decide_at_owner(
        &self,
        home: &str,
        request: &Arc<SendNotification>,
        record: Arc<RegistrationRecord>,
    ) -> Result<Vec<Verdict>, SinkError> {
        let count = request.messages.len();
        let (shard, id) = (record.shard(), record.id.clone());
        let known = std::sync::Mutex::new(Some(record));
        let local = || -> BoxFuture<'_, _> {
            let known = known.lock().unwrap_or_else(|e| e.into_inner()).take();
            Box::pin(self.decide_here(&id, shard, home, request, known))
        };
        let remote = |mut call: PeerCall| -> BoxFuture<'_, _> {
            let forwarded = call.request(pb::ForwardNotificationRequest {
                shard: u32::from(shard.number()),
                registration_id: id.to_string(),
                home_region: home.to_owned(),
                messages: crate::cluster::messages_to_wire(&request.messages),
            });
            Box::pin(async move {
                match call.client.forward_notification(forwarded).await {
                    Ok(answer) => {
                        let decisions = answer.into_inner().decisions;
                        if decisions.len() != count {
                            return Err(tonic::Status::internal(
                                "a peer decided another number of messages",
                            ));
                        }
                        Ok(Hop::Done(Ok(decisions
                            .into_iter()
                            .map(crate::cluster::verdict_from_wire)
                            .collect())))
                    }
                    Err(status) if is_not_owner(&status) => Ok(Hop::NotHere),
                    Err(status) if crate::cluster::is_moved(&status) => {
                        Ok(Hop::Done(Err(DeliverError::Elsewhere.into())))
                    }
                    Err(status) => Err(status),
                }
            })
        };
        self.router
            .forwarder()
            .to_owner("notification", shard, local, remote)
            .await?
    }

    /// Each message's verdict for registration `id`, decided and recorded on this node;
    /// `NotHere` when this node does not serve `shard` (a forwarding peer tries the owner
    /// again), `Elsewhere` when the registration is not in `shard` (the caller looks
    /// it up again). `known` is the caller's fresh read of the registration.
    pub async fn decide_here(
        &self,
        id: &RegistrationId,
        shard: ShardId,
        home: &str,
        request: &Arc<SendNotification>,
        mut known: Option<Arc<RegistrationRecord>>,
    ) -> Hop<Result<Vec<Verdict>, SinkError>> {
        let every = |verdict| Hop::Done(Ok(vec![verdict; request.messages.len()]));
        let mut last = DeliverError::Elsewhere;
        for _ in 0..ROUTE_ATTEMPTS {
            let record = match known.take() {
                Some(record) => record,
                None => match self.router.lookup(id).await {
                    Ok(Some(record)) => record,
                    // Deleted since the caller resolved its token, if the store is current.
                    Ok(None) => match self.gone().await {
                        Ok(()) => return every(Verdict::Unsubscribe),
                        Err(error) => return Hop::Done(Err(error)),
                    },
                    Err(error) => return Hop::Done(Err(RegistryError::from(error).into())),
                },
            };
            if record.home_region != home || record.state == RegState::Dead {
                return every(Verdict::Unsubscribe);
            }
            if record.shard() != shard {
                return Hop::Done(Err(DeliverError::Elsewhere.into()));
            }
            if !self.router.serves(shard) {
                return Hop::NotHere;
            }
            let effects = match self.effects(&record, request).await {
                Ok(effects) => effects,
                Err(error) => return Hop::Done(Err(error.into())),
            };
            let needs_actor = effects
                .iter()
                .any(|e| matches!(e, MessageEffect::Accept { .. } | MessageEffect::Kill { .. }));
            if !needs_actor {
                return Hop::Done(Ok(effects.into_iter().map(|e| verdict(id, e)).collect()));
            }
            match self.router.deliver(record, effects, request.clone()).await {
                Ok(held) => {
                    return Hop::Done(Ok(held.into_iter().map(|e| verdict(id, e)).collect()));
                }
                Err(DeliverError::Elsewhere) => last = DeliverError::Elsewhere,
                Err(DeliverError::Moving) => {
                    last = DeliverError::Moving;
                    tokio::time::sleep(MOVING_WAIT).await;
                }
                Err(DeliverError::NotOwner(_)) => return Hop::NotHere,
                Err(other) => return Hop::Done(Err(other.into())),
            }
        }
        Hop::Done(Err(last.into()))
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
pub enum SinkError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Deliver(#[from] DeliverError),
    /// An unknown token, read from a store this node holds no trusted lease in.
    #[error("an unknown callback token, and no lease of its home is trusted here to say so")]
    Uncertain,
}

impl NotificationSink for EwsSink {
    type Admitted = Admitted;

    async fn admit(&self, callback: &Callback) -> Admission<Admitted> {
        self.admit_record(callback).await.unwrap_or_else(|error| {
            self.count_error(&error);
            Admission::Unavailable
        })
    }

    async fn deliver(&self, admitted: Admitted, request: SendNotification) -> Vec<Verdict> {
        let count = request.messages.len();
        self.decide_all(admitted, request)
            .await
            .unwrap_or_else(|error| {
                self.count_error(&error);
                vec![Verdict::Unavailable; count]
            })
    }
}
