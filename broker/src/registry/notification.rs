//! What an EWS response message arriving on a registration's callback URL does to it
//! (protocol note §7.3, §10.2). [`decide`] is the pure rule; [`Registry::accept_notifications`]
//! applies the decisions of one request in a single fenced write.

use herald_gateway::model::{ResponseClass, ResponseMessage};

use super::{Registry, RegistryError};
use crate::domain::{RegState, RegistrationId, RegistrationRecord, SubscriptionId, UnixMillis};
use crate::store::StoreError;

/// The effect of one response message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageEffect {
    /// Ours: bind the subscription if the registration is pending, mark it active, record
    /// the time and the last watermark. Answer `OK`.
    Accept {
        bind: Option<SubscriptionId>,
        watermark: Option<String>,
    },
    /// Exchange reports the subscription failed: mark the registration dead. Answer
    /// `Unsubscribe`.
    Kill { reason: String },
    /// Not (or no longer) wanted on this URL: answer `Unsubscribe`, change nothing.
    Unsubscribe,
    /// Claims a subscription bound to another registration: 403, change nothing.
    Foreign,
}

/// Where a message's subscription id is bound, as far as the store knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    /// To this registration, or to none.
    NotElsewhere,
    /// To another registration.
    Elsewhere,
}

/// The rule for one message on `record`'s URL. `subscription` is the message's subscription
/// id (from its notification or its `MessageXml`), if any and well-formed.
pub fn decide(
    record: &RegistrationRecord,
    message: &ResponseMessage,
    subscription: Option<&SubscriptionId>,
    binding: Binding,
) -> MessageEffect {
    if record.state == RegState::Dead {
        return MessageEffect::Unsubscribe;
    }
    let not_ours = if binding == Binding::Elsewhere {
        MessageEffect::Foreign
    } else {
        MessageEffect::Unsubscribe
    };
    match (&record.subscription_id, subscription) {
        // An error message that names no subscription is about this URL's own.
        (_, None) => {}
        (Some(bound), Some(claimed)) if bound == claimed => {}
        (Some(_), Some(_)) => return not_ours,
        // Pending: bound on first sight, unless another registration holds it.
        (None, Some(_)) if binding == Binding::Elsewhere => return not_ours,
        (None, Some(_)) => {}
    }
    match (message.class, &message.notification) {
        (ResponseClass::Success, Some(notification)) => MessageEffect::Accept {
            bind: match &record.subscription_id {
                None => subscription.cloned(),
                Some(_) => None,
            },
            watermark: notification.last_watermark().map(str::to_owned),
        },
        _ => MessageEffect::Kill {
            reason: format!(
                "exchange reported {}",
                message.response_code.as_deref().unwrap_or("an error")
            ),
        },
    }
}

/// Applies `effect` to `record`; returns the effect that actually held (a registration that
/// turned dead or got bound to another subscription in the meantime turns an `Accept`
/// into `Unsubscribe`).
fn apply(record: &mut RegistrationRecord, effect: MessageEffect, now: UnixMillis) -> MessageEffect {
    match effect {
        MessageEffect::Accept { bind, watermark } => {
            if record.state == RegState::Dead {
                return MessageEffect::Unsubscribe;
            }
            if let Some(sub) = &bind {
                match &record.subscription_id {
                    None => record.subscription_id = Some(sub.clone()),
                    Some(bound) if bound == sub => {}
                    Some(_) => return MessageEffect::Unsubscribe,
                }
            }
            record.state = RegState::Active;
            record.last_notification_at = Some(now);
            if watermark.is_some() {
                record.last_watermark = watermark.clone();
            }
            MessageEffect::Accept { bind, watermark }
        }
        MessageEffect::Kill { reason } => {
            if record.state != RegState::Dead {
                record.state = RegState::Dead;
                record.dead_reason = Some(reason.clone());
                record.last_notification_at = Some(now);
            }
            MessageEffect::Kill { reason }
        }
        other => other,
    }
}

impl Registry {
    /// Where each message's subscription id is bound, looked up concurrently.
    pub async fn bindings(
        &self,
        record: &RegistrationRecord,
        subscriptions: &[Option<SubscriptionId>],
    ) -> Result<Vec<Binding>, RegistryError> {
        let lookups = subscriptions.iter().map(|sub| async move {
            match sub {
                Some(sub) if record.subscription_id.as_ref() != Some(sub) => {
                    let owner = self.store.find_subscription(sub).await?;
                    Ok(match owner {
                        Some(id) if id != record.id => Binding::Elsewhere,
                        _ => Binding::NotElsewhere,
                    })
                }
                _ => Ok(Binding::NotElsewhere),
            }
        });
        let results: Vec<Result<Binding, StoreError>> =
            futures_util::future::join_all(lookups).await;
        results
            .into_iter()
            .map(|r| r.map_err(RegistryError::from))
            .collect()
    }

    /// Applies the effects of one request's messages to registration `id` in one write,
    /// re-deciding on the freshest record if a concurrent write wins. Returns the effects
    /// that held.
    pub async fn accept_notifications(
        &self,
        id: &RegistrationId,
        effects: Vec<MessageEffect>,
    ) -> Result<Vec<MessageEffect>, RegistryError> {
        let needs_write = effects
            .iter()
            .any(|e| matches!(e, MessageEffect::Accept { .. } | MessageEffect::Kill { .. }));
        if !needs_write {
            return Ok(effects);
        }
        let now = UnixMillis::now();
        let mut held = Vec::new();
        let result = self
            .modify(id, |record| {
                held = effects
                    .iter()
                    .map(|effect| apply(record, effect.clone(), now))
                    .collect();
                Ok(())
            })
            .await;
        match result {
            Ok(_) => Ok(held),
            // Unregistered meanwhile: nothing is wanted any more.
            Err(RegistryError::NotFound) => Ok(effects
                .into_iter()
                .map(|e| match e {
                    MessageEffect::Foreign => MessageEffect::Foreign,
                    _ => MessageEffect::Unsubscribe,
                })
                .collect()),
            // The subscription was bound to another registration in between.
            Err(RegistryError::AlreadyExists(_)) => Ok(effects
                .into_iter()
                .map(|e| match e {
                    MessageEffect::Accept { bind: Some(_), .. } => MessageEffect::Foreign,
                    other => other,
                })
                .collect()),
            Err(other) => Err(other),
        }
    }
}
