//! The HTTP side: one route, `POST /ews/v1/{home_region}/{token}`, behind an HTTP/1.1
//! server with a header read timeout, a body cap read before parsing, a body read timeout
//! and a connection cap.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::BodyExt as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::answer::{SubscriptionStatus, soap_answer};
use crate::config::GatewayConfig;
use crate::metrics::{GatewayMetrics, RequestLabels, VerdictLabels};
use crate::model::{SendNotification, SoapVersion};
use crate::parse::{Limits, parse};
use crate::sink::{Callback, NotificationSink, Outcome, combine};

/// Everything a request handler needs.
#[derive(Debug)]
pub struct Gateway<S> {
    pub config: GatewayConfig,
    pub limits: Limits,
    pub sink: S,
    pub metrics: GatewayMetrics,
}

/// The router: the one EWS route; other methods get 405 and other paths 404.
pub fn router<S: NotificationSink>(gateway: Arc<Gateway<S>>) -> Router {
    Router::new()
        .route("/ews/v1/{home_region}/{token}", post(notify::<S>))
        .with_state(gateway)
}

/// Serves `listener` until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve<S: NotificationSink>(
    listener: TcpListener,
    gateway: Arc<Gateway<S>>,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let connections = Arc::new(Semaphore::new(gateway.config.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(gateway.config.header_timeout)
        .keep_alive(true);
    let app = router(gateway);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit.map_err(io::Error::other)?,
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "gateway accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // A client that goes away mid-request is not our error.
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A refusal before the sink: status, metric reason, and a short text.
struct Refusal {
    status: StatusCode,
    reason: &'static str,
    text: String,
}

impl Refusal {
    fn new(status: StatusCode, reason: &'static str, text: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            text: text.into(),
        }
    }
}

async fn notify<S: NotificationSink>(
    State(gateway): State<Arc<Gateway<S>>>,
    Path((home_region, token)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (status, answer, response) = match read_and_parse(&gateway, &headers, body).await {
        Ok(request) => {
            let soap = request.soap;
            let outcome = deliver(&gateway, Callback::new(home_region, token), request).await;
            respond(soap, outcome)
        }
        Err(refusal) => refuse(&gateway.metrics, refusal),
    };
    gateway
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            status: status.as_u16(),
            answer,
        })
        .inc();
    response
}

/// Hands a parsed request to the sink and combines its verdicts.
async fn deliver<S: NotificationSink>(
    gateway: &Gateway<S>,
    callback: Callback,
    request: SendNotification,
) -> Outcome {
    let messages = request.messages.len();
    let verdicts = gateway.sink.deliver(&callback, request).await;
    for verdict in &verdicts {
        gateway
            .metrics
            .messages
            .get_or_create(&VerdictLabels {
                verdict: verdict.as_str(),
            })
            .inc();
    }
    combine(&verdicts, messages)
}

/// The HTTP answer for an outcome: status, the SOAP answer's metric label, the response.
fn respond(soap: SoapVersion, outcome: Outcome) -> (StatusCode, &'static str, Response) {
    match outcome {
        Outcome::Answer(status) => {
            let answer = match status {
                SubscriptionStatus::Ok => "ok",
                SubscriptionStatus::Unsubscribe => "unsubscribe",
            };
            let body = soap_answer(soap, status);
            let response = ([(header::CONTENT_TYPE, soap.content_type())], body).into_response();
            (StatusCode::OK, answer, response)
        }
        Outcome::Forbidden => (
            StatusCode::FORBIDDEN,
            "none",
            StatusCode::FORBIDDEN.into_response(),
        ),
        Outcome::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "none",
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily unavailable, retry\n",
            )
                .into_response(),
        ),
    }
}

/// The answer to a refused request: a short text, counted by reason.
fn refuse(metrics: &GatewayMetrics, refusal: Refusal) -> (StatusCode, &'static str, Response) {
    metrics.reject(refusal.reason);
    tracing::debug!(reason = refusal.reason, status = refusal.status.as_u16(), detail = %refusal.text, "ews request refused");
    let mut response = (refusal.status, format!("{}\n", refusal.text)).into_response();
    if refusal.status == StatusCode::PAYLOAD_TOO_LARGE
        || refusal.status == StatusCode::REQUEST_TIMEOUT
    {
        // The rest of the body is not read: the connection cannot be reused.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    (refusal.status, "none", response)
}

async fn read_and_parse<S>(
    gateway: &Gateway<S>,
    headers: &HeaderMap,
    body: Body,
) -> Result<SendNotification, Refusal> {
    check_content_type(headers)?;
    let cap = gateway.config.max_body;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > cap as u64) {
        return Err(too_large(cap));
    }
    let bytes = tokio::time::timeout(gateway.config.body_timeout, read_capped(body, cap))
        .await
        .map_err(|_| {
            Refusal::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the body did not arrive in time",
            )
        })??;
    gateway.metrics.body_bytes.observe(bytes.len() as f64);
    let started = Instant::now();
    let parsed = parse(&bytes, &gateway.limits);
    gateway
        .metrics
        .parse_seconds
        .observe(started.elapsed().as_secs_f64());
    parsed.map_err(|e| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            e.reason.as_str(),
            format!("rejected: {e}"),
        )
    })
}

fn too_large(cap: usize) -> Refusal {
    Refusal::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the body is larger than {cap} bytes"),
    )
}

/// XML media types and a missing header pass; anything else is 415.
fn check_content_type(headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let media = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    let xml = ["text/xml", "application/xml", "application/soap+xml"]
        .iter()
        .any(|t| media.eq_ignore_ascii_case(t));
    if xml {
        Ok(())
    } else {
        Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content_type",
            "the body must be XML (text/xml, application/xml or application/soap+xml)",
        ))
    }
}

/// Reads the body, stopping as soon as it passes `cap` bytes. A body that arrives in one
/// frame (the usual case) is not copied.
async fn read_capped(mut body: Body, cap: usize) -> Result<Bytes, Refusal> {
    let mut first: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "body_read",
                "the body could not be read",
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let so_far = first.as_ref().map_or(0, Bytes::len) + joined.len();
        if so_far + data.len() > cap {
            return Err(too_large(cap));
        }
        match first.take() {
            None if joined.is_empty() => first = Some(data),
            earlier => {
                if let Some(earlier) = earlier {
                    joined.extend_from_slice(&earlier);
                }
                joined.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| Bytes::from(joined)))
}
