//! The parser never panics — on arbitrary bytes, on mutated fixtures, on XML-ish token soup —
//! and whatever it accepts satisfies the model's invariants.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_gateway::model::{EventKind, ResponseClass, SendNotification};
use herald_gateway::{Limits, parse};
use proptest::prelude::*;

fn fixtures() -> &'static [Vec<u8>] {
    static ALL: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    ALL.get_or_init(read_fixtures)
}

fn read_fixtures() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for dir in ["ews", "ews-extra"] {
        let path = format!("{}/../testdata/{dir}", env!("CARGO_MANIFEST_DIR"));
        let mut names: Vec<_> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "xml"))
            .collect();
        names.sort();
        out.extend(names.into_iter().map(|p| std::fs::read(p).unwrap()));
    }
    out
}

/// What every accepted request must satisfy.
fn check_invariants(parsed: &SendNotification, limits: &Limits) {
    assert!(!parsed.messages.is_empty() && parsed.messages.len() <= limits.max_messages);
    for message in &parsed.messages {
        if message.class == ResponseClass::Success {
            assert!(message.notification.is_some());
        }
        let Some(n) = &message.notification else {
            continue;
        };
        assert!(!n.subscription_id.trim().is_empty());
        assert!(n.subscription_id.len() <= limits.max_id);
        assert!(n.events.len() <= limits.max_events);
        for e in &n.events {
            if e.kind != EventKind::Status {
                assert!(e.timestamp.is_some());
                assert!(e.item_id.is_some() != e.folder_id.is_some());
                assert!(e.parent_folder_id.is_some());
            }
            assert!(e.unread_count.is_none_or(|c| c <= i32::MAX as u32));
            assert!(e.watermark.as_deref().is_none_or(|w| !w.trim().is_empty()));
        }
    }
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Delete(usize, usize),
    Insert(usize, Vec<u8>),
    Duplicate(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let snippets = prop::sample::select(vec![
        b"<".to_vec(),
        b">".to_vec(),
        b"</t:x>".to_vec(),
        b"<!DOCTYPE x>".to_vec(),
        b"&lol;".to_vec(),
        b"&#0;".to_vec(),
        b"&#x1F600;".to_vec(),
        b"<![CDATA[".to_vec(),
        b"]]>".to_vec(),
        b"xmlns:t=\"urn:x\"".to_vec(),
        b"\xff\xfe".to_vec(),
        b"<?pi?>".to_vec(),
        b"<t:UnreadCount>-1</t:UnreadCount>".to_vec(),
        b"\"".to_vec(),
    ]);
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Flip(at, b)),
        (any::<usize>(), 0usize..64).prop_map(|(at, n)| Mutation::Delete(at, n)),
        (any::<usize>(), snippets).prop_map(|(at, s)| Mutation::Insert(at, s)),
        (any::<usize>(), 1usize..256).prop_map(|(at, n)| Mutation::Duplicate(at, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut body: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = body.len().max(1);
        match m {
            Mutation::Flip(at, b) => {
                if !body.is_empty() {
                    body[at % len] = *b;
                }
            }
            Mutation::Delete(at, n) => {
                let start = at % len;
                let end = (start + n).min(body.len());
                body.drain(start.min(end)..end);
            }
            Mutation::Insert(at, s) => {
                let at = (at % len).min(body.len());
                body.splice(at..at, s.iter().copied());
            }
            Mutation::Duplicate(at, n) => {
                let start = (at % len).min(body.len());
                let end = (start + n).min(body.len());
                let copy = body[start..end].to_vec();
                body.splice(end..end, copy);
            }
            Mutation::Truncate(at) => body.truncate(at % len),
        }
    }
    body
}

fn token_soup() -> impl Strategy<Value = Vec<u8>> {
    let token = prop::sample::select(vec![
        "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\">",
        "</s:Envelope>",
        "<s:Body>",
        "</s:Body>",
        "<m:SendNotification xmlns:m=\"http://schemas.microsoft.com/exchange/services/2006/messages\" xmlns:t=\"http://schemas.microsoft.com/exchange/services/2006/types\">",
        "</m:SendNotification>",
        "<m:ResponseMessages>",
        "</m:ResponseMessages>",
        "<m:SendNotificationResponseMessage ResponseClass=\"Success\">",
        "<m:SendNotificationResponseMessage ResponseClass=\"Error\">",
        "</m:SendNotificationResponseMessage>",
        "<m:Notification>",
        "</m:Notification>",
        "<t:SubscriptionId>s</t:SubscriptionId>",
        "<t:StatusEvent>",
        "</t:StatusEvent>",
        "<t:ModifiedEvent>",
        "</t:ModifiedEvent>",
        "<t:TimeStamp>2026-03-04T09:15:27Z</t:TimeStamp>",
        "<t:FolderId Id=\"f\"/>",
        "<t:ItemId Id=\"i\"/>",
        "<t:ParentFolderId Id=\"p\"/>",
        "<t:UnreadCount>3</t:UnreadCount>",
        "<t:Watermark>w</t:Watermark>",
        "<t:MoreEvents>true</t:MoreEvents>",
        "<m:MessageXml><t:Value Name=\"SubscriptionId\">s</t:Value></m:MessageXml>",
        " ",
        "text",
        "&amp;",
        "<!-- c -->",
    ]);
    prop::collection::vec(token, 0..60).prop_map(|tokens| tokens.concat().into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        let limits = Limits::default();
        if let Ok(parsed) = parse(&body, &limits) {
            check_invariants(&parsed, &limits);
        }
    }

    #[test]
    fn mutated_fixtures_never_panic(
        index in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let all = fixtures();
        let body = mutate(all[index.index(all.len())].clone(), &mutations);
        let limits = Limits::default();
        if let Ok(parsed) = parse(&body, &limits) {
            check_invariants(&parsed, &limits);
        }
    }

    #[test]
    fn token_soup_never_panics(body in token_soup()) {
        let limits = Limits::default();
        if let Ok(parsed) = parse(&body, &limits) {
            check_invariants(&parsed, &limits);
        }
    }
}
