//! A hardened pull cursor over quick-xml's `NsReader`: it adds what quick-xml leaves to the
//! caller (protocol note §11) — no DOCTYPE or processing instructions, only the five
//! predefined entities and character references, caps on depth, attributes, namespace
//! bindings and text, exactly one root with nothing but comments after it — and resolves
//! every element's namespace URI into [`Ns`].

use std::borrow::Cow;

use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::{NsReader, XmlVersion};

use super::error::{ParseError, Reason};
use super::limits::Limits;

pub(crate) const SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub(crate) const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
pub(crate) const MESSAGES: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";
pub(crate) const TYPES: &str = "http://schemas.microsoft.com/exchange/services/2006/types";

/// The namespaces the protocol uses; everything else is `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ns {
    Soap11,
    Soap12,
    Messages,
    Types,
    /// No namespace, or one the protocol does not use.
    Other,
}

impl Ns {
    fn classify(resolved: &ResolveResult<'_>) -> Result<Self, ParseError> {
        Ok(match resolved {
            ResolveResult::Bound(Namespace(uri)) => match *uri {
                SOAP11 => Self::Soap11,
                SOAP12 => Self::Soap12,
                MESSAGES => Self::Messages,
                TYPES => Self::Types,
                _ => Self::Other,
            },
            ResolveResult::Unbound => Self::Other,
            ResolveResult::Unknown(_) => {
                return Err(ParseError::new(
                    Reason::Namespace,
                    "an element uses an undeclared namespace prefix",
                ));
            }
        })
    }
}

/// A start tag with its resolved namespace.
#[derive(Debug)]
pub(crate) struct Element<'i> {
    pub(crate) ns: Ns,
    pub(crate) start: BytesStart<'i>,
}

impl Element<'_> {
    /// Whether this is `{ns}local`.
    pub(crate) fn is(&self, ns: Ns, local: &str) -> bool {
        self.ns == ns && self.start.local_name().as_ref() == local
    }

    pub(crate) fn local(&self) -> &str {
        self.start.local_name().into_inner()
    }

    /// The value of the unprefixed attribute `name` (entities resolved).
    pub(crate) fn attribute(&self, name: &str) -> Result<Option<String>, ParseError> {
        for attr in self.start.attributes() {
            let attr = attr.map_err(|_| malformed("an attribute is malformed"))?;
            if attr.key.as_ref() == name {
                let value = attr
                    .normalized_value(XmlVersion::Implicit1_0)
                    .map_err(|_| {
                        ParseError::new(
                            Reason::Entity,
                            "an attribute value uses an undefined entity",
                        )
                    })?;
                return Ok(Some(value.into_owned()));
            }
        }
        Ok(None)
    }
}

/// What the cursor yields inside the root.
#[derive(Debug)]
pub(crate) enum Token<'i> {
    Start(Element<'i>),
    End,
    Text(Cow<'i, str>),
    Eof,
}

pub(crate) struct Cursor<'i> {
    reader: NsReader<&'i [u8]>,
    limits: Limits,
    depth: usize,
    root_seen: bool,
    root_closed: bool,
    at_start: bool,
}

impl std::fmt::Debug for Cursor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor")
            .field("depth", &self.depth)
            .finish_non_exhaustive()
    }
}

fn malformed(detail: &str) -> ParseError {
    ParseError::new(Reason::Malformed, detail)
}

fn is_xml_whitespace(text: &str) -> bool {
    text.bytes()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

fn predefined_entity(name: &str) -> Option<&'static str> {
    Some(match name {
        "lt" => "<",
        "gt" => ">",
        "amp" => "&",
        "apos" => "'",
        "quot" => "\"",
        _ => return None,
    })
}

fn map_xml_error(error: quick_xml::Error) -> ParseError {
    use quick_xml::Error as E;
    use quick_xml::name::NamespaceError as N;
    match error {
        E::Syntax(_) => malformed("XML syntax error (truncated or unclosed markup)"),
        E::IllFormed(_) => malformed("ill-formed XML (mismatched or missing end tag)"),
        E::InvalidAttr(_) => malformed("an attribute is malformed or repeated"),
        E::Encoding(_) | E::Io(_) => ParseError::new(Reason::Encoding, "the body is not UTF-8"),
        E::Escape(_) => ParseError::new(
            Reason::Entity,
            "an undefined entity or bad character reference",
        ),
        E::Namespace(N::TooManyBindings(limit)) => ParseError::new(
            Reason::TooManyNamespaces,
            format!("more than {limit} namespace bindings in scope"),
        ),
        E::Namespace(_) => ParseError::new(Reason::Namespace, "an invalid namespace declaration"),
    }
}

impl<'i> Cursor<'i> {
    /// A cursor over `text`, which must be the whole body, already known to be UTF-8.
    pub(crate) fn new(text: &'i str, limits: Limits) -> Self {
        let mut reader = NsReader::from_str(text);
        let config = reader.config_mut();
        config.expand_empty_elements = true;
        config.check_end_names = true;
        config.check_comments = true;
        config.trim_text(false);
        reader
            .resolver_mut()
            .set_max_namespace_bindings(limits.max_namespace_bindings);
        Self {
            reader,
            limits,
            depth: 0,
            root_seen: false,
            root_closed: false,
            at_start: true,
        }
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The byte offset the reader has reached.
    pub(crate) fn offset(&self) -> u64 {
        self.reader.buffer_position()
    }

    /// The next token, after every document-level check.
    pub(crate) fn next(&mut self) -> Result<Token<'i>, ParseError> {
        let offset = self.offset();
        self.next_inner().map_err(|e| e.at(offset))
    }

    fn next_inner(&mut self) -> Result<Token<'i>, ParseError> {
        loop {
            let (resolved, event) = self.reader.read_resolved_event().map_err(map_xml_error)?;
            let ns = match &event {
                Event::Start(_) => Ns::classify(&resolved)?,
                _ => Ns::Other,
            };
            let at_start = std::mem::replace(&mut self.at_start, false);
            let token = match event {
                Event::Decl(decl) if at_start => {
                    check_encoding(decl.encoding())?;
                    None
                }
                Event::Decl(_) => {
                    return Err(malformed("an XML declaration is only allowed at the start"));
                }
                Event::DocType(_) => {
                    return Err(ParseError::new(
                        Reason::Doctype,
                        "a DOCTYPE is not allowed in a SOAP message",
                    ));
                }
                Event::PI(_) => {
                    return Err(ParseError::new(
                        Reason::ProcessingInstruction,
                        "processing instructions are not allowed in a SOAP message",
                    ));
                }
                Event::Comment(_) => None,
                Event::Start(start) => Some(self.start(ns, start)?),
                // `expand_empty_elements` turns `<x/>` into Start + End.
                Event::Empty(_) => return Err(malformed("an empty-element tag was not expanded")),
                Event::End(_) => Some(self.end()),
                Event::Text(text) => self.character_data(text.xml10_content(), true)?,
                Event::CData(data) => self.character_data(data.xml10_content(), false)?,
                Event::GeneralRef(reference) => Some(self.reference(&reference)?),
                Event::Eof => Some(self.eof()?),
            };
            if let Some(token) = token {
                return Ok(token);
            }
        }
    }

    #[inline]
    fn start(&mut self, ns: Ns, start: BytesStart<'i>) -> Result<Token<'i>, ParseError> {
        if self.root_closed {
            return Err(ParseError::new(
                Reason::TrailingContent,
                "an element follows the root element",
            ));
        }
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err(ParseError::new(
                Reason::TooDeep,
                format!("elements nest deeper than {}", self.limits.max_depth),
            ));
        }
        self.check_attributes(&start)?;
        self.root_seen = true;
        Ok(Token::Start(Element { ns, start }))
    }

    #[inline]
    fn end(&mut self) -> Token<'i> {
        self.depth = self.depth.saturating_sub(1);
        if self.depth == 0 {
            self.root_closed = true;
        }
        Token::End
    }

    /// Text inside the root; outside it only whitespace (not CDATA) is allowed, and skipped.
    #[inline]
    fn character_data(
        &self,
        text: Cow<'i, str>,
        may_be_blank: bool,
    ) -> Result<Option<Token<'i>>, ParseError> {
        if self.depth == 0 {
            return if may_be_blank && is_xml_whitespace(&text) {
                Ok(None)
            } else {
                Err(self.outside_root())
            };
        }
        Ok(Some(Token::Text(self.capped(text)?)))
    }

    /// A character reference or one of the five predefined entities; nothing else.
    #[inline]
    fn reference(&self, reference: &BytesRef<'i>) -> Result<Token<'i>, ParseError> {
        if self.depth == 0 {
            return Err(self.outside_root());
        }
        if reference.is_char_ref() {
            let ch = reference
                .resolve_char_ref()
                .ok()
                .flatten()
                .ok_or_else(|| ParseError::new(Reason::Entity, "a bad character reference"))?;
            return Ok(Token::Text(Cow::Owned(ch.to_string())));
        }
        let text = predefined_entity(&reference.clone().into_inner()).ok_or_else(|| {
            ParseError::new(
                Reason::Entity,
                "an undefined entity (only lt, gt, amp, apos, quot)",
            )
        })?;
        Ok(Token::Text(Cow::Borrowed(text)))
    }

    fn eof(&self) -> Result<Token<'i>, ParseError> {
        if !self.root_seen {
            return Err(ParseError::new(
                Reason::Empty,
                "the body holds no XML element",
            ));
        }
        if self.depth != 0 {
            return Err(malformed("the body ends before the root element is closed"));
        }
        Ok(Token::Eof)
    }

    fn outside_root(&self) -> ParseError {
        if self.root_closed {
            ParseError::new(Reason::TrailingContent, "content follows the root element")
        } else {
            malformed("text before the root element")
        }
    }

    fn capped(&self, text: Cow<'i, str>) -> Result<Cow<'i, str>, ParseError> {
        if text.len() > self.limits.max_text {
            return Err(ParseError::new(
                Reason::TooLong,
                format!("a text node is longer than {} bytes", self.limits.max_text),
            ));
        }
        Ok(text)
    }

    fn check_attributes(&self, start: &BytesStart<'_>) -> Result<(), ParseError> {
        for (n, attr) in start.attributes().enumerate() {
            if n >= self.limits.max_attributes {
                return Err(ParseError::new(
                    Reason::TooManyAttributes,
                    format!(
                        "an element has more than {} attributes",
                        self.limits.max_attributes
                    ),
                ));
            }
            let attr = attr.map_err(|_| malformed("an attribute is malformed or repeated"))?;
            if attr.value.len() > self.limits.max_text {
                return Err(ParseError::new(
                    Reason::TooLong,
                    format!(
                        "an attribute value is longer than {} bytes",
                        self.limits.max_text
                    ),
                ));
            }
            if attr.value.contains('&') {
                attr.normalized_value(XmlVersion::Implicit1_0)
                    .map_err(|_| {
                        ParseError::new(
                            Reason::Entity,
                            "an attribute value uses an undefined entity",
                        )
                    })?;
            }
        }
        Ok(())
    }

    /// The next child element of the current element, or `None` at its end tag. Text
    /// between children must be whitespace.
    pub(crate) fn child(&mut self) -> Result<Option<Element<'i>>, ParseError> {
        loop {
            match self.next()? {
                Token::Start(element) => return Ok(Some(element)),
                Token::End => return Ok(None),
                Token::Text(text) if is_xml_whitespace(&text) => {}
                Token::Text(_) => {
                    return Err(ParseError::new(
                        Reason::UnexpectedElement,
                        "text where elements are expected",
                    )
                    .at(self.offset()));
                }
                Token::Eof => return Err(malformed("unexpected end of the body").at(self.offset())),
            }
        }
    }

    /// The text content of the current element up to its end tag, at most `max` bytes.
    pub(crate) fn text(&mut self, what: &str, max: usize) -> Result<String, ParseError> {
        let mut out = String::new();
        loop {
            match self.next()? {
                Token::Text(text) => {
                    if out.len() + text.len() > max {
                        return Err(ParseError::new(
                            Reason::TooLong,
                            format!("{what} is longer than {max} bytes"),
                        )
                        .at(self.offset()));
                    }
                    out.push_str(&text);
                }
                Token::End => return Ok(out),
                Token::Start(_) => {
                    return Err(ParseError::new(
                        Reason::UnexpectedElement,
                        format!("{what} must hold text only"),
                    )
                    .at(self.offset()));
                }
                Token::Eof => return Err(malformed("unexpected end of the body").at(self.offset())),
            }
        }
    }

    /// Consumes the current element's content up to its end tag, checking everything.
    pub(crate) fn skip(&mut self) -> Result<(), ParseError> {
        let mut open = 1usize;
        while open > 0 {
            match self.next()? {
                Token::Start(_) => open += 1,
                Token::End => open -= 1,
                Token::Text(_) => {}
                Token::Eof => return Err(malformed("unexpected end of the body").at(self.offset())),
            }
        }
        Ok(())
    }

    /// After the root closed: only comments and whitespace may follow.
    pub(crate) fn finish(&mut self) -> Result<(), ParseError> {
        match self.next()? {
            Token::Eof => Ok(()),
            _ => Err(
                ParseError::new(Reason::TrailingContent, "content follows the root element")
                    .at(self.offset()),
            ),
        }
    }
}

fn check_encoding(
    declared: Option<Result<Cow<'_, str>, quick_xml::events::attributes::AttrError>>,
) -> Result<(), ParseError> {
    match declared {
        None => Ok(()),
        Some(Ok(name))
            if ["utf-8", "utf8", "us-ascii"]
                .iter()
                .any(|e| name.eq_ignore_ascii_case(e)) =>
        {
            Ok(())
        }
        Some(_) => Err(ParseError::new(
            Reason::Encoding,
            "only UTF-8 bodies are accepted",
        )),
    }
}
