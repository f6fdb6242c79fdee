//! The parser against every shared fixture and against the protocol note's other cases.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::*;
use crate::model::Timestamp;

fn testdata(dir: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata")
        .join(dir)
}

fn read(dir: &str, name: &str) -> Vec<u8> {
    std::fs::read(testdata(dir).join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn expected(dir: &str) -> Value {
    serde_json::from_slice(&read(dir, "expected.json")).expect("expected.json")
}

fn parse_default(body: &[u8]) -> Result<SendNotification, ParseError> {
    parse(body, &Limits::default())
}

fn reason_of(body: &[u8]) -> Reason {
    match parse_default(body) {
        Ok(parsed) => panic!("accepted: {parsed:?}"),
        Err(e) => e.reason,
    }
}

/// Timestamps compare as Unix time: `expected.json` holds them as xs:dateTime text.
fn timestamp_text(t: Timestamp) -> String {
    format!("{}.{:09}", t.unix_seconds, t.nanos)
}

/// The parse result in the shape of `expected.json`'s `parsed` section.
fn as_json(parsed: &SendNotification, registry: &Value) -> Value {
    let inbox_of = |sub: &str| -> Option<(String, String)> {
        registry.as_object()?.iter().find_map(|(alias, entry)| {
            (entry["subscription_id"] == sub).then(|| {
                (
                    alias.clone(),
                    entry["inbox_folder_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
        })
    };
    let messages: Vec<Value> = parsed
        .messages
        .iter()
        .map(|m| {
            let n = m.notification.as_ref().expect("a notification");
            let (alias, inbox) = inbox_of(&n.subscription_id).expect("a registered subscription");
            let events: Vec<Value> = n
                .events
                .iter()
                .map(|e| {
                    let mut out = json!({ "type": e.kind.element() });
                    let fields = [
                        ("watermark", &e.watermark),
                        ("ItemId", &e.item_id),
                        ("FolderId", &e.folder_id),
                        ("ParentFolderId", &e.parent_folder_id),
                        ("OldItemId", &e.old_item_id),
                        ("OldFolderId", &e.old_folder_id),
                        ("OldParentFolderId", &e.old_parent_folder_id),
                    ];
                    for (key, value) in fields {
                        if let Some(v) = value {
                            out[key] = json!(v);
                        }
                    }
                    if let Some(t) = e.timestamp {
                        out["timestamp"] = json!(timestamp_text(t));
                    }
                    if let Some(c) = e.unread_count {
                        out["unread_count"] = json!(c);
                    }
                    out
                })
                .collect();
            json!({
                "response_class": format!("{:?}", m.class),
                "response_code": m.response_code,
                "notification": {
                    "subscription": alias,
                    "subscription_id": n.subscription_id,
                    "previous_watermark": n.previous_watermark,
                    "more_events": n.more_events,
                    "events": events,
                    "inbox_unread_count_last": n.last_unread_count(&inbox),
                }
            })
        })
        .collect();
    let soap = match parsed.soap {
        SoapVersion::V11 => "1.1",
        SoapVersion::V12 => "1.2",
    };
    json!({ "soap": soap, "messages": messages })
}

/// `expected.json` with its timestamps in the test's comparable form.
fn normalise_expected(mut parsed: Value) -> Value {
    if let Some(messages) = parsed["messages"].as_array_mut() {
        for m in messages {
            if let Some(events) = m["notification"]["events"].as_array_mut() {
                for e in events {
                    if let Some(t) = e["timestamp"].as_str() {
                        let t = values::date_time(t).expect("fixture timestamp");
                        e["timestamp"] = json!(timestamp_text(t));
                    }
                }
            }
        }
    }
    parsed
}

#[test]
fn every_numbered_fixture_parses_to_its_expected_content() {
    let expected = expected("ews");
    let registry = &expected["registry"];
    let mut checked = 0;
    for (name, entry) in expected["files"].as_object().expect("files") {
        let Some(parsed) = entry.get("parsed") else {
            continue;
        };
        let result = parse_default(&read("ews", name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            as_json(&result, registry),
            normalise_expected(parsed.clone()),
            "{name}"
        );
        checked += 1;
    }
    assert!(
        checked >= 12,
        "only {checked} fixtures carry parsed content"
    );
}

#[test]
fn every_fixture_answered_400_is_refused_and_every_200_accepted() {
    for dir in ["ews", "ews-extra"] {
        let expected = expected(dir);
        for (name, entry) in expected["files"].as_object().expect("files") {
            let result = parse_default(&read(dir, name));
            match entry["http_status"].as_u64() {
                Some(200) => assert!(result.is_ok(), "{dir}/{name}: {result:?}"),
                Some(400 | 415) => assert!(result.is_err(), "{dir}/{name} was accepted"),
                _ => {}
            }
        }
    }
}

#[test]
fn default_namespaces_and_other_prefixes_parse_like_the_prefixed_form() {
    let prefixed = parse_default(&read("ews", "02-newmail-single.xml")).expect("02");
    let defaulted =
        parse_default(&read("ews", "12-default-namespaces-same-as-02.xml")).expect("12");
    assert_eq!(prefixed, defaulted);
}

#[test]
fn hostile_fixtures_are_refused_for_the_right_reason() {
    let cases = [
        ("ews", "m01-truncated.xml", Reason::Malformed),
        ("ews", "m02-wrong-root-html.xml", Reason::Doctype),
        (
            "ews",
            "m03-wrong-operation-getevents.xml",
            Reason::WrongOperation,
        ),
        (
            "ews",
            "m04-missing-subscriptionid.xml",
            Reason::MissingElement,
        ),
        ("ews", "m05-billion-laughs.xml", Reason::Doctype),
        ("ews", "m06-xxe-external-entity.xml", Reason::Doctype),
        ("ews", "m07-wrong-namespace-https.xml", Reason::Namespace),
        ("ews", "m08-bad-values.xml", Reason::BadValue),
        ("ews", "m10-empty-body.xml", Reason::Empty),
        ("ews", "m11-json-body.json", Reason::Malformed),
        (
            "ews-extra",
            "m09-processing-instruction.xml",
            Reason::ProcessingInstruction,
        ),
        ("ews-extra", "m12-mismatched-end-tag.xml", Reason::Malformed),
        ("ews-extra", "m13-invalid-utf8.xml", Reason::Encoding),
        ("ews-extra", "m15-second-root.xml", Reason::TrailingContent),
        ("ews-extra", "m16-unclosed-root.xml", Reason::Malformed),
        ("ews-extra", "m17-undefined-entity.xml", Reason::Entity),
        ("ews-extra", "m18-soap-fault.xml", Reason::WrongOperation),
        (
            "ews-extra",
            "m19-success-without-notification.xml",
            Reason::MissingElement,
        ),
        (
            "ews-extra",
            "m20-subscriptionid-in-messages-ns.xml",
            Reason::UnexpectedElement,
        ),
    ];
    for (dir, name, reason) in cases {
        assert_eq!(reason_of(&read(dir, name)), reason, "{dir}/{name}");
    }
}

#[test]
fn an_error_message_names_its_subscription_in_message_xml() {
    let parsed = parse_default(&read("ews-extra", "11-error-readeventsfailed.xml")).expect("11");
    let message = &parsed.messages[0];
    assert_eq!(message.class, ResponseClass::Error);
    assert_eq!(
        message.response_code.as_deref(),
        Some("ErrorReadEventsFailed")
    );
    assert!(message.notification.is_none());
    let alice = &expected("ews")["registry"]["alice"]["subscription_id"];
    assert_eq!(message.subscription_id(), alice.as_str());
}

#[test]
fn soap12_bom_and_unknown_elements_are_accepted() {
    let soap12 = parse_default(&read("ews-extra", "15-soap12.xml")).expect("15");
    assert_eq!(soap12.soap, SoapVersion::V12);
    let bom = parse_default(&read("ews-extra", "14-utf8-bom.xml")).expect("14");
    assert_eq!(bom.soap, SoapVersion::V11);
    let future = parse_default(&read("ews-extra", "16-unknown-event-new-version.xml")).expect("16");
    let events = &future.messages[0]
        .notification
        .as_ref()
        .expect("notification")
        .events;
    assert_eq!(events.len(), 1, "the unknown event kind is skipped");
    assert_eq!(events[0].kind, EventKind::NewMail);
    assert!(events[0].item_id.is_some());
}

#[test]
fn a_minimal_notification_defaults_more_events_to_false() {
    let parsed = parse_default(&read("ews", "13-minimal-optional-omitted.xml")).expect("13");
    let n = parsed.messages[0]
        .notification
        .as_ref()
        .expect("notification");
    assert!(!n.more_events);
    assert_eq!(n.previous_watermark, None);
    assert_eq!(n.last_watermark(), None);
    assert_eq!(n.events[0].unread_count, None);
}

// ---- inline inputs for the caps and the remaining rules ------------------------------------

const S11: &str = "http://schemas.xmlsoap.org/soap/envelope/";

fn envelope(notification_children: &str) -> String {
    format!(
        r#"<s:Envelope xmlns:s="{S11}"><s:Body><m:SendNotification xmlns:m="{MESSAGES}" xmlns:t="{TYPES}"><m:ResponseMessages><m:SendNotificationResponseMessage ResponseClass="Success"><m:Notification>{notification_children}</m:Notification></m:SendNotificationResponseMessage></m:ResponseMessages></m:SendNotification></s:Body></s:Envelope>"#,
        MESSAGES = cursor::MESSAGES,
        TYPES = cursor::TYPES,
    )
}

const STATUS: &str = "<t:SubscriptionId>sub</t:SubscriptionId><t:StatusEvent><t:Watermark>w1</t:Watermark></t:StatusEvent>";

fn modified(unread: &str) -> String {
    format!(
        r#"<t:ModifiedEvent><t:Watermark>w</t:Watermark><t:TimeStamp>2026-03-04T09:15:27Z</t:TimeStamp><t:FolderId Id="f"/><t:ParentFolderId Id="p"/><t:UnreadCount>{unread}</t:UnreadCount></t:ModifiedEvent>"#
    )
}

#[test]
fn a_plain_status_event_parses() {
    let parsed = parse_default(envelope(STATUS).as_bytes()).expect("status");
    let n = parsed.messages[0]
        .notification
        .as_ref()
        .expect("notification");
    assert_eq!(n.subscription_id, "sub");
    assert_eq!(n.last_watermark(), Some("w1"));
}

#[test]
fn predefined_entities_and_character_references_resolve() {
    let body = envelope(
        "<t:SubscriptionId>a&amp;b&#65;&#x42;&lt;&quot;</t:SubscriptionId><t:StatusEvent/>",
    );
    let parsed = parse_default(body.as_bytes()).expect("entities");
    assert_eq!(parsed.messages[0].subscription_id(), Some("a&bAB<\""));
    let cdata = envelope("<t:SubscriptionId><![CDATA[x<y]]></t:SubscriptionId><t:StatusEvent/>");
    let parsed = parse_default(cdata.as_bytes()).expect("cdata");
    assert_eq!(parsed.messages[0].subscription_id(), Some("x<y"));
}

#[test]
fn bad_character_references_and_entities_in_attributes_are_refused() {
    let bad_ref = envelope("<t:SubscriptionId>&#0;</t:SubscriptionId><t:StatusEvent/>");
    assert_eq!(reason_of(bad_ref.as_bytes()), Reason::Entity);
    let attr = envelope(r#"<t:SubscriptionId>s</t:SubscriptionId><t:StatusEvent x="&boom;"/>"#);
    assert_eq!(reason_of(attr.as_bytes()), Reason::Entity);
}

#[test]
fn unread_counts_must_be_non_negative_ints() {
    let sub = "<t:SubscriptionId>s</t:SubscriptionId>";
    for bad in ["-3", "99999999999", "four", ""] {
        let body = envelope(&format!("{sub}{}", modified(bad)));
        assert_eq!(reason_of(body.as_bytes()), Reason::BadValue, "{bad:?}");
    }
    let body = envelope(&format!("{sub}{}", modified("2147483647")));
    let parsed = parse_default(body.as_bytes()).expect("max int");
    let n = parsed.messages[0].notification.as_ref().expect("n");
    assert_eq!(n.last_unread_count("f"), Some(i32::MAX as u32));
}

#[test]
fn event_shapes_are_checked() {
    let sub = "<t:SubscriptionId>s</t:SubscriptionId>";
    let both_ids = r#"<t:CreatedEvent><t:TimeStamp>2026-03-04T09:15:27Z</t:TimeStamp><t:ItemId Id="i"/><t:FolderId Id="f"/><t:ParentFolderId Id="p"/></t:CreatedEvent>"#;
    let no_parent = r#"<t:CreatedEvent><t:TimeStamp>2026-03-04T09:15:27Z</t:TimeStamp><t:ItemId Id="i"/></t:CreatedEvent>"#;
    let no_time =
        r#"<t:NewMailEvent><t:ItemId Id="i"/><t:ParentFolderId Id="p"/></t:NewMailEvent>"#;
    let move_without_old = r#"<t:MovedEvent><t:TimeStamp>2026-03-04T09:15:27Z</t:TimeStamp><t:ItemId Id="i"/><t:ParentFolderId Id="p"/></t:MovedEvent>"#;
    let two_stamps = r#"<t:NewMailEvent><t:TimeStamp>2026-03-04T09:15:27Z</t:TimeStamp><t:TimeStamp>2026-03-04T09:15:27Z</t:TimeStamp><t:ItemId Id="i"/><t:ParentFolderId Id="p"/></t:NewMailEvent>"#;
    let empty_id = r#"<t:NewMailEvent><t:TimeStamp>2026-03-04T09:15:27Z</t:TimeStamp><t:ItemId Id=" "/><t:ParentFolderId Id="p"/></t:NewMailEvent>"#;
    for (event, reason) in [
        (both_ids, Reason::MissingElement),
        (no_parent, Reason::MissingElement),
        (no_time, Reason::MissingElement),
        (move_without_old, Reason::MissingElement),
        (two_stamps, Reason::MissingElement),
        (empty_id, Reason::BadValue),
        ("", Reason::MissingElement),
    ] {
        let body = envelope(&format!("{sub}{event}"));
        assert_eq!(reason_of(body.as_bytes()), reason, "{event}");
    }
}

#[test]
fn namespaces_are_checked_not_prefixes() {
    // The right prefix bound to the wrong URI.
    let wrong = envelope(STATUS).replace(cursor::TYPES, "urn:not-ews-types");
    assert_eq!(reason_of(wrong.as_bytes()), Reason::Namespace);
    // An undeclared prefix.
    let undeclared = envelope(STATUS)
        .replace("<t:StatusEvent>", "<x:StatusEvent>")
        .replace("</t:StatusEvent>", "</x:StatusEvent>");
    assert_eq!(reason_of(undeclared.as_bytes()), Reason::Namespace);
    // A SOAP 1.1 Body inside a SOAP 1.2 envelope.
    let mixed = envelope(STATUS)
        .replacen(
            &format!(r#"<s:Envelope xmlns:s="{S11}">"#),
            &format!(
                r#"<e:Envelope xmlns:e="{}" xmlns:s="{S11}">"#,
                cursor::SOAP12
            ),
            1,
        )
        .replace("</s:Envelope>", "</e:Envelope>");
    assert_eq!(reason_of(mixed.as_bytes()), Reason::Namespace);
}

#[test]
fn document_level_rules_hold() {
    let ok = envelope(STATUS);
    assert!(parse_default(format!("<!-- before -->{ok}<!-- after -->\n").as_bytes()).is_ok());
    assert_eq!(reason_of(b"   \n "), Reason::Empty);
    assert_eq!(reason_of(b"<!-- only a comment -->"), Reason::Empty);
    assert_eq!(
        reason_of(format!("{ok}trailing").as_bytes()),
        Reason::TrailingContent
    );
    assert_eq!(reason_of(format!("junk{ok}").as_bytes()), Reason::Malformed);
    assert_eq!(
        reason_of(format!("{ok}<?pi x?>").as_bytes()),
        Reason::ProcessingInstruction
    );
    let latin1 = format!(r#"<?xml version="1.0" encoding="ISO-8859-1"?>{ok}"#);
    assert_eq!(reason_of(latin1.as_bytes()), Reason::Encoding);
    let late_decl = format!(r#"<!-- x --><?xml version="1.0"?>{ok}"#);
    assert_eq!(reason_of(late_decl.as_bytes()), Reason::Malformed);
    let two_bodies = ok.replace("</s:Body>", "</s:Body><s:Body/>");
    assert_eq!(reason_of(two_bodies.as_bytes()), Reason::UnexpectedElement);
    let text_in_structure = ok.replace("<m:ResponseMessages>", "<m:ResponseMessages>text");
    assert_eq!(
        reason_of(text_in_structure.as_bytes()),
        Reason::UnexpectedElement
    );
}

#[test]
fn response_class_and_codes_are_validated() {
    let ok = envelope(STATUS);
    let bad_class = ok.replace(r#"ResponseClass="Success""#, r#"ResponseClass="Fine""#);
    assert_eq!(reason_of(bad_class.as_bytes()), Reason::BadValue);
    let no_class = ok.replace(r#" ResponseClass="Success""#, "");
    assert_eq!(reason_of(no_class.as_bytes()), Reason::MissingElement);
    let warning = ok.replace(r#"ResponseClass="Success""#, r#"ResponseClass="Warning""#);
    let parsed = parse_default(warning.as_bytes()).expect("warning");
    assert_eq!(parsed.messages[0].class, ResponseClass::Warning);
}

#[test]
fn caps_bound_every_dimension() {
    let limits = Limits::default();
    let deep = envelope(&format!(
        "{STATUS}<t:Future>{}{}</t:Future>",
        "<t:x>".repeat(100),
        "</t:x>".repeat(100)
    ));
    assert_eq!(reason_of(deep.as_bytes()), Reason::TooDeep);
    let attrs: String = (0..20).map(|i| format!(r#" a{i}="v""#)).collect();
    let wide = envelope(&STATUS.replace("<t:StatusEvent>", &format!("<t:StatusEvent{attrs}>")));
    assert_eq!(reason_of(wide.as_bytes()), Reason::TooManyAttributes);
    let decls: String = (0..40)
        .map(|i| format!(r#" xmlns:p{i}="urn:x:{i}""#))
        .collect();
    let bindings = envelope(&STATUS.replace("<t:StatusEvent>", &format!("<t:StatusEvent{decls}>")));
    assert_eq!(reason_of(bindings.as_bytes()), Reason::TooManyNamespaces);
    let long_id = envelope(&format!(
        "<t:SubscriptionId>{}</t:SubscriptionId><t:StatusEvent/>",
        "A".repeat(limits.max_id + 1)
    ));
    assert_eq!(reason_of(long_id.as_bytes()), Reason::TooLong);
    let long_text = envelope(&format!(
        "{STATUS}<t:Future>{}</t:Future>",
        "x".repeat(limits.max_text + 1)
    ));
    assert_eq!(reason_of(long_text.as_bytes()), Reason::TooLong);
    let many_events = envelope(&format!(
        "<t:SubscriptionId>s</t:SubscriptionId>{}",
        "<t:StatusEvent/>".repeat(limits.max_events + 1)
    ));
    assert_eq!(reason_of(many_events.as_bytes()), Reason::TooManyEvents);
    let message = "<m:SendNotificationResponseMessage ResponseClass=\"Error\"/>";
    let many_messages = envelope(STATUS).replace(
        "<m:ResponseMessages>",
        &format!(
            "<m:ResponseMessages>{}",
            message.repeat(limits.max_messages)
        ),
    );
    assert_eq!(reason_of(many_messages.as_bytes()), Reason::TooManyMessages);
}

#[test]
fn oversized_bodies_fail_fast_on_their_cap() {
    // The shapes of `tools/gen_oversize.py`, at sizes a unit test can afford.
    let deep = format!("{}{}", "<a>".repeat(100_000), "</a>".repeat(100_000));
    assert_eq!(reason_of(deep.as_bytes()), Reason::WrongOperation);
    let deep_inside = envelope(&format!("{STATUS}<t:x>{}", "<t:x>".repeat(100_000)));
    assert_eq!(reason_of(deep_inside.as_bytes()), Reason::TooDeep);
    let attrs: String = (0..100_000).map(|i| format!(r#" a{i}="v""#)).collect();
    let wide = envelope(&STATUS.replace("<t:StatusEvent>", &format!("<t:StatusEvent{attrs}>")));
    assert_eq!(reason_of(wide.as_bytes()), Reason::TooManyAttributes);
    let decls: String = (0..50_000)
        .map(|i| format!(r#" xmlns:p{i}="urn:x:{i}""#))
        .collect();
    let xmlns = envelope(&STATUS.replace("<t:StatusEvent>", &format!("<t:StatusEvent{decls}>")));
    assert_eq!(reason_of(xmlns.as_bytes()), Reason::TooManyNamespaces);
    let huge_id = envelope(&format!(
        "<t:SubscriptionId>{}</t:SubscriptionId><t:StatusEvent/>",
        "A".repeat(2_000_000)
    ));
    assert_eq!(reason_of(huge_id.as_bytes()), Reason::TooLong);
    let lots = envelope(&format!(
        "<t:SubscriptionId>s</t:SubscriptionId>{}",
        modified("1").repeat(21_000)
    ));
    assert_eq!(reason_of(lots.as_bytes()), Reason::TooManyEvents);
    let raised = Limits {
        max_events: 50_000,
        ..Limits::default()
    };
    let parsed = parse(lots.as_bytes(), &raised).expect("within a raised cap");
    assert_eq!(
        parsed.messages[0]
            .notification
            .as_ref()
            .map(|n| n.events.len()),
        Some(21_000)
    );
}

#[test]
fn errors_never_echo_request_content() {
    let secret = "SECRET-CONTENT-1234";
    let bodies = [
        envelope(&format!(
            "<t:SubscriptionId>s</t:SubscriptionId><m:{secret}/>"
        )),
        envelope(STATUS)
            .replace("t:StatusEvent", &format!("t:{secret}"))
            .replace("<t:SubscriptionId>sub</t:SubscriptionId>", ""),
        format!("<{secret}/>"),
        envelope(&format!(
            "<t:SubscriptionId>&{secret};</t:SubscriptionId><t:StatusEvent/>"
        )),
        envelope(&format!(
            "{STATUS}<t:ModifiedEvent><t:TimeStamp>{secret}</t:TimeStamp></t:ModifiedEvent>"
        )),
    ];
    for body in bodies {
        let error = parse_default(body.as_bytes()).expect_err("refused");
        assert!(!error.to_string().contains(secret), "{error}");
    }
}
