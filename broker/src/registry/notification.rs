//! What an EWS response message arriving on a registration's callback URL does to it
//! (protocol note §7.3, §10.2). [`decide`] is the pure rule; [`apply_effect`] applies a decision to a record (the
//! subscription actor does, in its one fenced write per request).

use herald_gateway::model::{ResponseClass, ResponseMessage};

use super::{Registry, RegistryError};
use crate::domain::{RegState, RegistrationRecord, SubscriptionId, UnixMillis};
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
pub(crate) fn apply_effect(
    record: &mut RegistrationRecord,
    effect: MessageEffect,
    now: UnixMillis,
) -> MessageEffect {
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
            // Nothing is pushed for a dead registration: its burst goes (and with it its
            // place in the shard's pending index).
            record.progress.burst = None;
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
}

#[cfg(test)]
mod tests {
    use herald_gateway::model::{Event, EventKind, Notification};

    use super::*;

    fn record(subscription: Option<&str>, state: RegState) -> RegistrationRecord {
        RegistrationRecord {
            subscription_id: subscription.map(|s| SubscriptionId::from_stored(s.into())),
            state,
            ..RegistrationRecord::sample(7)
        }
    }

    fn success(sub: &str, watermark: &str) -> ResponseMessage {
        ResponseMessage {
            class: ResponseClass::Success,
            response_code: Some("NoError".into()),
            error_subscription_id: None,
            notification: Some(Notification {
                subscription_id: sub.into(),
                previous_watermark: None,
                more_events: false,
                events: vec![Event {
                    kind: EventKind::Status,
                    watermark: Some(watermark.into()),
                    ..Event::default()
                }],
            }),
        }
    }

    fn error(sub: Option<&str>) -> ResponseMessage {
        ResponseMessage {
            class: ResponseClass::Error,
            response_code: Some("ErrorReadEventsFailed".into()),
            error_subscription_id: sub.map(str::to_owned),
            notification: None,
        }
    }

    fn sub(raw: &str) -> SubscriptionId {
        SubscriptionId::from_stored(raw.into())
    }

    fn run(
        record: &RegistrationRecord,
        message: &ResponseMessage,
        binding: Binding,
    ) -> MessageEffect {
        let claimed = message.subscription_id().map(sub);
        decide(record, message, claimed.as_ref(), binding)
    }

    #[test]
    fn own_subscription_is_accepted_with_its_watermark() {
        let bound = record(Some("A"), RegState::Active);
        let effect = run(&bound, &success("A", "w9"), Binding::NotElsewhere);
        assert_eq!(
            effect,
            MessageEffect::Accept {
                bind: None,
                watermark: Some("w9".into())
            }
        );
    }

    #[test]
    fn a_pending_registration_binds_on_first_sight_unless_bound_elsewhere() {
        let pending = record(None, RegState::Pending);
        assert_eq!(
            run(&pending, &success("A", "w1"), Binding::NotElsewhere),
            MessageEffect::Accept {
                bind: Some(sub("A")),
                watermark: Some("w1".into())
            }
        );
        assert_eq!(
            run(&pending, &success("A", "w1"), Binding::Elsewhere),
            MessageEffect::Foreign
        );
    }

    #[test]
    fn another_subscription_is_foreign_if_bound_elsewhere_else_unwanted() {
        let bound = record(Some("A"), RegState::Active);
        assert_eq!(
            run(&bound, &success("B", "w"), Binding::Elsewhere),
            MessageEffect::Foreign
        );
        assert_eq!(
            run(&bound, &success("B", "w"), Binding::NotElsewhere),
            MessageEffect::Unsubscribe
        );
    }

    #[test]
    fn error_messages_kill_their_own_subscription_only() {
        let bound = record(Some("A"), RegState::Active);
        for message in [error(Some("A")), error(None)] {
            assert!(
                matches!(run(&bound, &message, Binding::NotElsewhere), MessageEffect::Kill { reason } if reason.contains("ErrorReadEventsFailed"))
            );
        }
        assert_eq!(
            run(&bound, &error(Some("B")), Binding::NotElsewhere),
            MessageEffect::Unsubscribe
        );
        assert_eq!(
            run(&bound, &error(Some("B")), Binding::Elsewhere),
            MessageEffect::Foreign
        );
        let warning = ResponseMessage {
            class: ResponseClass::Warning,
            ..success("A", "w")
        };
        assert!(matches!(
            run(&bound, &warning, Binding::NotElsewhere),
            MessageEffect::Kill { .. }
        ));
    }

    #[test]
    fn a_dead_registration_unsubscribes_everything() {
        let dead = record(Some("A"), RegState::Dead);
        assert_eq!(
            run(&dead, &success("A", "w"), Binding::NotElsewhere),
            MessageEffect::Unsubscribe
        );
        assert_eq!(
            run(&dead, &error(None), Binding::NotElsewhere),
            MessageEffect::Unsubscribe
        );
    }

    #[test]
    fn applying_accepts_activates_and_keeps_the_last_watermark() {
        let mut r = record(None, RegState::Pending);
        let now = UnixMillis(42);
        let accept = MessageEffect::Accept {
            bind: Some(sub("A")),
            watermark: Some("w1".into()),
        };
        assert_eq!(apply_effect(&mut r, accept.clone(), now), accept);
        assert_eq!(
            (r.state, r.subscription_id.clone(), r.last_watermark.clone()),
            (RegState::Active, Some(sub("A")), Some("w1".into()))
        );
        let no_mark = MessageEffect::Accept {
            bind: None,
            watermark: None,
        };
        apply_effect(&mut r, no_mark, now);
        assert_eq!(
            r.last_watermark.as_deref(),
            Some("w1"),
            "a notification without watermark keeps the last one"
        );
        // Bound meanwhile to another subscription: the second bind does not hold.
        let other = MessageEffect::Accept {
            bind: Some(sub("B")),
            watermark: Some("w2".into()),
        };
        assert_eq!(apply_effect(&mut r, other, now), MessageEffect::Unsubscribe);
        assert_eq!(r.subscription_id, Some(sub("A")));
        // Killed: later accepts in the same request do not revive it.
        apply_effect(
            &mut r,
            MessageEffect::Kill {
                reason: "gone".into(),
            },
            now,
        );
        let again = MessageEffect::Accept {
            bind: None,
            watermark: None,
        };
        assert_eq!(apply_effect(&mut r, again, now), MessageEffect::Unsubscribe);
        assert_eq!(
            (r.state, r.dead_reason.as_deref()),
            (RegState::Dead, Some("gone"))
        );
    }
}
