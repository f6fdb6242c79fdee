//! `herald-loadtest ews`: EWS `SendNotification` POSTs against a gateway over keep-alive
//! HTTP/1.1 connections, closed loop (one request in flight per connection: the throughput
//! ceiling) or open loop (a fixed arrival rate: latency at a load). Each request carries its
//! target's subscription id and fresh watermarks, as Exchange would send them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::report::{Summary, latency_histogram};
use crate::targets::Target;

/// The shape of each notification sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// A `StatusEvent` heartbeat (0.9 KB).
    Heartbeat,
    /// What one arriving message produces: Created + NewMail + Inbox Modified (2.9 KB).
    Burst,
}

#[derive(Clone, Debug)]
pub struct EwsLoad {
    pub gateway: SocketAddr,
    pub targets: Vec<Target>,
    pub shape: Shape,
    pub count: u64,
    /// Connections, each with one request in flight.
    pub connections: usize,
    /// Arrivals per second; `None`: closed loop.
    pub rate: Option<f64>,
    pub max_duration: Duration,
}

/// Answers by kind, beyond the summary's ok/errors.
#[derive(Debug, Default)]
pub struct Answers {
    pub ok: AtomicU64,
    pub unsubscribe: AtomicU64,
    pub other_status: AtomicU64,
    pub transport: AtomicU64,
}

impl std::fmt::Display for Answers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} OK, {} Unsubscribe, {} other HTTP status, {} transport errors",
            self.ok.load(Ordering::Relaxed),
            self.unsubscribe.load(Ordering::Relaxed),
            self.other_status.load(Ordering::Relaxed),
            self.transport.load(Ordering::Relaxed),
        )
    }
}

const ENVELOPE_HEAD: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<soap11:Envelope xmlns:soap11="http://schemas.xmlsoap.org/soap/envelope/"><soap11:Header><t:RequestServerVersion xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types" Version="Exchange2013"/></soap11:Header><soap11:Body><m:SendNotification xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"><m:ResponseMessages><m:SendNotificationResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:Notification>"#;
const ENVELOPE_TAIL: &str = "</m:Notification></m:SendNotificationResponseMessage></m:ResponseMessages></m:SendNotification></soap11:Body></soap11:Envelope>\n";

/// The body of request `n` to `target`.
pub fn notification(shape: Shape, target: &Target, n: u64) -> String {
    let watermark = |k: u64| format!("AQAAAJ6Xmtv4ya7Fg7VYBjxa5Q{:014x}AAE=", n * 4 + k);
    let mut body = String::with_capacity(3072);
    body.push_str(ENVELOPE_HEAD);
    body.push_str(&format!(
        "<t:SubscriptionId>{}</t:SubscriptionId><t:PreviousWatermark>{}</t:PreviousWatermark><t:MoreEvents>false</t:MoreEvents>",
        target.subscription_id,
        watermark(0)
    ));
    match shape {
        Shape::Heartbeat => body.push_str(&format!(
            "<t:StatusEvent><t:Watermark>{}</t:Watermark></t:StatusEvent>",
            watermark(0)
        )),
        Shape::Burst => {
            let item = format!(
                "AAMkAGSBBojhCVaWA3el3gSl931pHuG3mdcrDjgbBnxjJGaPn2RPcQBGAAAAAABia8xVkEUO6xr5haNi6bxNlALlzqU{n:016x}"
            );
            let inbox = &target.inbox_folder_id;
            for (k, kind) in [(1, "CreatedEvent"), (2, "NewMailEvent")] {
                body.push_str(&format!(
                    r#"<t:{kind}><t:Watermark>{}</t:Watermark><t:TimeStamp>2026-03-04T09:15:27Z</t:TimeStamp><t:ItemId Id="{item}" ChangeKey="CQAAAA=="/><t:ParentFolderId Id="{inbox}" ChangeKey="AQAAAA=="/></t:{kind}>"#,
                    watermark(k)
                ));
            }
            body.push_str(&format!(
                r#"<t:ModifiedEvent><t:Watermark>{}</t:Watermark><t:TimeStamp>2026-03-04T09:15:27Z</t:TimeStamp><t:FolderId Id="{inbox}" ChangeKey="AQAAAA=="/><t:ParentFolderId Id="AQMkAGSBBojhCVaWA3el3gSl931pHuG3mdcrDjgbBnxjJGaPn2RPcQAuAAADKr" ChangeKey="AQAAAA=="/><t:UnreadCount>{}</t:UnreadCount></t:ModifiedEvent>"#,
                watermark(3),
                n % 100
            ));
        }
    }
    body.push_str(ENVELOPE_TAIL);
    body
}

pub(crate) type Sender = http1::SendRequest<Full<Bytes>>;

/// A keep-alive HTTP/1.1 connection to `addr`.
pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// POSTs `body` as Exchange does; `Ok(answer)` when an HTTP answer arrived.
pub(crate) async fn post_xml(
    sender: &mut Sender,
    host: SocketAddr,
    path: &str,
    body: String,
) -> anyhow::Result<(u16, Bytes)> {
    let request = hyper::Request::post(path)
        .header(hyper::header::HOST, host.to_string())
        .header(hyper::header::CONTENT_TYPE, "text/xml; charset=utf-8")
        .body(Full::new(Bytes::from(body)))?;
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

async fn post(
    sender: &mut Sender,
    load: &EwsLoad,
    target: &Target,
    n: u64,
) -> anyhow::Result<(u16, Bytes)> {
    let body = notification(load.shape, target, n);
    post_xml(sender, load.gateway, &target.path, body).await
}

pub async fn run(load: EwsLoad) -> anyhow::Result<(Summary, Arc<Answers>)> {
    anyhow::ensure!(!load.targets.is_empty(), "no targets to send to");
    let load = Arc::new(load);
    let histogram = Arc::new(Mutex::new(latency_histogram()));
    let answers = Arc::new(Answers::default());
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + load.max_duration;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..load.connections.max(1) {
        let (load, histogram, answers, next) = (
            load.clone(),
            histogram.clone(),
            answers.clone(),
            next.clone(),
        );
        workers.spawn(async move {
            let mut sender: Option<Sender> = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= load.count || Instant::now() >= deadline {
                    return;
                }
                let due = match load.rate {
                    Some(rate) => started + Duration::from_secs_f64(i as f64 / rate),
                    None => Instant::now(),
                };
                tokio::time::sleep_until(due.into()).await;
                if sender.is_none() {
                    sender = connect(load.gateway).await.ok();
                }
                let target = &load.targets[(i % load.targets.len() as u64) as usize];
                let result = match sender.as_mut() {
                    Some(s) => post(s, &load, target, i).await,
                    None => Err(anyhow::anyhow!("cannot connect")),
                };
                let micros = due.elapsed().as_micros().max(1) as u64;
                match result {
                    Ok((200, body)) if contains(&body, b">OK<") => {
                        answers.ok.fetch_add(1, Ordering::Relaxed);
                        let _ = histogram.lock().await.record(micros.min(60_000_000));
                    }
                    Ok((200, body)) if contains(&body, b">Unsubscribe<") => {
                        answers.unsubscribe.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {
                        answers.other_status.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        answers.transport.fetch_add(1, Ordering::Relaxed);
                        sender = None;
                    }
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let latency = Arc::try_unwrap(histogram)
        .map(Mutex::into_inner)
        .unwrap_or_else(|_| latency_histogram());
    let errors = answers.unsubscribe.load(Ordering::Relaxed)
        + answers.other_status.load(Ordering::Relaxed)
        + answers.transport.load(Ordering::Relaxed);
    let summary = Summary {
        ok: answers.ok.load(Ordering::Relaxed),
        errors,
        elapsed: started.elapsed(),
        latency,
    };
    Ok((summary, answers))
}

pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
