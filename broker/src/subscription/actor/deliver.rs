//! Applying a request's notifications: each message's effect (decided by the sink from an
//! earlier read) is applied again to the copy as it is now, the accepted notifications are
//! applied (`state::apply`), and the result is written once before the gateway answers.

use herald_gateway::model::SendNotification;

use super::{SubState, WriteError, commit};
use crate::registry::{MessageEffect, apply_effect};
use crate::store::StoreError;
use crate::subscription::DeliverError;
use crate::subscription::state::apply as apply_notification;

pub(super) async fn deliver(
    state: &mut SubState,
    effects: Vec<MessageEffect>,
    request: &SendNotification,
) -> Result<Vec<MessageEffect>, DeliverError> {
    match &state.copy {
        None => return Err(DeliverError::Elsewhere),
        Some(copy) if copy.moving_to.is_some() => return Err(DeliverError::Moving),
        Some(_) => {}
    }
    let now = crate::domain::UnixMillis::now();
    let metrics = state.deps.metrics.subscriptions.clone();
    let mut stats = Vec::new();
    let written = commit(state, |record| {
        stats.clear();
        effects
            .iter()
            .zip(&request.messages)
            .map(|(effect, message)| {
                let held = apply_effect(record, effect.clone(), now);
                if let (MessageEffect::Accept { .. }, Some(n)) = (&held, &message.notification) {
                    stats.push(apply_notification(record, n, now));
                }
                held
            })
            .collect::<Vec<_>>()
    })
    .await;
    let held = match written {
        Ok(held) => held,
        // The subscription it would bind was bound to another registration in between:
        // those messages are foreign. (Only a pending registration binds, and then every
        // accepted message binds; anything else was not written and is retried.)
        Err(WriteError::Store(StoreError::SubscriptionTaken(owner))) => {
            if effects
                .iter()
                .any(|e| matches!(e, MessageEffect::Accept { bind: None, .. }))
            {
                return Err(StoreError::SubscriptionTaken(owner).into());
            }
            effects
                .iter()
                .map(|effect| match effect {
                    MessageEffect::Accept { .. } => MessageEffect::Foreign,
                    other => other.clone(),
                })
                .collect()
        }
        Err(other) => return Err(other.into()),
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
    if held.iter().any(|e| matches!(e, MessageEffect::Kill { .. }))
        && let Some(dead) = state.copy.clone()
    {
        // Exchange ended the subscription: the device's badge stops counting it.
        super::nudge_siblings(state, &dead).await;
    }
    Ok(held)
}
