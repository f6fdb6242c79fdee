//! `SubscriptionActor`: one registration's notifications, in order, on the node that owns its
//! shard. It keeps the registration's record (a cache of the store), applies each request's
//! effects with [`super::state::apply`], writes the result in one fenced, version-checked store
//! write before answering, and flushes the burst with [`flush::plan`] when it is due.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;

use herald_gateway::model::Notification;
use herald_workers::{PushOutcome, PushRequest};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::Deps;
use super::flush::{self, FlushPlan};
use super::shard::ShardMsg;
use super::state::apply as apply_notification;
use crate::domain::{Burst, DeadToken, RegState, RegistrationId, RegistrationRecord, UnixMillis};
use crate::registry::{MessageEffect, apply_effect};
use crate::store::StoreError;

/// Longest a push may take, retries included, before the actor stops waiting for it and
/// tries again later.
const PUSH_GUARD: Duration = Duration::from_secs(60);

/// The shortest wait a provider's "retry after" is honoured with.
const MIN_RETRY: Duration = Duration::from_millis(500);

/// How long a flush waits after the store failed to record the previous one.
const STORE_BACKOFF: Duration = Duration::from_secs(5);

/// One response message for the actor: what the sink decided, and the notification to apply
/// when it is accepted.
#[derive(Debug)]
pub struct Item {
    pub effect: MessageEffect,
    pub notification: Option<Notification>,
}

/// A request's items, answered with the effects that held.
pub(super) type DeliverReply = RpcReplyPort<Result<Vec<MessageEffect>, StoreError>>;

#[derive(Debug)]
pub(super) enum SubMsg {
    Deliver {
        items: Vec<Item>,
        reply: DeliverReply,
    },
    /// The burst may be due; ignored unless `generation` is the latest scheduled.
    Flush { generation: u64 },
    /// A push ended (boxed: every future that holds a message is as large as the largest).
    PushDone(Box<PushDone>),
    /// The supervisor's periodic check for passivation; `force` when the shard needs room.
    Idle { force: bool },
    /// Shutdown: flush the pending burst now, and answer once no push is in flight.
    Drain(RpcReplyPort<()>),
    /// Fails the actor, to test its supervision.
    #[cfg(feature = "testsuite")]
    Fail,
}

#[derive(Debug)]
pub(super) struct PushDone {
    request: PushRequest,
    outcome: PushOutcome,
    burst: Burst,
}

#[derive(Debug)]
pub(super) struct SubscriptionActor;

#[derive(Debug)]
pub(super) struct SubArgs {
    pub(super) id: RegistrationId,
    /// The record as the caller just read it; `None`: read it from the store.
    pub(super) record: Option<Arc<RegistrationRecord>>,
    pub(super) deps: Arc<Deps>,
    pub(super) shard: ActorRef<ShardMsg>,
}

#[derive(Debug)]
pub(super) struct SubState {
    /// The stored record (shared with [`super::LiveIndex`], republished after every write).
    record: Arc<RegistrationRecord>,
    /// This actor, as its [`super::LiveIndex`] entry names it.
    actor: ActorId,
    deps: Arc<Deps>,
    shard: ActorRef<ShardMsg>,
    generation: u64,
    /// Requests handled, for the supervisor to tell whether one is still on its way.
    handled: u64,
    /// The burst whose push is in flight.
    in_flight: Option<Burst>,
    /// Retries of the current burst's push so far (the back-off grows with them).
    retries: u32,
    /// The provider asked not to push before this (a retry's back-off): new events wait too.
    retry_at: Option<Instant>,
    /// Set while the node drains: flush without waiting, answer these when done.
    draining: Vec<RpcReplyPort<()>>,
    last_activity: Instant,
    /// The cached record may differ from the stored one (a fenced write changed the cache):
    /// read it again before the next write.
    stale: bool,
}

impl Actor for SubscriptionActor {
    type Msg = SubMsg;
    type State = SubState;
    type Arguments = SubArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SubMsg>,
        args: SubArgs,
    ) -> Result<SubState, ActorProcessingErr> {
        let record = match args.record {
            Some(record) => record,
            None => Arc::new(
                args.deps
                    .store
                    .get(&args.id)
                    .await?
                    .ok_or_else(|| format!("registration {} is gone", args.id))?,
            ),
        };
        args.deps.metrics.subscriptions.live_actors.inc();
        args.deps.live.publish(myself.get_id(), &record, true);
        let mut state = SubState {
            record,
            actor: myself.get_id(),
            deps: args.deps,
            shard: args.shard,
            generation: 0,
            handled: 0,
            in_flight: None,
            retries: 0,
            retry_at: None,
            draining: Vec::new(),
            last_activity: Instant::now(),
            stale: false,
        };
        // A burst left by a passivated or crashed predecessor is flushed when due.
        schedule_flush(&myself, &mut state);
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SubMsg>,
        state: &mut SubState,
    ) -> Result<(), ActorProcessingErr> {
        state.deps.metrics.subscriptions.live_actors.dec();
        state.deps.live.unlist(&state.record.id, state.actor);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SubMsg>,
        message: SubMsg,
        state: &mut SubState,
    ) -> Result<(), ActorProcessingErr> {
        // Boxed: ractor keeps the future that waits for an actor's next message (which
        // embeds this one) for as long as the actor lives, so its size is paid by every idle
        // live actor; the work itself is allocated only while a message is handled.
        Box::pin(on_message(myself, message, state)).await
    }
}

async fn on_message(
    myself: ActorRef<SubMsg>,
    message: SubMsg,
    state: &mut SubState,
) -> Result<(), ActorProcessingErr> {
    match message {
        SubMsg::Deliver { items, reply } => {
            state.last_activity = Instant::now();
            state.handled += 1;
            let answer = deliver(state, items).await;
            schedule_flush(&myself, state);
            let _ = reply.send(answer);
        }
        SubMsg::Flush { generation } if generation == state.generation => {
            flush_now(&myself, state).await
        }
        SubMsg::Flush { .. } => {}
        SubMsg::PushDone(done) => {
            let PushDone {
                request,
                outcome,
                burst,
            } = *done;
            state.in_flight = None;
            (state.retries, state.retry_at) = match outcome {
                PushOutcome::RetryAfter(wait) => (
                    state.retries.saturating_add(1),
                    Some(Instant::now() + wait.max(MIN_RETRY)),
                ),
                _ => (0, None),
            };
            let recorded = record_push(state, &request, &outcome, burst).await;
            match outcome {
                // The store is failing: do not push again at once.
                _ if !recorded && state.draining.is_empty() => {
                    schedule_in(&myself, state, STORE_BACKOFF);
                }
                _ if !recorded => {}
                PushOutcome::RetryAfter(_) if !state.draining.is_empty() => {}
                PushOutcome::RetryAfter(wait) => {
                    schedule_in(&myself, state, wait.max(MIN_RETRY));
                }
                _ if !state.draining.is_empty() => {
                    flush_now(&myself, state).await;
                }
                _ => schedule_flush(&myself, state),
            }
            finish_drain(state);
        }
        SubMsg::Drain(reply) => {
            state.draining.push(reply);
            flush_now(&myself, state).await;
            finish_drain(state);
        }
        #[cfg(feature = "testsuite")]
        SubMsg::Fail => return Err("failure injected by a test".into()),
        SubMsg::Idle { force } => {
            let idle = state.last_activity.elapsed();
            let quiet = state.record.progress.burst.is_none() && state.in_flight.is_none();
            if quiet && (force || idle >= state.deps.actors.idle_timeout) {
                let _ = state.shard.send_message(ShardMsg::Passivate {
                    id: state.record.id.clone(),
                    handled: state.handled,
                });
            }
        }
    }
    Ok(())
}

/// Reads, changes and writes the record until the write wins; `Ok(None)` if it is gone.
async fn write_with<T>(
    state: &mut SubState,
    mut change: impl FnMut(&mut RegistrationRecord) -> T,
) -> Result<Option<T>, StoreError> {
    for _ in 0..5 {
        if state.stale {
            match state.deps.store.get(&state.record.id).await? {
                Some(fresh) => remember(state, fresh),
                None => return Ok(gone(state)),
            }
            state.stale = false;
        }
        let mut record = RegistrationRecord::clone(&state.record);
        let result = change(&mut record);
        if record == *state.record {
            return Ok(Some(result));
        }
        let fence = state
            .deps
            .fencing
            .fence(record.device_token.shard())
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        match state
            .deps
            .store
            .update_from(fence, &state.record, &record)
            .await
        {
            Ok(written) => {
                remember(state, written);
                return Ok(Some(result));
            }
            Err(StoreError::Conflict) => match state.deps.store.get(&record.id).await? {
                Some(fresh) => remember(state, fresh),
                None => return Ok(gone(state)),
            },
            Err(StoreError::NotFound) => return Ok(gone(state)),
            Err(error @ StoreError::Fenced { .. }) => {
                // Another node owns the shard now and flushes from the store: this copy
                // must not push again.
                Arc::make_mut(&mut state.record).progress.burst = None;
                state.stale = true;
                return Err(error);
            }
            Err(other) => return Err(other),
        }
    }
    Err(StoreError::Conflict)
}

/// The registration was deleted (unregistered): from now on the actor treats it as dead —
/// nothing to flush, every message unwanted — until it is passivated.
fn gone<T>(state: &mut SubState) -> Option<T> {
    let record = Arc::make_mut(&mut state.record);
    record.state = RegState::Dead;
    record.dead_reason = Some("unregistered".into());
    record.progress.burst = None;
    state.deps.live.publish(state.actor, &state.record, false);
    None
}

/// Takes `record` as the stored record, and publishes it.
fn remember(state: &mut SubState, record: RegistrationRecord) {
    state.record = Arc::new(record);
    state.deps.live.publish(state.actor, &state.record, false);
}

async fn deliver(state: &mut SubState, items: Vec<Item>) -> Result<Vec<MessageEffect>, StoreError> {
    let now = UnixMillis::now();
    let metrics = state.deps.metrics.subscriptions.clone();
    let mut stats = Vec::new();
    let written = write_with(state, |record| {
        stats.clear();
        items
            .iter()
            .map(|item| {
                let held = apply_effect(record, item.effect.clone(), now);
                if let (MessageEffect::Accept { .. }, Some(n)) = (&held, &item.notification) {
                    stats.push(apply_notification(record, n, now));
                }
                held
            })
            .collect::<Vec<_>>()
    })
    .await;
    let held = match written {
        Ok(Some(held)) => held,
        // Unregistered meanwhile: nothing is wanted any more.
        Ok(None) => items
            .iter()
            .map(|item| match item.effect {
                MessageEffect::Foreign => MessageEffect::Foreign,
                _ => MessageEffect::Unsubscribe,
            })
            .collect(),
        // Bound to another registration in between.
        Err(StoreError::SubscriptionTaken(_)) => items
            .iter()
            .map(|item| match &item.effect {
                MessageEffect::Accept { bind: Some(_), .. } => MessageEffect::Foreign,
                MessageEffect::Accept { .. } => MessageEffect::Unsubscribe,
                other => other.clone(),
            })
            .collect(),
        Err(other) => return Err(other),
    };
    for applied in &stats {
        metrics.events.inc_by(applied.events as u64);
        metrics.notification(match (applied.duplicate, applied.stale) {
            (true, _) => "duplicate",
            (_, true) => "stale",
            _ => "applied",
        });
        if applied.gap {
            metrics.gaps.inc();
        }
    }
    Ok(held)
}

fn schedule_in(myself: &ActorRef<SubMsg>, state: &mut SubState, wait: Duration) {
    state.generation += 1;
    let generation = state.generation;
    myself.send_after(wait, move || SubMsg::Flush { generation });
}

/// Arms the flush timer for the pending burst, if any (and no push is in flight).
fn schedule_flush(myself: &ActorRef<SubMsg>, state: &mut SubState) {
    if state.in_flight.is_some() || state.record.state == RegState::Dead {
        return;
    }
    if let Some(burst) = &state.record.progress.burst {
        let due = flush::due(burst, &state.deps.rules);
        let wait = Duration::from_millis(due.0.saturating_sub(UnixMillis::now().0));
        let backing_off = state.retry_at.map_or(Duration::ZERO, |at| {
            at.saturating_duration_since(Instant::now())
        });
        schedule_in(myself, state, wait.max(backing_off));
    }
}

async fn flush_now(myself: &ActorRef<SubMsg>, state: &mut SubState) {
    let Some(burst) = state.record.progress.burst else {
        return;
    };
    if state.in_flight.is_some() || state.record.state == RegState::Dead {
        return;
    }
    let now = UnixMillis::now();
    let backing_off = state.retry_at.is_some_and(|at| Instant::now() < at);
    if (backing_off || now < flush::due(&burst, &state.deps.rules)) && state.draining.is_empty() {
        return schedule_flush(myself, state);
    }
    let device = match state
        .deps
        .store
        .list_device_except(&state.record.device_token, &state.record.id)
        .await
    {
        Ok(device) => device,
        Err(error) => {
            tracing::warn!(registration = %state.record.id, %error, "cannot read the device's registrations; flush retried in 1s");
            return schedule_in(myself, state, Duration::from_secs(1));
        }
    };
    match flush::plan(&state.record, &device, now, &state.deps.rules) {
        FlushPlan::Postpone(at) => {
            state.deps.metrics.subscriptions.flush("postponed");
            schedule_in(
                myself,
                state,
                Duration::from_millis(at.0.saturating_sub(now.0)),
            );
        }
        FlushPlan::Skip { .. } => {
            state.deps.metrics.subscriptions.flush("skipped");
            let cleared = write_with(state, |r| {
                if r.progress.burst == Some(burst) {
                    r.progress.burst = None;
                }
            })
            .await;
            if let Err(error) = cleared {
                tracing::warn!(registration = %state.record.id, %error, "cannot clear a flushed burst; retried in 1s");
                schedule_in(myself, state, Duration::from_secs(1));
            } else {
                schedule_flush(myself, state);
            }
        }
        FlushPlan::Send(mut request) => {
            request.attempt = state.retries;
            state.in_flight = Some(burst);
            let (sender, reply_to) = (state.deps.sender.clone(), myself.clone());
            let pushed = request.clone();
            tokio::spawn(async move {
                // A sender that panics or hangs must not leave the burst in flight forever.
                let sending = AssertUnwindSafe(sender.send(pushed)).catch_unwind();
                let outcome = match tokio::time::timeout(PUSH_GUARD, sending).await {
                    Ok(Ok(outcome)) => outcome,
                    Ok(Err(_)) => PushOutcome::Failed {
                        reason: "the push sender failed".into(),
                    },
                    Err(_) => PushOutcome::RetryAfter(Duration::from_secs(5)),
                };
                let _ = reply_to.send_message(SubMsg::PushDone(Box::new(PushDone {
                    request,
                    outcome,
                    burst,
                })));
            });
        }
    }
}

/// Whether `outcome` kills `record`: a dead token does, unless the provider says it died
/// before the registration was made (APNs `Unregistered` carries that time).
fn kills(outcome: &PushOutcome, record: &RegistrationRecord) -> bool {
    match outcome {
        PushOutcome::TokenDead { since_ms, .. } => {
            since_ms.is_none_or(|since| record.created_at.0 < since)
        }
        _ => false,
    }
}

/// Answers the drain requests once no push is in flight (a burst the drain could not flush
/// — postponed, or a failed read — stays in the store for the next owner).
fn finish_drain(state: &mut SubState) {
    if state.in_flight.is_none() {
        for reply in state.draining.drain(..) {
            let _ = reply.send(());
        }
    }
}

/// Tells internal services that the provider killed this registration's token. The
/// registration is already dead in the store; a lost event is logged and counted.
async fn publish_dead(state: &SubState, outcome: &PushOutcome, now: UnixMillis) {
    let PushOutcome::TokenDead { reason, since_ms } = outcome else {
        return;
    };
    let event = DeadToken {
        registration_id: state.record.id.clone(),
        device_token: state.record.device_token.clone(),
        platform: state.record.platform,
        app_id: state.record.app_id.clone(),
        reason: reason.clone(),
        dead_at: now,
        provider_since_ms: *since_ms,
    };
    if let Err(error) = state.deps.store.publish_feedback(&event).await {
        state.deps.metrics.subscriptions.feedback_lost.inc();
        tracing::error!(registration = %state.record.id, %error, "cannot publish the dead-token feedback event");
    }
}

/// Writes what became of a push; the part of the burst it covered is done.
async fn record_push(
    state: &mut SubState,
    request: &PushRequest,
    outcome: &PushOutcome,
    flushed: Burst,
) -> bool {
    let metrics = state.deps.metrics.subscriptions.clone();
    metrics.flush(outcome.name());
    let now = UnixMillis::now();
    if !matches!(outcome, PushOutcome::RetryAfter(_)) {
        metrics.events_per_push.observe(f64::from(flushed.events));
        metrics
            .flush_latency
            .observe(now.0.saturating_sub(flushed.first_at.0) as f64 / 1000.0);
    }
    let killed = kills(outcome, &state.record);
    let written = write_with(state, |r| {
        r.last_push_at = Some(now);
        r.last_push_outcome = Some(outcome.name().to_owned());
        match outcome {
            PushOutcome::Delivered => r.badge = request.badge,
            PushOutcome::TokenDead { reason, .. } if killed => {
                r.state = RegState::Dead;
                r.dead_reason = Some(format!(
                    "push provider: the device token is dead ({reason})"
                ));
            }
            // Apple's Unregistered predates this registration: the app registered again since.
            PushOutcome::TokenDead { .. } => r.last_push_outcome = Some("failed".to_owned()),
            PushOutcome::RetryAfter(_) => return,
            PushOutcome::Failed { .. } => {}
        }
        r.progress.burst = match r.progress.burst {
            Some(b) if b == flushed || r.state == RegState::Dead => None,
            // Events arrived while the push was in flight: they make the next burst.
            Some(b) => Some(Burst {
                new_mail: b.new_mail.saturating_sub(flushed.new_mail),
                events: b.events.saturating_sub(flushed.events),
                ..b
            }),
            None => None,
        };
    })
    .await;
    match written {
        Ok(_) if killed => {
            tracing::info!(registration = %state.record.id, "device token dead: registration marked dead");
            publish_dead(state, outcome, now).await;
            true
        }
        Ok(_) => true,
        Err(error) => {
            tracing::warn!(registration = %state.record.id, %error, "cannot record a push outcome; the flush is retried later");
            false
        }
    }
}
