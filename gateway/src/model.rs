//! What a parsed `SendNotification` request holds. Identifiers and watermarks are opaque
//! strings: only equality means anything (protocol note §3.4).

/// The SOAP version of a request; the answer is written in the same one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SoapVersion {
    /// `http://schemas.xmlsoap.org/soap/envelope/`, what Exchange sends.
    V11,
    /// `http://www.w3.org/2003/05/soap-envelope`, declared by Exchange's WSDL.
    V12,
}

/// One POST: every `SendNotificationResponseMessage` in document order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendNotification {
    pub soap: SoapVersion,
    pub messages: Vec<ResponseMessage>,
}

/// `ResponseClass` of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResponseClass {
    Success,
    Warning,
    Error,
}

/// One `SendNotificationResponseMessage`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseMessage {
    pub class: ResponseClass,
    /// `ResponseCode` (`NoError`, `ErrorReadEventsFailed`, …), when present.
    pub response_code: Option<String>,
    /// The subscription id an error message names in `MessageXml`
    /// (`<t:Value Name="SubscriptionId">`), when present.
    pub error_subscription_id: Option<String>,
    /// Always present for `Success`; real error messages carry none.
    pub notification: Option<Notification>,
}

impl ResponseMessage {
    /// The subscription this message is about: the notification's, else the one named in
    /// `MessageXml`.
    pub fn subscription_id(&self) -> Option<&str> {
        self.notification
            .as_ref()
            .map(|n| n.subscription_id.as_str())
            .or(self.error_subscription_id.as_deref())
    }
}

/// `m:Notification`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub subscription_id: String,
    pub previous_watermark: Option<String>,
    /// `MoreEvents`; absent means false.
    pub more_events: bool,
    /// The known events in document order (unknown event kinds are skipped).
    pub events: Vec<Event>,
}

impl Notification {
    /// The watermark of the last event that carries one.
    pub fn last_watermark(&self) -> Option<&str> {
        self.events
            .iter()
            .rev()
            .find_map(|e| e.watermark.as_deref())
    }

    /// The `UnreadCount` of the last `ModifiedEvent` on `folder_id`.
    pub fn last_unread_count(&self, folder_id: &str) -> Option<u32> {
        self.events.iter().rev().find_map(|e| {
            (e.kind == EventKind::Modified && e.folder_id.as_deref() == Some(folder_id))
                .then_some(e.unread_count)
                .flatten()
        })
    }
}

/// The event kinds of EWS push notifications.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum EventKind {
    #[default]
    Status,
    NewMail,
    Created,
    Deleted,
    Modified,
    Moved,
    Copied,
    FreeBusyChanged,
}

impl EventKind {
    /// The element name (in the types namespace).
    pub fn element(self) -> &'static str {
        match self {
            Self::Status => "StatusEvent",
            Self::NewMail => "NewMailEvent",
            Self::Created => "CreatedEvent",
            Self::Deleted => "DeletedEvent",
            Self::Modified => "ModifiedEvent",
            Self::Moved => "MovedEvent",
            Self::Copied => "CopiedEvent",
            Self::FreeBusyChanged => "FreeBusyChangedEvent",
        }
    }

    pub(crate) fn from_element(local: &str) -> Option<Self> {
        Some(match local {
            "StatusEvent" => Self::Status,
            "NewMailEvent" => Self::NewMail,
            "CreatedEvent" => Self::Created,
            "DeletedEvent" => Self::Deleted,
            "ModifiedEvent" => Self::Modified,
            "MovedEvent" => Self::Moved,
            "CopiedEvent" => Self::Copied,
            "FreeBusyChangedEvent" => Self::FreeBusyChanged,
            _ => return None,
        })
    }

    /// Whether the event carries an old id and old parent (`MovedCopiedEventType`).
    pub fn is_move_or_copy(self) -> bool {
        matches!(self, Self::Moved | Self::Copied)
    }
}

/// An `xs:dateTime`, in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    pub unix_seconds: i64,
    pub nanos: u32,
}

/// One event. A `StatusEvent` has only a watermark; every other kind has a timestamp, exactly
/// one of `item_id` / `folder_id`, and a parent; moves and copies also an old id and old
/// parent; only `ModifiedEvent` may carry `unread_count`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub watermark: Option<String>,
    pub timestamp: Option<Timestamp>,
    pub item_id: Option<String>,
    pub folder_id: Option<String>,
    pub parent_folder_id: Option<String>,
    pub old_item_id: Option<String>,
    pub old_folder_id: Option<String>,
    pub old_parent_folder_id: Option<String>,
    pub unread_count: Option<u32>,
}
