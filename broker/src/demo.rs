//! `herald demo` (part of the `herald` binary): a node on the embedded store pushing to the
//! bundled mock APNs and FCM over TLS, four phones registered through the gRPC API, a
//! scripted Exchange day POSTed to the gateway over HTTP, and a timeline of what came in and
//! what the mock providers received. No Redis, no credentials: the mocks make their own CA
//! and trust the committed test keys.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use herald_broker::api::ApiTokens;
use herald_broker::config::Config;
use herald_broker::domain::RegistrationId;
use herald_broker::node::RunningNode;
use herald_broker::store::{MemoryStore, RegistrationStore};
use herald_proto::v1::registrations_client::RegistrationsClient;
use herald_proto::v1::{Platform, RegisterRequest};
use herald_workers::mock::{
    Fault, MockApnsOptions, MockFcmOptions, MockProviders, Reply, TokenRule,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const TOKEN: &str = "demo-token-0123456789";
const IOS_APP: &str = "com.example.mail";
const ANDROID_APP: &str = "com.example.mail.android";

/// A scripted notification: which phone's subscription, a label, and the body.
struct Step {
    phone: usize,
    label: &'static str,
    body: String,
    /// The phone's token is dead at the provider from this step on.
    token_dies: bool,
}

impl Step {
    fn new(phone: usize, label: &'static str, body: String) -> Self {
        Self {
            phone,
            label,
            body,
            token_dies: false,
        }
    }
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
const BOB_SUB: &str =
    "HABleG1ieDAxLmNvcnAuY29udG9zby5leGFtcGxlEAAAAMioJjgxGopPY/WO3to9Tia1vLxIquZWmw==";
const BOB_INBOX: &str = "AQMkAFXUAcgpFWkAblj19yhtncYb8qz9v9WDoX7pRZt0LTGlcgrG5QAuAAADy0xoW79O2nawdiH5G3pIAjVwB2D2Le3CP//OlXZa2fm6IcA0fNr2lA==";
const DAVE_SUB: &str =
    "HABleG1ieDAxLmNvcnAuY29udG9zby5leGFtcGxlEAAAAJdblkIpkqDAhWYTi6eTtjA02FjNqt8asg==";
const DAVE_INBOX: &str = "AQMkANhGoebRwZfGQ2wcbbMMPvqB0jV2ouiD+nfKCxpWnuQVe4To2QAuAAADy0xoW79O2nawdiH5G3pIAjVwB2D2Le3CP//OlXZa2fm6IcA0fNr2lA==";
const CAROL_SUB: &str =
    "HABleG1ieDAxLmNvcnAuY29udG9zby5leGFtcGxlEAAAAKreLgnPP1wpsoi7UBCHn2XsvD+5Soh+TA==";
const CAROL_INBOX: &str = "AQMkAPoQc/kKp3SVyd0xc84wZhFejWSaVmZNAXRaZ1RTg+GRS/pVrAAuAAADy0xoW79O2nawdiH5G3pIAjVwB2D2Le3CP//OlXZa2fm6IcA0fNr2lA==";

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../testdata/ews/", $name)).to_owned()
    };
}

const ALICE: usize = 0;
const BOB: usize = 1;
const CAROL: usize = 2;
const DAVE: usize = 3;

fn script() -> Vec<Step> {
    // A later notification: new watermarks (else it is a redelivery) and another count.
    let carol_two = fixture!("09-move-to-deleteditems.xml")
        .replace("ES8AAAAAAAE=", "ES9AAAAAAAE=")
        .replacen(
            "<t:UnreadCount>0</t:UnreadCount>",
            "<t:UnreadCount>2</t:UnreadCount>",
            1,
        );
    // Dave's mailbox sees what Alice's did in 07: his Inbox now has 5 unread.
    let dave = fixture!("07-read-unread-drop.xml")
        .replace(ALICE_SUB, DAVE_SUB)
        .replace(ALICE_INBOX, DAVE_INBOX);
    vec![
        Step::new(
            ALICE,
            "heartbeat (StatusEvent)",
            fixture!("01-status-heartbeat.xml"),
        ),
        Step::new(
            ALICE,
            "new mail: Created + NewMail + Inbox Modified, UnreadCount 4",
            fixture!("03-burst-created-newmail-modified.xml"),
        ),
        Step::new(
            ALICE,
            "the same notification again (Exchange's retry)",
            fixture!("03-burst-created-newmail-modified.xml"),
        ),
        Step::new(
            ALICE,
            "page 1 of 2 (MoreEvents=true), more new mail",
            fixture!("04-moreevents-page1.xml"),
        ),
        Step::new(
            ALICE,
            "page 2 of 2, UnreadCount 6",
            fixture!("05-moreevents-page2.xml"),
        ),
        Step::new(
            BOB,
            "new mail, no unread count (NewMail-only subscription: no badge is guessed)",
            fixture!("02-newmail-single.xml"),
        ),
        Step::new(
            BOB,
            "the same notification, other namespace prefixes (a duplicate)",
            fixture!("12-default-namespaces-same-as-02.xml"),
        ),
        Step::new(DAVE, "a message read elsewhere, UnreadCount 5", dave),
        Step::new(
            ALICE,
            "a message read, UnreadCount 5",
            fixture!("07-read-unread-drop.xml"),
        ),
        Step::new(
            ALICE,
            "a message deleted, UnreadCount 4",
            fixture!("08-harddelete-unread-drop.xml"),
        ),
        Step::new(
            CAROL,
            "a message moved to Deleted Items, Inbox UnreadCount 0",
            fixture!("09-move-to-deleteditems.xml"),
        ),
        Step {
            token_dies: true,
            ..Step::new(
                CAROL,
                "Inbox UnreadCount 2 (the app was uninstalled meanwhile)",
                carol_two,
            )
        },
        Step::new(
            CAROL,
            "folder events after the token died",
            fixture!("10-folder-created-copied-freebusy.xml"),
        ),
    ]
}

fn config(providers: &MockProviders) -> anyhow::Result<Config> {
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
    let mut config: Config = toml::from_str(&text)?;
    config.apps = providers.apps(&[IOS_APP], &[ANDROID_APP], "example-mail")?;
    Ok(config)
}

/// Runs the demo, printing to `out`.
pub(crate) async fn run(out: &mut impl std::io::Write) -> anyhow::Result<()> {
    let started = Instant::now();
    let at = |t: Instant| format!("[{:>6.2}s]", t.duration_since(started).as_secs_f64());
    let files = tempfile::tempdir().context("a temporary directory")?;
    let providers = MockProviders::start(
        files.path(),
        MockApnsOptions::default(),
        MockFcmOptions::default(),
    )
    .await
    .context("starting the mock providers")?;
    writeln!(
        out,
        "{} mock APNs {} and mock FCM {} up (HTTP/2 over TLS, CA made at start)",
        at(Instant::now()),
        providers.apns.url(),
        providers.fcm.url()
    )?;
    let store: Arc<dyn RegistrationStore> = Arc::new(MemoryStore::new());
    let node = RunningNode::start(&config(&providers)?, store.clone(), ApiTokens::new([TOKEN]))
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
        Phone::new(
            "Alice's iPhone",
            Platform::Apns,
            "a1".repeat(32),
            ALICE_SUB,
            ALICE_INBOX,
        ),
        Phone::new(
            "Bob's iPhone",
            Platform::Apns,
            "b0".repeat(32),
            BOB_SUB,
            BOB_INBOX,
        ),
        Phone::new(
            "Carol's Android phone",
            Platform::Fcm,
            format!("carol-fcm-token:{}", "x".repeat(140)),
            CAROL_SUB,
            CAROL_INBOX,
        ),
        Phone::new(
            "Dave's Android phone",
            Platform::Fcm,
            format!("dave-fcm-token:{}", "y".repeat(140)),
            DAVE_SUB,
            DAVE_INBOX,
        ),
    ];
    register(&node, &mut phones, out, &at).await?;

    let mut timeline = Received::default();
    for step in script() {
        let phone = &phones[step.phone];
        if step.token_dies {
            providers.fcm.script().for_token(TokenRule {
                token: phone.device_token.clone(),
                fault: Fault::Reply(Reply::new(404, "UNREGISTERED")),
                times: None,
            });
        }
        let (status, answer) = post(node.gateway_addr, &phone.path, &step.body).await?;
        writeln!(
            out,
            "{} exchange → {}: {} [{}] → HTTP {status} {answer}",
            at(Instant::now()),
            phone.name,
            step.label,
            events(&step.body)
        )?;
        if step.body.contains("<t:MoreEvents>true</t:MoreEvents>") {
            continue;
        }
        let id = phone.id.clone().context("registered")?;
        wait_for_flush(store.as_ref(), &id).await?;
        for line in timeline.new_pushes(&providers, &phones) {
            writeln!(out, "{}   push → {line}", at(Instant::now()))?;
        }
        if step.token_dies
            && let Some(reason) = store.get(&id).await?.and_then(|r| r.dead_reason)
        {
            writeln!(
                out,
                "{}   mock FCM answered 404 UNREGISTERED: registration marked dead ({reason}), feedback event published",
                at(Instant::now())
            )?;
        }
    }
    summary(&node, store.as_ref(), &phones, &providers, out).await?;
    node.shutdown(Duration::from_secs(5))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

impl Phone {
    fn new(
        name: &'static str,
        platform: Platform,
        device_token: String,
        subscription: &'static str,
        inbox: &'static str,
    ) -> Self {
        Self {
            name,
            platform,
            app: match platform {
                Platform::Fcm => ANDROID_APP,
                _ => IOS_APP,
            },
            device_token,
            subscription,
            inbox,
            path: String::new(),
            id: None,
        }
    }
}

/// How many pushes of each mock were already printed.
#[derive(Default)]
struct Received {
    apns: usize,
    fcm: usize,
}

impl Received {
    /// The pushes the mocks accepted since the last call, in arrival order, as timeline
    /// lines.
    fn new_pushes(&mut self, providers: &MockProviders, phones: &[Phone]) -> Vec<String> {
        let name = |token: &str| {
            phones
                .iter()
                .find(|p| p.device_token == token)
                .map_or("?", |p| p.name)
        };
        let mut lines: Vec<(u64, String)> = Vec::new();
        for push in providers.apns.pushes().into_iter().skip(self.apns) {
            self.apns += 1;
            let line = format!("{}: APNs {}", name(&push.device_token), push.payload);
            lines.push((push.at_ms, line));
        }
        for push in providers.fcm.pushes().into_iter().skip(self.fcm) {
            self.fcm += 1;
            let data = push
                .data
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ");
            let line = format!(
                "{}: FCM data {{{data}}} priority {}",
                name(&push.token),
                push.priority.as_deref().unwrap_or("-")
            );
            lines.push((push.at_ms, line));
        }
        lines.sort_by_key(|(at, _)| *at);
        lines.into_iter().map(|(_, line)| line).collect()
    }
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
    providers: &MockProviders,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    let refused: u64 = providers.fcm.refused().values().sum::<u64>()
        + providers.apns.refused().values().sum::<u64>();
    writeln!(
        out,
        "\nsummary: {} notifications in, {} pushes accepted by the mock APNs, {} by the mock FCM, {refused} refused",
        script().len(),
        providers.apns.accepted(),
        providers.fcm.accepted(),
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

/// "N events" in a notification, as the gateway parses it.
fn events(body: &str) -> String {
    let parsed = herald_gateway::parse(body.as_bytes(), &herald_gateway::Limits::default());
    let n: usize = parsed.map_or(0, |n| {
        n.messages
            .iter()
            .filter_map(|m| m.notification.as_ref())
            .map(|n| n.events.len())
            .sum()
    });
    match n {
        1 => "1 event".to_owned(),
        n => format!("{n} events"),
    }
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
