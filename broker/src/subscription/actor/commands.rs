//! The API's changes and the liveness sweep, applied by the registration's actor in order
//! with its notifications and push outcomes.

use ractor::ActorRef;

use super::{SubMsg, SubState, WriteError, commit, handoff, nudge_siblings};
use crate::domain::{Burst, DeviceToken, RegState, RegistrationRecord, UnixMillis};
use crate::store::StoreError;
use crate::subscription::{Command, CommandError, DeliverError};

pub(super) async fn run(
    myself: &ActorRef<SubMsg>,
    state: &mut SubState,
    command: Command,
) -> Result<Option<RegistrationRecord>, CommandError> {
    let copy = state
        .copy
        .clone()
        .ok_or(CommandError::Unavailable(DeliverError::Elsewhere))?;
    if let Some(moving_to) = &copy.moving_to {
        // A frozen copy: the move finishes first. Asking again for the same token is how a
        // caller whose first call timed out learns it is done.
        return match command {
            Command::SetToken(raw)
                if DeviceToken::parse(copy.platform, &raw).as_ref() == Ok(moving_to) =>
            {
                handoff::finish(myself, state).await.map(Some)
            }
            _ => Err(CommandError::Unavailable(DeliverError::Moving)),
        };
    }
    match command {
        Command::Bind(sub) => {
            if let Some(bound) = &copy.subscription_id
                && *bound != sub
            {
                return Err(CommandError::Refused(
                    "the registration is already bound to another subscription id; register again for a new subscription".into(),
                ));
            }
            commit(state, |r| r.subscription_id = Some(sub.clone())).await?;
            Ok(state.copy.as_deref().cloned())
        }
        Command::SetToken(raw) => {
            let token = DeviceToken::parse(copy.platform, &raw)?;
            if token == copy.device_token {
                Ok(Some(RegistrationRecord::clone(&copy)))
            } else if token.shard() == state.shard {
                retoken(state, &copy, token).await.map(Some)
            } else {
                handoff::move_out(myself, state, token).await.map(Some)
            }
        }
        Command::Unregister => unregister(state).await.map(|()| None),
        Command::MarkStale { threshold } => {
            let marked = commit(state, |r| {
                let silent = r.last_heard().is_some_and(|t| t < threshold);
                if silent {
                    r.state = RegState::Stale;
                }
                silent
            })
            .await?;
            if marked {
                state.deps.metrics.subscriptions.stale_marked.inc();
                tracing::info!(registration = %state.id, "no word from exchange for twice the status frequency: marked stale");
            }
            Ok(state.copy.as_deref().cloned())
        }
    }
}

/// A new device token of the same shard: the copy stays, its device index entry moves, the
/// new device gets the badge at once and the old device's other registrations push theirs.
async fn retoken(
    state: &mut SubState,
    before: &RegistrationRecord,
    token: DeviceToken,
) -> Result<RegistrationRecord, CommandError> {
    let now = UnixMillis::now();
    commit(state, |r| {
        r.device_token = token.clone();
        new_device(r, now);
    })
    .await?;
    tracing::info!(registration = %state.id, device = %token.fingerprint(), "device token changed");
    nudge_siblings(state, before).await;
    state
        .copy
        .as_deref()
        .cloned()
        .ok_or(CommandError::Unavailable(DeliverError::Elsewhere))
}

/// A registration that changed device: what was pushed to the old device says nothing of
/// what the new one shows, and the new device hears the badge at once (unless the
/// registration is dead).
pub(super) fn new_device(record: &mut RegistrationRecord, now: UnixMillis) {
    record.badge = 0;
    record.last_push_at = None;
    record.last_push_outcome = None;
    announce(record, now);
}

/// Gives the registration a burst that its device hears the badge from, whatever it was
/// pushed last.
fn announce(record: &mut RegistrationRecord, now: UnixMillis) {
    if record.state != RegState::Dead {
        if let Some(burst) = record.progress.burst.as_mut() {
            burst.announce = true;
            burst.last_at = burst.last_at.max(now);
            return;
        }
        record.progress.burst = Some(Burst {
            first_at: now,
            last_at: now,
            new_mail: 0,
            events: 0,
            more_events: false,
            announce: true,
        });
    }
}

async fn unregister(state: &mut SubState) -> Result<(), CommandError> {
    let fence = super::fence(state)?;
    for _ in 0..2 {
        if state.stale {
            super::refresh(state).await?;
        }
        let stored = state.copy.clone().ok_or(WriteError::Absent)?;
        if stored.moving_to.is_some() {
            return Err(WriteError::Moving.into());
        }
        match state.deps.store.delete(fence, &stored).await {
            Ok(()) => {
                super::forget(state);
                tracing::info!(registration = %state.id, "unregistered");
                nudge_siblings(state, &stored).await;
                return Ok(());
            }
            Err(StoreError::NotFound) => {
                super::forget(state);
                return Err(WriteError::Absent.into());
            }
            Err(StoreError::Conflict) => state.stale = true,
            Err(other) => return Err(other.into()),
        }
    }
    Err(StoreError::Conflict.into())
}

/// Another registration of the device left it or died: push the device's new total.
pub(super) async fn device_changed(state: &mut SubState) {
    let Some(copy) = state.copy.as_ref() else {
        return;
    };
    if copy.moving_to.is_some() || copy.state == RegState::Dead {
        return;
    }
    let now = UnixMillis::now();
    if let Err(error) = commit(state, |r| announce(r, now)).await {
        tracing::warn!(registration = %state.id, ?error, "cannot record that the device's badge changed; corrected at the next notification");
    }
}
