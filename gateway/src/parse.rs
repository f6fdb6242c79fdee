//! The `SendNotification` parser: a hand-written recursive state machine over the hardened
//! [`Cursor`](cursor::Cursor), one function per element of the protocol. It checks namespace
//! URIs (never prefixes), the element structure, required elements and every typed value,
//! skips unknown header elements and unknown event kinds, and refuses anything else.

mod cursor;
mod error;
mod limits;
mod values;

#[cfg(test)]
mod tests;

use cursor::{Cursor, Element, Ns, Token};
pub(crate) use cursor::{MESSAGES, SOAP11, SOAP12};

use crate::model::{
    Event, EventKind, Notification, ResponseClass, ResponseMessage, SendNotification, SoapVersion,
};

pub use error::{ParseError, Reason};
pub use limits::Limits;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Parses one request body into its notifications.
pub fn parse(body: &[u8], limits: &Limits) -> Result<SendNotification, ParseError> {
    let body = body.strip_prefix(UTF8_BOM).unwrap_or(body);
    let text = std::str::from_utf8(body).map_err(|e| {
        ParseError::new(Reason::Encoding, "the body is not valid UTF-8").at(e.valid_up_to() as u64)
    })?;
    let mut cursor = Cursor::new(text, *limits);
    let root = match cursor.next()? {
        Token::Start(root) => root,
        _ => {
            return Err(ParseError::new(
                Reason::Empty,
                "the body holds no XML element",
            ));
        }
    };
    let request = envelope(&mut cursor, &root)?;
    cursor.finish()?;
    Ok(request)
}

fn error(cursor: &Cursor<'_>, reason: Reason, detail: impl Into<String>) -> ParseError {
    ParseError::new(reason, detail).at(cursor.offset())
}

fn unexpected(cursor: &Cursor<'_>, parent: &str) -> ParseError {
    error(
        cursor,
        Reason::UnexpectedElement,
        format!("an element not allowed inside {parent}"),
    )
}

fn duplicate(cursor: &Cursor<'_>, what: &str) -> ParseError {
    error(
        cursor,
        Reason::MissingElement,
        format!("{what} appears more than once"),
    )
}

fn envelope(cursor: &mut Cursor<'_>, root: &Element<'_>) -> Result<SendNotification, ParseError> {
    if root.local() != "Envelope" {
        return Err(error(
            cursor,
            Reason::WrongOperation,
            "the root element is not a SOAP Envelope",
        ));
    }
    let (soap, soap_ns) = match root.ns {
        Ns::Soap11 => (SoapVersion::V11, Ns::Soap11),
        Ns::Soap12 => (SoapVersion::V12, Ns::Soap12),
        _ => {
            return Err(error(
                cursor,
                Reason::Namespace,
                "Envelope is not in the SOAP 1.1 or SOAP 1.2 envelope namespace",
            ));
        }
    };
    let mut header_seen = false;
    let mut messages = None;
    while let Some(child) = cursor.child()? {
        if child.is(soap_ns, "Header") && !header_seen && messages.is_none() {
            header_seen = true;
            // Header blocks are informational (RequestServerVersion) or unknown: skipped.
            cursor.skip()?;
        } else if child.is(soap_ns, "Body") && messages.is_none() {
            messages = Some(body(cursor)?);
        } else if child.local() == "Header" || child.local() == "Body" {
            return Err(error(
                cursor,
                if child.ns == soap_ns {
                    Reason::UnexpectedElement
                } else {
                    Reason::Namespace
                },
                "Header and Body must appear once each, in the envelope's SOAP namespace",
            ));
        } else {
            return Err(unexpected(cursor, "Envelope"));
        }
    }
    let messages = messages
        .ok_or_else(|| error(cursor, Reason::MissingElement, "the envelope has no Body"))?;
    Ok(SendNotification { soap, messages })
}

fn body(cursor: &mut Cursor<'_>) -> Result<Vec<ResponseMessage>, ParseError> {
    let operation = cursor
        .child()?
        .ok_or_else(|| error(cursor, Reason::WrongOperation, "the SOAP Body is empty"))?;
    if operation.local() == "SendNotification" && operation.ns != Ns::Messages {
        return Err(error(
            cursor,
            Reason::Namespace,
            "SendNotification is not in the EWS messages namespace",
        ));
    }
    if !operation.is(Ns::Messages, "SendNotification") {
        return Err(error(
            cursor,
            Reason::WrongOperation,
            "the SOAP Body must hold {messages}SendNotification",
        ));
    }
    let messages = send_notification(cursor)?;
    if cursor.child()?.is_some() {
        return Err(error(
            cursor,
            Reason::UnexpectedElement,
            "the SOAP Body must hold exactly one element",
        ));
    }
    Ok(messages)
}

fn send_notification(cursor: &mut Cursor<'_>) -> Result<Vec<ResponseMessage>, ParseError> {
    let mut messages = None;
    while let Some(child) = cursor.child()? {
        if !child.is(Ns::Messages, "ResponseMessages") {
            return Err(namespaced(cursor, &child, "SendNotification"));
        }
        if messages.is_some() {
            return Err(duplicate(cursor, "ResponseMessages"));
        }
        messages = Some(response_messages(cursor)?);
    }
    messages.ok_or_else(|| {
        error(
            cursor,
            Reason::MissingElement,
            "SendNotification has no ResponseMessages",
        )
    })
}

/// An unexpected child: a namespace error when only its namespace is wrong.
fn namespaced(cursor: &Cursor<'_>, child: &Element<'_>, parent: &str) -> ParseError {
    if matches!(child.ns, Ns::Other) {
        error(
            cursor,
            Reason::Namespace,
            format!("a child of {parent} is not in an EWS namespace"),
        )
    } else {
        unexpected(cursor, parent)
    }
}

fn response_messages(cursor: &mut Cursor<'_>) -> Result<Vec<ResponseMessage>, ParseError> {
    let mut messages = Vec::new();
    while let Some(child) = cursor.child()? {
        if !child.is(Ns::Messages, "SendNotificationResponseMessage") {
            return Err(namespaced(cursor, &child, "ResponseMessages"));
        }
        if messages.len() == cursor.limits().max_messages {
            return Err(error(
                cursor,
                Reason::TooManyMessages,
                format!(
                    "more than {} response messages",
                    cursor.limits().max_messages
                ),
            ));
        }
        messages.push(response_message(cursor, &child)?);
    }
    if messages.is_empty() {
        return Err(error(
            cursor,
            Reason::MissingElement,
            "ResponseMessages holds no SendNotificationResponseMessage",
        ));
    }
    Ok(messages)
}

fn response_message(
    cursor: &mut Cursor<'_>,
    element: &Element<'_>,
) -> Result<ResponseMessage, ParseError> {
    let class = response_class(cursor, element)?;
    let max_text = cursor.limits().max_text;
    let mut message = ResponseMessage {
        class,
        response_code: None,
        error_subscription_id: None,
        notification: None,
    };
    let (mut text_seen, mut link_seen, mut xml_seen) = (false, false, false);
    while let Some(child) = cursor.child()? {
        if child.ns != Ns::Messages {
            return Err(namespaced(
                cursor,
                &child,
                "SendNotificationResponseMessage",
            ));
        }
        match child.local() {
            "MessageText" if !text_seen => {
                text_seen = true;
                cursor.text("MessageText", max_text)?;
            }
            "ResponseCode" if message.response_code.is_none() => {
                message.response_code = Some(response_code(cursor)?);
            }
            "DescriptiveLinkKey" if !link_seen => {
                link_seen = true;
                let raw = cursor.text("DescriptiveLinkKey", 64)?;
                values::int(&raw).ok_or_else(|| {
                    error(
                        cursor,
                        Reason::BadValue,
                        "DescriptiveLinkKey is not an xs:int",
                    )
                })?;
            }
            "MessageXml" if !xml_seen => {
                xml_seen = true;
                message.error_subscription_id = message_xml(cursor)?;
            }
            "Notification" if message.notification.is_none() => {
                message.notification = Some(notification(cursor)?);
            }
            "MessageText" | "ResponseCode" | "DescriptiveLinkKey" | "MessageXml"
            | "Notification" => {
                return Err(duplicate(cursor, child.local()));
            }
            _ => return Err(unexpected(cursor, "SendNotificationResponseMessage")),
        }
    }
    if class == ResponseClass::Success && message.notification.is_none() {
        return Err(error(
            cursor,
            Reason::MissingElement,
            "a Success message has no Notification",
        ));
    }
    Ok(message)
}

fn response_class(cursor: &Cursor<'_>, element: &Element<'_>) -> Result<ResponseClass, ParseError> {
    match element.attribute("ResponseClass")?.as_deref() {
        Some("Success") => Ok(ResponseClass::Success),
        Some("Warning") => Ok(ResponseClass::Warning),
        Some("Error") => Ok(ResponseClass::Error),
        Some(_) => Err(error(
            cursor,
            Reason::BadValue,
            "ResponseClass must be Success, Warning or Error",
        )),
        None => Err(error(
            cursor,
            Reason::MissingElement,
            "SendNotificationResponseMessage has no ResponseClass",
        )),
    }
}

/// `ResponseCode`: an enumeration value (`NoError`, `ErrorReadEventsFailed`, …), kept as text
/// so unknown codes pass as generic errors.
fn response_code(cursor: &mut Cursor<'_>) -> Result<String, ParseError> {
    let code = cursor.text("ResponseCode", 128)?;
    let code = code.trim();
    if code.is_empty() || !code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(error(
            cursor,
            Reason::BadValue,
            "ResponseCode is not a response code",
        ));
    }
    Ok(code.to_owned())
}

/// `MessageXml` holds any elements; the one that matters is
/// `<t:Value Name="SubscriptionId">…</t:Value>`.
fn message_xml(cursor: &mut Cursor<'_>) -> Result<Option<String>, ParseError> {
    let mut subscription_id = None;
    while let Some(child) = cursor.child()? {
        let names_subscription = child.is(Ns::Types, "Value")
            && child.attribute("Name")?.as_deref() == Some("SubscriptionId");
        if names_subscription && subscription_id.is_none() {
            subscription_id = Some(identifier(cursor, "the MessageXml SubscriptionId")?);
        } else {
            cursor.skip()?;
        }
    }
    Ok(subscription_id)
}

/// A non-empty opaque identifier held as text (surrounding whitespace removed).
fn identifier(cursor: &mut Cursor<'_>, what: &str) -> Result<String, ParseError> {
    let max_id = cursor.limits().max_id;
    let raw = cursor.text(what, max_id)?;
    let trimmed = raw.trim_matches([' ', '\t', '\r', '\n']);
    if trimmed.is_empty() {
        return Err(error(cursor, Reason::BadValue, format!("{what} is empty")));
    }
    Ok(if trimmed.len() == raw.len() {
        raw
    } else {
        trimmed.to_owned()
    })
}

fn notification(cursor: &mut Cursor<'_>) -> Result<Notification, ParseError> {
    let mut subscription_id = None;
    let mut previous_watermark = None;
    let mut more_events = None;
    let mut events = Vec::new();
    let mut seen_events = 0usize;
    while let Some(child) = cursor.child()? {
        if child.ns != Ns::Types {
            return Err(namespaced(cursor, &child, "Notification"));
        }
        match child.local() {
            "SubscriptionId" if subscription_id.is_none() => {
                subscription_id = Some(identifier(cursor, "SubscriptionId")?);
            }
            "PreviousWatermark" if previous_watermark.is_none() => {
                previous_watermark = Some(identifier(cursor, "PreviousWatermark")?);
            }
            "MoreEvents" if more_events.is_none() => {
                let raw = cursor.text("MoreEvents", 64)?;
                more_events = Some(values::boolean(&raw).ok_or_else(|| {
                    error(cursor, Reason::BadValue, "MoreEvents is not an xs:boolean")
                })?);
            }
            "SubscriptionId" | "PreviousWatermark" | "MoreEvents" => {
                return Err(duplicate(cursor, child.local()));
            }
            name => {
                seen_events += 1;
                if seen_events > cursor.limits().max_events {
                    return Err(error(
                        cursor,
                        Reason::TooManyEvents,
                        format!(
                            "more than {} events in one notification",
                            cursor.limits().max_events
                        ),
                    ));
                }
                match EventKind::from_element(name) {
                    Some(kind) => events.push(event(cursor, kind)?),
                    // A kind this version does not know: skipped, as the Managed API does.
                    None => cursor.skip()?,
                }
            }
        }
    }
    let subscription_id = subscription_id.ok_or_else(|| {
        error(
            cursor,
            Reason::MissingElement,
            "Notification has no SubscriptionId",
        )
    })?;
    if seen_events == 0 {
        return Err(error(
            cursor,
            Reason::MissingElement,
            "Notification holds no event",
        ));
    }
    Ok(Notification {
        subscription_id,
        previous_watermark,
        more_events: more_events.unwrap_or(false),
        events,
    })
}

/// Sets `slot` once; a second occurrence is an error.
fn once<T>(
    cursor: &Cursor<'_>,
    slot: &mut Option<T>,
    value: T,
    what: &str,
) -> Result<(), ParseError> {
    if slot.is_some() {
        return Err(duplicate(cursor, what));
    }
    *slot = Some(value);
    Ok(())
}

fn event(cursor: &mut Cursor<'_>, kind: EventKind) -> Result<Event, ParseError> {
    let what = kind.element();
    let mut event = Event {
        kind,
        ..Event::default()
    };
    while let Some(child) = cursor.child()? {
        if child.ns != Ns::Types {
            return Err(namespaced(cursor, &child, what));
        }
        let name = child.local();
        match name {
            "Watermark" => {
                let value = identifier(cursor, "Watermark")?;
                once(cursor, &mut event.watermark, value, "Watermark")?;
            }
            "TimeStamp" if kind != EventKind::Status => {
                let raw = cursor.text("TimeStamp", 64)?;
                let value = values::date_time(&raw).ok_or_else(|| {
                    error(cursor, Reason::BadValue, "TimeStamp is not an xs:dateTime")
                })?;
                once(cursor, &mut event.timestamp, value, "TimeStamp")?;
            }
            "ItemId" | "FolderId" | "ParentFolderId" if kind != EventKind::Status => {
                let value = object_id(cursor, &child)?;
                let slot = match name {
                    "ItemId" => &mut event.item_id,
                    "FolderId" => &mut event.folder_id,
                    _ => &mut event.parent_folder_id,
                };
                once(cursor, slot, value, name)?;
            }
            "OldItemId" | "OldFolderId" | "OldParentFolderId" if kind.is_move_or_copy() => {
                let value = object_id(cursor, &child)?;
                let slot = match name {
                    "OldItemId" => &mut event.old_item_id,
                    "OldFolderId" => &mut event.old_folder_id,
                    _ => &mut event.old_parent_folder_id,
                };
                once(cursor, slot, value, name)?;
            }
            "UnreadCount" if kind == EventKind::Modified => {
                let raw = cursor.text("UnreadCount", 64)?;
                let count = values::int(&raw).ok_or_else(|| {
                    error(cursor, Reason::BadValue, "UnreadCount is not an xs:int")
                })?;
                let count = u32::try_from(count)
                    .map_err(|_| error(cursor, Reason::BadValue, "UnreadCount is negative"))?;
                once(cursor, &mut event.unread_count, count, "UnreadCount")?;
            }
            // Elements a later schema may add: skipped.
            _ => cursor.skip()?,
        }
    }
    check_event_shape(cursor, &event)?;
    Ok(event)
}

fn check_event_shape(cursor: &Cursor<'_>, event: &Event) -> Result<(), ParseError> {
    if event.kind == EventKind::Status {
        return Ok(());
    }
    let what = event.kind.element();
    let missing = |part: &str| {
        error(
            cursor,
            Reason::MissingElement,
            format!("{what} has no {part}"),
        )
    };
    if event.timestamp.is_none() {
        return Err(missing("TimeStamp"));
    }
    if event.item_id.is_some() == event.folder_id.is_some() {
        return Err(error(
            cursor,
            Reason::MissingElement,
            format!("{what} needs exactly one of ItemId and FolderId"),
        ));
    }
    if event.parent_folder_id.is_none() {
        return Err(missing("ParentFolderId"));
    }
    if event.kind.is_move_or_copy() {
        if event.old_item_id.is_some() == event.old_folder_id.is_some() {
            return Err(error(
                cursor,
                Reason::MissingElement,
                format!("{what} needs exactly one of OldItemId and OldFolderId"),
            ));
        }
        if event.old_parent_folder_id.is_none() {
            return Err(missing("OldParentFolderId"));
        }
    }
    Ok(())
}

/// An id element (`ItemId`, `FolderId`, …): attribute `Id` required and non-empty,
/// `ChangeKey` optional and ignored; no content.
fn object_id(cursor: &mut Cursor<'_>, element: &Element<'_>) -> Result<String, ParseError> {
    let id = element.attribute("Id")?;
    cursor.skip()?;
    let id = id.ok_or_else(|| {
        error(
            cursor,
            Reason::MissingElement,
            format!("{} has no Id attribute", element.local()),
        )
    })?;
    if id.trim().is_empty() {
        return Err(error(
            cursor,
            Reason::BadValue,
            format!("the Id of {} is empty", element.local()),
        ));
    }
    if id.len() > cursor.limits().max_id {
        return Err(error(
            cursor,
            Reason::TooLong,
            format!("the Id of {} is too long", element.local()),
        ));
    }
    Ok(id)
}
