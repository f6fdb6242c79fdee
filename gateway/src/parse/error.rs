//! Why a request body was refused. Every reason is a 400 with a short text; the reason's
//! label feeds the `herald_gateway_rejections_total` metric.

use std::fmt;

/// The class of a rejection: a small closed set, used as a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The body is not valid UTF-8 (or declares another encoding).
    Encoding,
    /// Zero bytes, or nothing but whitespace and comments.
    Empty,
    /// Not well-formed XML: syntax errors, mismatched or missing end tags, bad attributes.
    Malformed,
    /// A `<!DOCTYPE …>`: SOAP forbids it, and it is how entity attacks start.
    Doctype,
    /// A processing instruction other than the XML declaration.
    ProcessingInstruction,
    /// An entity other than the five predefined ones, or a bad character reference.
    Entity,
    /// Elements or text after the root element closed.
    TrailingContent,
    /// Nesting deeper than the cap.
    TooDeep,
    /// More attributes on one element than the cap.
    TooManyAttributes,
    /// More namespace bindings in scope than the cap.
    TooManyNamespaces,
    /// A text node or attribute value longer than the cap.
    TooLong,
    /// More events in one notification than the cap.
    TooManyEvents,
    /// More response messages in one request than the cap.
    TooManyMessages,
    /// An element in an unexpected namespace (namespace URIs are checked, not prefixes).
    Namespace,
    /// The root is not a SOAP envelope, or the body is not `SendNotification`.
    WrongOperation,
    /// An element the protocol does not allow where it appears.
    UnexpectedElement,
    /// A required element or attribute is missing, or appears twice.
    MissingElement,
    /// A value outside its schema type (`xs:boolean`, `xs:dateTime`, `xs:int`, enums, ids).
    BadValue,
}

impl Reason {
    pub const ALL: [Reason; 18] = [
        Self::Encoding,
        Self::Empty,
        Self::Malformed,
        Self::Doctype,
        Self::ProcessingInstruction,
        Self::Entity,
        Self::TrailingContent,
        Self::TooDeep,
        Self::TooManyAttributes,
        Self::TooManyNamespaces,
        Self::TooLong,
        Self::TooManyEvents,
        Self::TooManyMessages,
        Self::Namespace,
        Self::WrongOperation,
        Self::UnexpectedElement,
        Self::MissingElement,
        Self::BadValue,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Encoding => "encoding",
            Self::Empty => "empty",
            Self::Malformed => "malformed",
            Self::Doctype => "doctype",
            Self::ProcessingInstruction => "processing_instruction",
            Self::Entity => "entity",
            Self::TrailingContent => "trailing_content",
            Self::TooDeep => "too_deep",
            Self::TooManyAttributes => "too_many_attributes",
            Self::TooManyNamespaces => "too_many_namespaces",
            Self::TooLong => "too_long",
            Self::TooManyEvents => "too_many_events",
            Self::TooManyMessages => "too_many_messages",
            Self::Namespace => "namespace",
            Self::WrongOperation => "wrong_operation",
            Self::UnexpectedElement => "unexpected_element",
            Self::MissingElement => "missing_element",
            Self::BadValue => "bad_value",
        }
    }
}

/// A refused body: the reason, a short explanation that never echoes request content, and
/// the byte offset where the parser stopped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    pub reason: Reason,
    pub detail: String,
    pub offset: u64,
}

impl ParseError {
    pub(crate) fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
            offset: 0,
        }
    }

    pub(crate) fn at(mut self, offset: u64) -> Self {
        self.offset = offset;
        self
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.detail, self.offset)
    }
}
