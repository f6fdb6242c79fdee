//! The gateway over real HTTP with a scripted sink: routes, content types, body caps and
//! timeouts, the answers of the decision table and metrics (`answers`); what bounds a
//! flood — the body budget and rate, unknown URLs, per-source and per-URL limits (`edge`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_gateway::model::{SendNotification, SoapVersion};
use herald_gateway::testsuite::{RawResponse, post, send_raw};
use herald_gateway::{
    Admission, Callback, Gateway, GatewayConfig, GatewayMetrics, NotificationSink, Verdict, serve,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

mod answers;
mod edge;

/// Admits by token: "unknown…" is unknown, "away…" unavailable, anything else known. Answers
/// by subscription id: "unsub…", "reject…", "down…", else OK; records every call.
#[derive(Default)]
struct Scripted {
    calls: Mutex<Vec<(Callback, SendNotification)>>,
}

#[derive(Clone, Default)]
struct ScriptedSink(Arc<Scripted>);

impl NotificationSink for ScriptedSink {
    type Admitted = Callback;

    async fn admit(&self, callback: &Callback) -> Admission<Callback> {
        match callback.token() {
            t if t.starts_with("unknown") => Admission::Unknown,
            t if t.starts_with("away") => Admission::Unavailable,
            _ => Admission::Known(callback.clone()),
        }
    }

    async fn deliver(&self, callback: Callback, request: SendNotification) -> Vec<Verdict> {
        self.0
            .calls
            .lock()
            .unwrap()
            .push((callback, request.clone()));
        request
            .messages
            .iter()
            .map(|m| match m.subscription_id().unwrap_or_default() {
                s if s.starts_with("unsub") => Verdict::Unsubscribe,
                s if s.starts_with("reject") => Verdict::Reject,
                s if s.starts_with("down") => Verdict::Unavailable,
                _ => Verdict::Ok,
            })
            .collect()
    }
}

struct Running {
    addr: SocketAddr,
    sink: ScriptedSink,
    metrics: GatewayMetrics,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn start(config: GatewayConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sink = ScriptedSink::default();
        let metrics = GatewayMetrics::default();
        let gateway = Arc::new(Gateway::new(config, sink.clone(), metrics.clone()));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, gateway, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            sink,
            metrics,
            stop: Some(stop),
            task,
        }
    }

    async fn post(&self, body: &[u8]) -> RawResponse {
        post(
            self.addr,
            "/ews/v1/us-east-1/tok3n",
            Some("text/xml; charset=utf-8"),
            body,
        )
        .await
    }

    /// The bytes of a `POST` to callback `token` with `body` and `extra` header lines.
    fn request(&self, token: &str, extra: &str, body: &[u8]) -> Vec<u8> {
        let mut head = format!(
            "POST /ews/v1/us-east-1/{token} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n{extra}\r\n",
            body.len()
        )
        .into_bytes();
        head.extend_from_slice(body);
        head
    }

    fn calls(&self) -> Vec<(Callback, SendNotification)> {
        self.sink.0.calls.lock().unwrap().clone()
    }

    fn metrics_text(&self) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        self.metrics.register(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

fn fixture(dir: &str, name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../testdata/{dir}/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn status_only(subscription: &str) -> Vec<u8> {
    format!(
        r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><m:SendNotification xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><m:ResponseMessages><m:SendNotificationResponseMessage ResponseClass="Success"><m:Notification><t:SubscriptionId>{subscription}</t:SubscriptionId><t:StatusEvent/></m:Notification></m:SendNotificationResponseMessage></m:ResponseMessages></m:SendNotification></s:Body></s:Envelope>"#
    )
    .into_bytes()
}

fn quick_config() -> GatewayConfig {
    GatewayConfig {
        body_timeout: Duration::from_millis(300),
        header_timeout: Duration::from_millis(300),
        ..GatewayConfig::default()
    }
}

/// Sends `head` (and no more) and reads until the server closes, within 5 s.
async fn send_head_and_wait(addr: SocketAddr, head: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
        .await
        .expect("the server closes the connection")
        .unwrap();
    String::from_utf8_lossy(&raw).into_owned()
}

fn with_nesting(depth: usize) -> Vec<u8> {
    let text = String::from_utf8(status_only("ok")).unwrap();
    let nested = format!(
        "<t:X>{}{}</t:X>",
        "<t:x>".repeat(depth),
        "</t:x>".repeat(depth)
    );
    text.replace("<t:StatusEvent/>", &format!("<t:StatusEvent/>{nested}"))
        .into_bytes()
}
