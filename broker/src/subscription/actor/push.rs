//! Flushing the burst ([`flush::plan`]) and recording what became of the push. An outcome
//! applies only to the device token it was sent to: one that comes back after the token
//! changed neither kills the registration nor marks the new device's badge as shown.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};
use tracing::Instrument as _;

use futures_util::FutureExt as _;
use herald_workers::{PushOutcome, PushRequest};
use ractor::ActorRef;

use super::{SubMsg, SubState, commit, hold, nudge_siblings, siblings};
use crate::domain::{Burst, DeadToken, RegState, RegistrationRecord, UnixMillis};
use crate::subscription::flush::{self, FlushPlan};

/// Longest a push may take, retries included, before the actor stops waiting for it and
/// tries again later.
const PUSH_GUARD: Duration = Duration::from_secs(60);

/// The shortest wait a provider's "retry after" is honoured with.
const MIN_RETRY: Duration = Duration::from_millis(500);

/// How long a flush waits after the store failed once; doubled while it goes on failing, up
/// to [`MAX_STORE_BACKOFF`] (a store that reads but cannot write must not turn into a push a
/// second for every pending burst).
const STORE_BACKOFF: Duration = Duration::from_secs(1);
const MAX_STORE_BACKOFF: Duration = Duration::from_secs(60);

/// Holds the work off after a store failure, longer with each one in a row.
fn store_failed(state: &mut SubState) {
    let wait = STORE_BACKOFF
        .saturating_mul(1 << state.store_failures.min(6))
        .min(MAX_STORE_BACKOFF);
    state.store_failures = state.store_failures.saturating_add(1);
    hold(state, wait);
}

/// What the push task reports.
#[derive(Debug)]
pub(in crate::subscription) struct PushDone {
    request: PushRequest,
    outcome: PushOutcome,
    burst: Burst,
}

/// How long an actor whose shard's lease is not trusted waits before it looks again.
const NOT_OWNER_WAIT: Duration = Duration::from_secs(1);

/// Flushes the pending burst if it is due (or the node drains).
pub(super) async fn flush_now(myself: &ActorRef<SubMsg>, state: &mut SubState) {
    let Some(copy) = state.copy.clone() else {
        return;
    };
    let Some(burst) = copy.progress.burst else {
        return;
    };
    if state.in_flight || copy.state == RegState::Dead || copy.moving_to.is_some() {
        return;
    }
    let now = UnixMillis::now();
    let backing_off = state.not_before.is_some_and(|at| Instant::now() < at);
    if (backing_off || now < flush::due(&burst, &state.deps.rules)) && state.draining.is_empty() {
        return;
    }
    if expired(state, &burst, now) {
        return give_up(state, burst).await;
    }
    if let Err(not_owner) = super::fence(state) {
        // The shard's lease is not (or no longer) trusted: no read, no push; the keeper
        // stops this actor, or the lease is renewed, before the next look.
        tracing::debug!(registration = %state.id, %not_owner, "not flushing: the shard's lease is not held");
        return hold(state, NOT_OWNER_WAIT);
    }
    // From here the push may leave: the supervisor must not stop this actor meanwhile (its
    // outcome would be lost). `schedule` publishes the real due time when the handler ends.
    state.activity.set_due(crate::subscription::activity::BUSY);
    let device = match siblings(state, &copy.device_token).await {
        Ok(device) => device,
        Err(error) => {
            tracing::warn!(registration = %state.id, %error, "cannot read the device's registrations; flush retried");
            return store_failed(state);
        }
    };
    match flush::plan(&copy, &device, now, &state.deps.rules) {
        FlushPlan::Postpone(at) => {
            state.deps.metrics.subscriptions.flush("postponed");
            hold(state, Duration::from_millis(at.0.saturating_sub(now.0)));
        }
        FlushPlan::Skip { .. } => {
            state.deps.metrics.subscriptions.flush("skipped");
            let cleared = commit(state, |r| {
                if r.progress.burst == Some(burst) {
                    r.progress.burst = None;
                }
            })
            .await;
            if let Err(error) = cleared {
                tracing::warn!(registration = %state.id, ?error, "cannot clear a flushed burst; retried");
                store_failed(state);
            }
        }
        FlushPlan::Send(mut request) => {
            // The last moment before a push leaves: a node whose lease lapsed (paused past
            // it, cut off from Redis) sends nothing for the shard; its next owner does.
            if let Err(not_owner) = super::fence(state) {
                tracing::debug!(registration = %state.id, %not_owner, "not pushing: the shard's lease is not held");
                return;
            }
            request.attempt = state.retries;
            // A push that waits for a delivery slot past the lease's trusted time is not
            // sent (the shard's next owner sends it).
            request.send_before = state
                .deps
                .ownership
                .remaining(state.shard)
                .and_then(|left| std::time::Instant::now().checked_add(left));
            state.in_flight = true;
            let (sender, reply_to) = (state.deps.sender.clone(), myself.clone());
            let pushed = request.clone();
            let span = super::trace::flush_span(state, burst.first_at);
            let push = async move {
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
            };
            tokio::spawn(push.instrument(span));
        }
    }
}

/// Whether `burst` has waited longer than a badge is worth (`delivery.badge_lifetime`).
fn expired(state: &SubState, burst: &Burst, now: UnixMillis) -> bool {
    let age = Duration::from_millis(now.0.saturating_sub(burst.first_at.0));
    age > state.deps.give_up_after
}

/// Drops a burst whose push kept failing past its lifetime, recording it.
async fn give_up(state: &mut SubState, burst: Burst) {
    state.deps.metrics.subscriptions.flush("expired");
    let now = UnixMillis::now();
    let recorded = commit(state, |r| {
        if r.progress.burst == Some(burst) {
            r.progress.burst = None;
            r.last_push_at = Some(now);
            r.last_push_outcome = Some("expired".to_owned());
        }
    })
    .await;
    match recorded {
        Ok(()) => {
            tracing::warn!(registration = %state.id, "a burst's push kept failing past delivery.badge_lifetime: given up");
            (state.retries, state.not_before) = (0, None);
        }
        Err(error) => {
            tracing::warn!(registration = %state.id, ?error, "cannot record a given-up burst; retried");
            store_failed(state);
        }
    }
}

/// A push ended.
pub(super) async fn done(myself: &ActorRef<SubMsg>, state: &mut SubState, done: PushDone) {
    let PushDone {
        request,
        outcome,
        burst,
    } = done;
    state.in_flight = false;
    let current = state
        .copy
        .as_ref()
        .is_some_and(|c| c.device_token.as_str() == request.device_token && c.moving_to.is_none());
    if !current {
        // Sent to a token the registration does not have now (or from a copy that is moving
        // away): the outcome is the old device's. The burst stays (here, or in the copy the
        // registration moved to), so the new token gets the badge.
        state.deps.metrics.subscriptions.flush("superseded");
        (state.retries, state.not_before) = (0, None);
        finish_drain(state);
        return;
    }
    (state.retries, state.not_before) = match outcome {
        PushOutcome::RetryAfter(wait) => (
            state.retries.saturating_add(1),
            Instant::now().checked_add(wait.max(MIN_RETRY)),
        ),
        _ => (0, None),
    };
    let recorded = record_push(state, &request, &outcome, burst).await;
    if recorded {
        state.store_failures = 0;
    }
    match outcome {
        // The store is failing: do not push again at once.
        _ if !recorded && state.draining.is_empty() => store_failed(state),
        PushOutcome::RetryAfter(_) if !state.draining.is_empty() => {}
        _ if !recorded => {}
        PushOutcome::RetryAfter(_) => {}
        _ if !state.draining.is_empty() => flush_now(myself, state).await,
        _ => {}
    }
    finish_drain(state);
}

/// Answers the drain requests once no push is in flight (a burst the drain could not flush
/// — postponed, or a failed read — stays in the store for the next owner).
pub(super) fn finish_drain(state: &mut SubState) {
    if !state.in_flight {
        for reply in state.draining.drain(..) {
            let _ = reply.send(());
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
    let written = commit(state, |r| {
        // The copy written may have been read again since the push left: the outcome is
        // its only if the token is still the one pushed to.
        if r.device_token.as_str() != request.device_token {
            return false;
        }
        let killed = kills(outcome, r);
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
            PushOutcome::RetryAfter(_) => return false,
            PushOutcome::Failed { .. } => {}
        }
        r.progress.burst = match r.progress.burst {
            Some(b) if b == flushed || r.state == RegState::Dead => None,
            // Events arrived while the push was in flight: they make the next burst, which
            // starts where the flushed one ended.
            Some(b) => Some(Burst {
                first_at: b.first_at.max(flushed.last_at),
                new_mail: b.new_mail.saturating_sub(flushed.new_mail),
                events: b.events.saturating_sub(flushed.events),
                announce: b.announce && b.last_at > flushed.last_at,
                ..b
            }),
            None => None,
        };
        killed
    })
    .await;
    match written {
        Ok(true) => {
            tracing::info!(registration = %state.id, "device token dead: registration marked dead");
            publish_dead(state, outcome, now).await;
            true
        }
        Ok(false) => true,
        Err(error) => {
            tracing::warn!(registration = %state.id, ?error, "cannot record a push outcome; the flush is retried later");
            false
        }
    }
}

/// Tells internal services that the provider killed this registration's token, and the
/// device's other registrations that its badge changed. The registration is already dead in
/// the store; a lost event is logged and counted.
async fn publish_dead(state: &SubState, outcome: &PushOutcome, now: UnixMillis) {
    let (PushOutcome::TokenDead { reason, since_ms }, Some(copy)) = (outcome, &state.copy) else {
        return;
    };
    let event = DeadToken {
        registration_id: state.id.clone(),
        device_token: copy.device_token.clone(),
        platform: copy.platform,
        app_id: copy.app_id.clone(),
        reason: reason.clone(),
        dead_at: now,
        provider_since_ms: *since_ms,
    };
    if let Err(error) = state.deps.store.publish_feedback(&event).await {
        state.deps.metrics.subscriptions.feedback_lost.inc();
        tracing::error!(registration = %state.id, %error, "cannot publish the dead-token feedback event");
    }
    nudge_siblings(state, copy).await;
}
