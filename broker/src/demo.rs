//! `herald demo` (part of the `herald` binary): a node on the embedded store, two phones
//! registered through the gRPC API, a scripted Exchange day POSTed to the gateway over HTTP,
//! and a timeline of what came in and what was pushed. Pushes go to a recording sender —
//! provider delivery and its mock servers are not built yet.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use herald_broker::api::ApiTokens;
use herald_broker::config::{Config, EXAMPLE_APPS_TOML};
use herald_broker::domain::RegistrationId;
use herald_broker::node::RunningNode;
use herald_broker::store::{MemoryStore, RegistrationStore};
use herald_proto::v1::registrations_client::RegistrationsClient;
use herald_proto::v1::{Platform, RegisterRequest};
use herald_workers::{PushOutcome, RecordingSender};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const TOKEN: &str = "demo-token-0123456789";

/// A scripted notification: which phone's subscription, a label, and the body.
struct Step {
    phone: usize,
    label: &'static str,
    body: String,
}

struct Phone {
    name: &'static str,
    platform: Platform,
    app: &'static str,
    device_token: String,
    subscription: &'static str,
    inbox: &'static str,
    path: String,
    id: Option<RegistrationId>,
}

const ALICE_SUB: &str =
    "HABleG1ieDAxLmNvcnAuY29udG9zby5leGFtcGxlEAAAAJpyRUCk4gv0pegvppfUERwE4egXN7kayg==";
const ALICE_INBOX: &str = "AQMkAGSBBojhCVaWA3el3gSl931pHuG3mdcrDjgbBnxjJGaPn2RPcQAuAAADy0xoW79O2nawdiH5G3pIAjVwB2D2Le3CP//OlXZa2fm6IcA0fNr2lA==";
const CAROL_SUB: &str =
    "HABleG1ieDAxLmNvcnAuY29udG9zby5leGFtcGxlEAAAAKreLgnPP1wpsoi7UBCHn2XsvD+5Soh+TA==";
const CAROL_INBOX: &str = "AQMkAPoQc/kKp3SVyd0xc84wZhFejWSaVmZNAXRaZ1RTg+GRS/pVrAAuAAADy0xoW79O2nawdiH5G3pIAjVwB2D2Le3CP//OlXZa2fm6IcA0fNr2lA==";

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../testdata/ews/", $name)).to_owned()
    };
}

fn script() -> Vec<Step> {
    // A later notification: new watermarks (else it is a redelivery) and another count.
    let carol_two = fixture!("09-move-to-deleteditems.xml")
        .replace("ES8AAAAAAAE=", "ES9AAAAAAAE=")
        .replacen(
            "<t:UnreadCount>0</t:UnreadCount>",
            "<t:UnreadCount>2</t:UnreadCount>",
            1,
        );
    vec![
        Step {
            phone: 0,
            label: "heartbeat (StatusEvent)",
            body: fixture!("01-status-heartbeat.xml"),
        },
        Step {
            phone: 0,
            label: "new mail: Created + NewMail + Inbox Modified, UnreadCount 4",
            body: fixture!("03-burst-created-newmail-modified.xml"),
        },
        Step {
            phone: 0,
            label: "the same notification again (Exchange's retry)",
            body: fixture!("03-burst-created-newmail-modified.xml"),
        },
        Step {
            phone: 0,
            label: "page 1 of 2 (MoreEvents=true), more new mail",
            body: fixture!("04-moreevents-page1.xml"),
        },
        Step {
            phone: 0,
            label: "page 2 of 2, UnreadCount 6",
            body: fixture!("05-moreevents-page2.xml"),
        },
        Step {
            phone: 0,
            label: "a message read, UnreadCount 5",
            body: fixture!("07-read-unread-drop.xml"),
        },
        Step {
            phone: 0,
            label: "a message deleted, UnreadCount 4",
            body: fixture!("08-harddelete-unread-drop.xml"),
        },
        Step {
            phone: 1,
            label: "a message moved to Deleted Items, Inbox UnreadCount 0",
            body: fixture!("09-move-to-deleteditems.xml"),
        },
        Step {
            phone: 1,
            label: "Inbox UnreadCount 2 (the phone's token has died meanwhile)",
            body: carol_two,
        },
        Step {
            phone: 1,
            label: "folder events after the token died",
            body: fixture!("10-folder-created-copied-freebusy.xml"),
        },
    ]
}

fn config() -> anyhow::Result<Config> {
    let text = format!(
        r#"
        [node]
        public_url = "https://push.example.test"
        [gateway]
        listen = "127.0.0.1:0"
        [grpc]
        listen = "127.0.0.1:0"
        [admin]
        listen = "127.0.0.1:0"
        [auth]
        api_tokens = ["{TOKEN}"]
        [coalesce]
        quiet = "400ms"
        max_delay = "1500ms"
        min_interval = "0s"
        [telemetry]
        log_filter = "warn"
        "#
    );
    Ok(toml::from_str(&format!("{text}{EXAMPLE_APPS_TOML}"))?)
}

/// Runs the demo, printing to `out`.
pub(crate) async fn run(out: &mut impl std::io::Write) -> anyhow::Result<()> {
    let started = Instant::now();
    let at = |t: Instant| format!("[{:>6.2}s]", t.duration_since(started).as_secs_f64());
    let store: Arc<dyn RegistrationStore> = Arc::new(MemoryStore::new());
    let pushes = RecordingSender::new();
    let node = RunningNode::start_with_sender(
        &config()?,
        store.clone(),
        ApiTokens::new([TOKEN]),
        Arc::new(pushes.clone()),
    )
    .await
    .context("starting the node")?;
    writeln!(
        out,
        "{} node up: gateway http://{}, gRPC {}, in-memory store",
        at(Instant::now()),
        node.gateway_addr,
        node.grpc_addr
    )?;

    let mut phones = vec![
        Phone {
            name: "Alice's iPhone",
            platform: Platform::Apns,
            app: "com.example.mail",
            device_token: "a1".repeat(32),
            subscription: ALICE_SUB,
            inbox: ALICE_INBOX,
            path: String::new(),
            id: None,
        },
        Phone {
            name: "Carol's Android phone",
            platform: Platform::Fcm,
            app: "com.example.mail.android",
            device_token: format!("carol-fcm-token:{}", "x".repeat(140)),
            subscription: CAROL_SUB,
            inbox: CAROL_INBOX,
            path: String::new(),
            id: None,
        },
    ];
    register(&node, &mut phones, out, &at).await?;

    let mut seen = 0;
    for (n, step) in script().into_iter().enumerate() {
        let phone = &phones[step.phone];
        if n == 8 {
            pushes.script(
                &phone.device_token,
                PushOutcome::TokenDead {
                    reason: "Unregistered".into(),
                    since_ms: None,
                },
            );
        }
        let (status, answer) = post(node.gateway_addr, &phone.path, &step.body).await?;
        writeln!(
            out,
            "{} exchange → {}: {} → HTTP {status} {answer}",
            at(Instant::now()),
            phone.name,
            step.label
        )?;
        if step.body.contains("<t:MoreEvents>true</t:MoreEvents>") {
            continue;
        }
        let id = phone.id.clone().context("registered")?;
        wait_for_flush(store.as_ref(), &id).await?;
        for push in pushes.sent().into_iter().skip(seen) {
            seen += 1;
            let to = phones
                .iter()
                .find(|p| p.device_token == push.device_token)
                .map_or("?", |p| p.name);
            let what = match push.provider {
                herald_workers::Provider::Apns => {
                    format!("APNs {{\"aps\":{{\"badge\":{}}}}}", push.badge)
                }
                herald_workers::Provider::Fcm => format!(
                    "FCM data {{badge: {}, new_mail: {}}}",
                    push.badge, push.new_mail
                ),
            };
            writeln!(out, "{}   push → {to}: {what}", at(Instant::now()))?;
        }
        if let Some(reason) = store.get(&id).await?.and_then(|r| r.dead_reason)
            && n == 8
        {
            writeln!(
                out,
                "{}   registration marked dead: {reason}",
                at(Instant::now())
            )?;
        }
    }
    summary(&node, store.as_ref(), &phones, &pushes, out).await?;
    node.shutdown(Duration::from_secs(5))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

async fn register(
    node: &RunningNode,
    phones: &mut [Phone],
    out: &mut impl std::io::Write,
    at: &impl Fn(Instant) -> String,
) -> anyhow::Result<()> {
    let mut client = RegistrationsClient::connect(format!("http://{}", node.grpc_addr)).await?;
    for phone in phones.iter_mut() {
        let mut request = tonic::Request::new(RegisterRequest {
            device_token: phone.device_token.clone(),
            platform: phone.platform.into(),
            app_id: phone.app.into(),
            inbox_folder_id: phone.inbox.into(),
            subscription_id: phone.subscription.into(),
            ..Default::default()
        });
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {TOKEN}").parse()?);
        let registration = client.register(request).await?.into_inner();
        let at_path = registration
            .callback_url
            .find("/ews/v1/")
            .context("callback URL")?;
        phone.path = registration.callback_url[at_path..].to_owned();
        phone.id = Some(RegistrationId::parse(
            "registration_id",
            &registration.registration_id,
        )?);
        writeln!(
            out,
            "{} registered {} ({}): callback URL minted for Exchange's Subscribe",
            at(Instant::now()),
            phone.name,
            phone.app
        )?;
    }
    Ok(())
}

async fn wait_for_flush(store: &dyn RegistrationStore, id: &RegistrationId) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let pending = store
            .get(id)
            .await?
            .is_some_and(|r| r.progress.burst.is_some());
        if !pending {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("a burst was not flushed within 10 s")
}

async fn summary(
    node: &RunningNode,
    store: &dyn RegistrationStore,
    phones: &[Phone],
    pushes: &RecordingSender,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    writeln!(
        out,
        "\nsummary: {} notifications in, {} pushes out",
        script().len(),
        pushes.sent().len()
    )?;
    for phone in phones {
        let id = phone.id.clone().context("registered")?;
        if let Some(r) = store.get(&id).await? {
            writeln!(
                out,
                "  {}: state {}, badge {}, last push {}{}",
                phone.name,
                r.state.as_str(),
                r.badge,
                r.last_push_outcome.as_deref().unwrap_or("none"),
                r.dead_reason.map(|d| format!(" ({d})")).unwrap_or_default()
            )?;
        }
    }
    let metrics = node.registry.store().count_by_state().await?;
    writeln!(
        out,
        "  registrations: {} active, {} dead",
        metrics.active, metrics.dead
    )?;
    Ok(())
}

/// One POST as Exchange sends it: `(status, SOAP answer or "-")`.
async fn post(addr: SocketAddr, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await?;
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("an HTTP answer")?;
    let answer = ["OK", "Unsubscribe"]
        .into_iter()
        .find(|s| raw.contains(&format!(">{s}</m:SubscriptionStatus>")))
        .unwrap_or("-")
        .to_owned();
    Ok((status, answer))
}
