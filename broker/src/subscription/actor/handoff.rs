//! Moving a registration to the shard of its new device token — a handoff between the two
//! shards' actors, each writing only its own shard, fenced by that shard's epoch:
//!
//! 1. the source actor freezes its copy (`moving_to` = the new token; one write): requests
//!    for the registration now answer "moving" (503, Exchange retries), and the copy stays
//!    where readers find it;
//! 2. the target shard's actor adopts a copy under the new token — the same dedupe keys,
//!    Inbox count, pending burst and subscription binding, at the next version, with a burst
//!    so the new device hears its badge;
//! 3. the source records the new location: the commit point, from which readers find the
//!    new copy;
//! 4. the source removes its frozen copy, and tells the old device's other registrations
//!    that its badge changed.
//!
//! A crash between two steps leaves the frozen copy in the source shard's pending index; the
//! shard's next owner finishes the move, and every step can be repeated: an adoption finds
//! its copy already written (or the move committed since), the location never goes back to a
//! smaller version, a removal of what is gone is nothing. docs/subscriptions.md says why no
//! state is lost or doubled.

use std::time::{Duration, Instant};

use ractor::ActorRef;

use super::commands::new_device;
use super::{SubMsg, SubState, commit, fence, forget, nudge_siblings, refresh, remember};
use crate::domain::{DeviceToken, RegistrationRecord, UnixMillis};
use crate::store::{Adopted, StoreError};
use crate::subscription::{AdoptOutcome, CommandError, DeliverError};

/// Longest wait between two attempts to finish a move.
const MAX_MOVE_BACKOFF: Duration = Duration::from_secs(30);

/// Step 1, then the rest: the registration moves to `token`'s shard.
pub(super) async fn move_out(
    myself: &ActorRef<SubMsg>,
    state: &mut SubState,
    token: DeviceToken,
) -> Result<RegistrationRecord, CommandError> {
    commit(state, |r| r.moving_to = Some(token.clone())).await?;
    tracing::info!(registration = %state.id, from = %state.shard, to = %token.shard(), "device token changed: moving to another shard");
    finish(myself, state).await
}

/// Steps 2–4 for the frozen copy this actor holds; on failure the copy stays frozen and the
/// move is tried again after a back-off.
pub(super) async fn finish(
    _myself: &ActorRef<SubMsg>,
    state: &mut SubState,
) -> Result<RegistrationRecord, CommandError> {
    let metrics = state.deps.metrics.subscriptions.clone();
    let result = attempt(state).await;
    let left = match &result {
        // Committed, and the old copy is gone (or was never frozen here): done.
        Ok(_) if state.copy.as_ref().is_none_or(|c| c.moving_to.is_none()) => {
            metrics.moves.get_or_create(&outcome("done")).inc();
            (state.move_failures, state.not_before) = (0, None);
            return result;
        }
        // Committed; the old copy is still here.
        Ok(_) => "cannot remove a moved registration's old copy yet; retried".to_owned(),
        Err(error) => format!(
            "cannot finish moving a registration to its new shard yet ({error}); requests for it answer 503 meanwhile"
        ),
    };
    metrics.moves.get_or_create(&outcome("retrying")).inc();
    state.move_failures = state.move_failures.saturating_add(1);
    // Jittered, so that two moves of one registration waiting on each other (each side's
    // actor asking the other's) do not keep meeting.
    let ceiling = Duration::from_millis(100)
        .saturating_mul(1 << state.move_failures.min(16))
        .min(MAX_MOVE_BACKOFF);
    let wait = ceiling / 2 + ceiling.mul_f64(fastrand::f64() / 2.0);
    state.not_before = Instant::now().checked_add(wait);
    tracing::warn!(registration = %state.id, retry_ms = wait.as_millis() as u64, "{left}");
    result
}

/// Steps 2–4 once, from the copy as stored.
async fn attempt(state: &mut SubState) -> Result<RegistrationRecord, CommandError> {
    if state.stale {
        refresh(state).await.map_err(DeliverError::from)?;
    }
    let frozen = state
        .copy
        .clone()
        .ok_or(CommandError::Unavailable(DeliverError::Elsewhere))?;
    match frozen.moving_to.clone() {
        Some(target) => complete(state, &frozen, &target).await,
        // Read again, the copy is not frozen (the registration moved back in since).
        None => Ok(RegistrationRecord::clone(&frozen)),
    }
}

fn outcome(name: &'static str) -> crate::subscription::metrics::OutcomeLabels {
    crate::subscription::metrics::OutcomeLabels { outcome: name }
}

async fn complete(
    state: &mut SubState,
    frozen: &RegistrationRecord,
    target: &DeviceToken,
) -> Result<RegistrationRecord, CommandError> {
    let mut moved = RegistrationRecord {
        device_token: target.clone(),
        moving_to: None,
        version: frozen.version + 1,
        ..frozen.clone()
    };
    new_device(&mut moved, UnixMillis::now());
    // Committed already (an earlier attempt got that far): only the old copy is left to
    // drop. Asking the target again would wait on an actor that may be waiting on us.
    let committed = state
        .deps
        .store
        .location(&state.id)
        .await
        .map_err(DeliverError::Store)?
        .is_some_and(|location| location.version >= moved.version);
    let answer = if committed {
        moved.clone()
    } else {
        let answer = match state.deps.shards.adopt(&state.deps, moved.clone()).await? {
            AdoptOutcome::Held(copy) => *copy,
            AdoptOutcome::Superseded => moved.clone(),
        };
        state
            .deps
            .store
            .set_location(&state.id, target.shard(), moved.version)
            .await
            .map_err(DeliverError::Store)?;
        // The target's copy is the live one now: its actor may list it for the gateway.
        state
            .deps
            .shards
            .tell(target.shard(), state.id.clone(), SubMsg::Committed);
        answer
    };
    // Committed: from here on the move is done whatever happens to the old copy. A removal
    // that fails leaves it frozen and pending here, and it is removed at the next attempt.
    match state.deps.store.remove(fence(state)?, frozen).await {
        Ok(_) => {
            forget(state);
            nudge_siblings(state, frozen).await;
        }
        Err(error) => {
            if matches!(error, StoreError::Conflict) {
                // This is not the copy the shard holds: read it again.
                state.stale = true;
            }
            tracing::debug!(registration = %state.id, %error, "a moved registration's old copy was not removed");
        }
    }
    Ok(answer)
}

/// The target side: writes `record`, the copy of a registration moving into this shard,
/// unless this shard holds it already or the move was committed long ago.
pub(super) async fn adopt(
    state: &mut SubState,
    record: RegistrationRecord,
) -> Result<AdoptOutcome, DeliverError> {
    for _ in 0..2 {
        if state.stale {
            refresh(state).await.map_err(DeliverError::from)?;
        }
        if let Some(copy) = &state.copy
            && copy.version >= record.version
        {
            return Ok(if copy.moving_to.is_some() {
                AdoptOutcome::Superseded
            } else {
                AdoptOutcome::Held(Box::new(RegistrationRecord::clone(copy)))
            });
        }
        // No copy here as new: was the move committed already, and the registration moved
        // on or was deleted since? Then this copy must not come back.
        if let Some(location) = state.deps.store.location(&state.id).await?
            && location.version >= record.version
        {
            return Ok(AdoptOutcome::Superseded);
        }
        match state
            .deps
            .store
            .adopt(fence(state)?, state.copy.as_deref(), &record)
            .await
        {
            Ok(Adopted::Written(written)) => {
                tracing::debug!(registration = %state.id, shard = %state.shard, "registration adopted from another shard");
                remember(state, RegistrationRecord::clone(&written));
                return Ok(AdoptOutcome::Held(written));
            }
            // Deleted since the move committed: it must not come back.
            Ok(Adopted::Deleted) => return Ok(AdoptOutcome::Superseded),
            Ok(Adopted::AlreadyThere) | Err(StoreError::Conflict) => state.stale = true,
            Err(other) => return Err(other.into()),
        }
    }
    Err(StoreError::Conflict.into())
}
