//! Domain values as `herald.v1.Peer` messages and back. Records travel as the fields of
//! their stored hash (the store's one encoding of a record); EWS requests as their parsed
//! messages, so the owner decides them exactly as the node that received them would have.

use herald_gateway::Verdict;
use herald_gateway::model::{
    Event, EventKind, Notification, ResponseClass, ResponseMessage, Timestamp,
};
use herald_proto::v1 as pb;
use tonic::Status;

use crate::domain::{FieldError, RegistrationId, RegistrationRecord, UnixMillis};
use crate::store::{record_fields, record_from_fields};
use crate::subscription::{AdoptOutcome, Command, CommandError, DeliverError};

pub fn record_to_wire(record: &RegistrationRecord) -> pb::RecordFields {
    pb::RecordFields {
        registration_id: record.id.to_string(),
        fields: record_fields(record).into_iter().collect(),
    }
}

pub fn record_from_wire(wire: Option<pb::RecordFields>) -> Result<RegistrationRecord, Status> {
    let wire = wire.ok_or_else(|| Status::invalid_argument("a record is missing"))?;
    let id = RegistrationId::parse("registration_id", &wire.registration_id)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    record_from_fields(&id, wire.fields.into_iter().collect())
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

/// The answer to a `ForwardCreate` call.
pub(super) fn created_to_wire(
    created: Result<RegistrationRecord, crate::store::StoreError>,
) -> Result<pb::ForwardCreateResponse, Status> {
    use pb::forward_create_response::Outcome;
    let outcome = match created {
        Ok(record) => Outcome::Record(record_to_wire(&record)),
        Err(crate::store::StoreError::SubscriptionTaken(other)) => {
            Outcome::SubscriptionTaken(other.to_string())
        }
        Err(error) => return Err(Status::unavailable(error.to_string())),
    };
    Ok(pb::ForwardCreateResponse {
        outcome: Some(outcome),
    })
}

/// What the owner of a new registration's shard said to its creation.
pub fn created_from_wire(
    answer: pb::ForwardCreateResponse,
) -> Result<RegistrationRecord, crate::store::StoreError> {
    use pb::forward_create_response::Outcome;
    let broken = |reason: String| crate::store::StoreError::Corrupt {
        key: "a peer's answer".into(),
        reason,
    };
    match answer.outcome {
        Some(Outcome::Record(record)) => {
            record_from_wire(Some(record)).map_err(|s| broken(s.message().to_owned()))
        }
        Some(Outcome::SubscriptionTaken(other)) => RegistrationId::parse("registration_id", &other)
            .map(crate::store::StoreError::SubscriptionTaken)
            .map_err(|e| broken(e.to_string()))
            .and_then(Err),
        None => Err(broken("nothing".into())),
    }
}

/// The answer to an `Adopt` call.
pub(super) fn adopt_to_wire(outcome: AdoptOutcome) -> pb::AdoptResponse {
    use pb::adopt_response::{Outcome, Superseded};
    pb::AdoptResponse {
        outcome: Some(match outcome {
            AdoptOutcome::Held(record) => Outcome::Held(record_to_wire(&record)),
            AdoptOutcome::Superseded => Outcome::Superseded(Superseded {}),
        }),
    }
}

/// What the owner of the target shard said to an `Adopt` call.
pub fn adopt_from_wire(answer: pb::AdoptResponse) -> Result<AdoptOutcome, DeliverError> {
    use pb::adopt_response::Outcome;
    match answer.outcome {
        Some(Outcome::Held(record)) => record_from_wire(Some(record))
            .map(|r| AdoptOutcome::Held(Box::new(r)))
            .map_err(|s| DeliverError::Actor(format!("a peer's answer: {}", s.message()))),
        Some(Outcome::Superseded(_)) => Ok(AdoptOutcome::Superseded),
        None => Err(DeliverError::Actor(
            "a peer answered an adoption with nothing".into(),
        )),
    }
}

pub fn command_to_wire(command: &Command) -> pb::forward_command_request::Command {
    use pb::forward_command_request::{Command as Wire, Unregister};
    match command {
        Command::Bind(sub) => Wire::BindSubscription(sub.as_str().to_owned()),
        Command::SetToken(token) => Wire::SetDeviceToken(token.clone()),
        Command::Unregister => Wire::Unregister(Unregister {}),
        Command::MarkStale { threshold } => Wire::MarkStaleBefore(threshold.0),
    }
}

pub(super) fn command_from_wire(
    command: Option<pb::forward_command_request::Command>,
) -> Result<Command, Status> {
    use pb::forward_command_request::Command as Wire;
    Ok(match command {
        Some(Wire::BindSubscription(raw)) => Command::Bind(
            crate::domain::SubscriptionId::parse("subscription_id", &raw)
                .map_err(|e| Status::invalid_argument(e.to_string()))?,
        ),
        Some(Wire::SetDeviceToken(token)) => Command::SetToken(token),
        Some(Wire::Unregister(_)) => Command::Unregister,
        Some(Wire::MarkStaleBefore(ms)) => Command::MarkStale {
            threshold: UnixMillis(ms),
        },
        None => return Err(Status::invalid_argument("a command is missing")),
    })
}

/// The names a field problem can carry (a `FieldError` names its field statically).
const FIELDS: [&str; 8] = [
    "registration_id",
    "device_token",
    "subscription_id",
    "platform",
    "app_id",
    "home_region",
    "inbox_folder_id",
    "request",
];

/// The owner's answer to a command, or the status that says it could not apply it.
pub(super) fn command_outcome_to_wire(
    outcome: Result<Option<RegistrationRecord>, CommandError>,
    shard: herald_cluster::ShardId,
) -> Result<pb::ForwardCommandResponse, Status> {
    use pb::forward_command_response::{Deleted, NotFound, Outcome};
    let outcome = match outcome {
        Ok(Some(record)) => Outcome::Record(record_to_wire(&record)),
        Ok(None) => Outcome::Deleted(Deleted {}),
        Err(CommandError::NotFound) => Outcome::NotFound(NotFound {}),
        Err(CommandError::Refused(reason)) => Outcome::Refused(reason),
        Err(CommandError::Invalid(problem)) => Outcome::Invalid(pb::FieldProblem {
            field: problem.field.to_owned(),
            message: problem.reason,
        }),
        Err(CommandError::Unavailable(DeliverError::NotOwner(_))) => {
            return Err(herald_cluster::peer::not_owner(shard));
        }
        Err(CommandError::Unavailable(error)) => {
            return Err(Status::unavailable(error.to_string()));
        }
    };
    Ok(pb::ForwardCommandResponse {
        outcome: Some(outcome),
    })
}

pub fn command_outcome_from_wire(
    answer: pb::ForwardCommandResponse,
) -> Result<Option<RegistrationRecord>, CommandError> {
    use pb::forward_command_response::Outcome;
    let broken = |what: String| {
        CommandError::Unavailable(DeliverError::Actor(format!("a peer's answer: {what}")))
    };
    match answer.outcome {
        Some(Outcome::Record(record)) => record_from_wire(Some(record))
            .map(Some)
            .map_err(|s| broken(s.message().to_owned())),
        Some(Outcome::Deleted(_)) => Ok(None),
        Some(Outcome::NotFound(_)) => Err(CommandError::NotFound),
        Some(Outcome::Refused(reason)) => Err(CommandError::Refused(reason)),
        Some(Outcome::Invalid(problem)) => {
            let field = FIELDS
                .iter()
                .find(|f| **f == problem.field)
                .copied()
                .unwrap_or("request");
            Err(CommandError::Invalid(FieldError::new(
                field,
                problem.message,
            )))
        }
        None => Err(broken("nothing".into())),
    }
}

pub fn messages_to_wire(messages: &[ResponseMessage]) -> Vec<pb::EwsResponseMessage> {
    messages.iter().map(message_to_wire).collect()
}

fn message_to_wire(message: &ResponseMessage) -> pb::EwsResponseMessage {
    pb::EwsResponseMessage {
        response_class: match message.class {
            ResponseClass::Success => pb::ResponseClass::Success,
            ResponseClass::Warning => pb::ResponseClass::Warning,
            ResponseClass::Error => pb::ResponseClass::Error,
        } as i32,
        response_code: message.response_code.clone(),
        error_subscription_id: message.error_subscription_id.clone(),
        notification: message.notification.as_ref().map(|n| pb::EwsNotification {
            subscription_id: n.subscription_id.clone(),
            previous_watermark: n.previous_watermark.clone(),
            more_events: n.more_events,
            events: n.events.iter().map(event_to_wire).collect(),
        }),
    }
}

fn event_to_wire(event: &Event) -> pb::EwsEvent {
    let kind = match event.kind {
        EventKind::Status => pb::EventKind::Status,
        EventKind::NewMail => pb::EventKind::NewMail,
        EventKind::Created => pb::EventKind::Created,
        EventKind::Deleted => pb::EventKind::Deleted,
        EventKind::Modified => pb::EventKind::Modified,
        EventKind::Moved => pb::EventKind::Moved,
        EventKind::Copied => pb::EventKind::Copied,
        EventKind::FreeBusyChanged => pb::EventKind::FreeBusyChanged,
    };
    pb::EwsEvent {
        kind: kind as i32,
        watermark: event.watermark.clone(),
        unix_seconds: event.timestamp.map(|t| t.unix_seconds),
        nanos: event.timestamp.map_or(0, |t| t.nanos),
        item_id: event.item_id.clone(),
        folder_id: event.folder_id.clone(),
        parent_folder_id: event.parent_folder_id.clone(),
        old_item_id: event.old_item_id.clone(),
        old_folder_id: event.old_folder_id.clone(),
        old_parent_folder_id: event.old_parent_folder_id.clone(),
        unread_count: event.unread_count,
    }
}

pub(super) fn messages_from_wire(
    messages: Vec<pb::EwsResponseMessage>,
) -> Result<Vec<ResponseMessage>, Status> {
    messages.into_iter().map(message_from_wire).collect()
}

fn message_from_wire(message: pb::EwsResponseMessage) -> Result<ResponseMessage, Status> {
    let class = match pb::ResponseClass::try_from(message.response_class) {
        Ok(pb::ResponseClass::Success) => ResponseClass::Success,
        Ok(pb::ResponseClass::Warning) => ResponseClass::Warning,
        Ok(pb::ResponseClass::Error) => ResponseClass::Error,
        _ => {
            return Err(Status::invalid_argument(
                "a message without a response class",
            ));
        }
    };
    let notification = message
        .notification
        .map(|n| -> Result<Notification, Status> {
            Ok(Notification {
                subscription_id: n.subscription_id,
                previous_watermark: n.previous_watermark,
                more_events: n.more_events,
                events: n
                    .events
                    .into_iter()
                    .map(event_from_wire)
                    .collect::<Result<_, _>>()?,
            })
        })
        .transpose()?;
    Ok(ResponseMessage {
        class,
        response_code: message.response_code,
        error_subscription_id: message.error_subscription_id,
        notification,
    })
}

fn event_from_wire(event: pb::EwsEvent) -> Result<Event, Status> {
    let kind = match pb::EventKind::try_from(event.kind) {
        Ok(pb::EventKind::Status) => EventKind::Status,
        Ok(pb::EventKind::NewMail) => EventKind::NewMail,
        Ok(pb::EventKind::Created) => EventKind::Created,
        Ok(pb::EventKind::Deleted) => EventKind::Deleted,
        Ok(pb::EventKind::Modified) => EventKind::Modified,
        Ok(pb::EventKind::Moved) => EventKind::Moved,
        Ok(pb::EventKind::Copied) => EventKind::Copied,
        Ok(pb::EventKind::FreeBusyChanged) => EventKind::FreeBusyChanged,
        _ => return Err(Status::invalid_argument("an event of no known kind")),
    };
    Ok(Event {
        kind,
        watermark: event.watermark,
        timestamp: event.unix_seconds.map(|unix_seconds| Timestamp {
            unix_seconds,
            nanos: event.nanos,
        }),
        item_id: event.item_id,
        folder_id: event.folder_id,
        parent_folder_id: event.parent_folder_id,
        old_item_id: event.old_item_id,
        old_folder_id: event.old_folder_id,
        old_parent_folder_id: event.old_parent_folder_id,
        unread_count: event.unread_count,
    })
}

pub(super) fn verdict_to_wire(verdict: Verdict) -> pb::Decision {
    match verdict {
        Verdict::Ok => pb::Decision::Ok,
        Verdict::Unsubscribe => pb::Decision::Unsubscribe,
        Verdict::Reject => pb::Decision::Reject,
        Verdict::Unavailable => pb::Decision::Unavailable,
    }
}

/// A peer's decision; anything unknown is the safe answer, 503.
pub fn verdict_from_wire(decision: i32) -> Verdict {
    match pb::Decision::try_from(decision) {
        Ok(pb::Decision::Ok) => Verdict::Ok,
        Ok(pb::Decision::Unsubscribe) => Verdict::Unsubscribe,
        Ok(pb::Decision::Reject) => Verdict::Reject,
        _ => Verdict::Unavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_round_trips_through_the_wire() {
        let messages = vec![
            ResponseMessage {
                class: ResponseClass::Success,
                response_code: Some("NoError".into()),
                error_subscription_id: None,
                notification: Some(Notification {
                    subscription_id: "sub-1".into(),
                    previous_watermark: Some(String::new()),
                    more_events: true,
                    events: vec![Event {
                        kind: EventKind::Modified,
                        watermark: Some("w1".into()),
                        timestamp: Some(Timestamp {
                            unix_seconds: 1_700_000_000,
                            nanos: 5,
                        }),
                        item_id: None,
                        folder_id: Some("inbox".into()),
                        parent_folder_id: Some("root".into()),
                        old_item_id: None,
                        old_folder_id: None,
                        old_parent_folder_id: None,
                        unread_count: Some(0),
                    }],
                }),
            },
            ResponseMessage {
                class: ResponseClass::Error,
                response_code: Some("ErrorMissedNotificationEvents".into()),
                error_subscription_id: Some("sub-2".into()),
                notification: None,
            },
        ];
        assert_eq!(
            messages_from_wire(messages_to_wire(&messages)).unwrap(),
            messages
        );
    }

    #[test]
    fn an_unknown_decision_is_unavailable_never_unsubscribe() {
        assert_eq!(verdict_from_wire(0), Verdict::Unavailable);
        assert_eq!(verdict_from_wire(99), Verdict::Unavailable);
        for verdict in [
            Verdict::Ok,
            Verdict::Unsubscribe,
            Verdict::Reject,
            Verdict::Unavailable,
        ] {
            assert_eq!(verdict_from_wire(verdict_to_wire(verdict) as i32), verdict);
        }
    }
}
