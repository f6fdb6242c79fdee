//! `POST /ews/v1/{home_region}/{token}`: what a request costs is decided before its body is
//! read — the source's rate, the content type and declared length, the callback URL (an
//! unknown one is answered without reading more than a few kilobytes) and the URL's rate —
//! then the body is read within its bounds and the budget of body bytes in flight, parsed,
//! and handed to the sink.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::Instrument as _;

use crate::answer::{SubscriptionStatus, soap_answer};
use crate::edge::{BodyError, discard, read_body};
use crate::metrics::{AnswerLabels, GatewayMetrics, RequestLabels, VerdictLabels};
use crate::model::{SendNotification, SoapVersion};
use crate::parse::parse;
use crate::server::Gateway;
use crate::sink::{Admission, Callback, NotificationSink, Outcome, combine};

/// The TCP peer of a request's connection, which `serve` sets on every request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer(pub(crate) SocketAddr);

/// An answer and the labels it is counted under.
type Answered = (StatusCode, &'static str, Response);

pub(crate) async fn notify<S: NotificationSink>(
    State(gateway): State<Arc<Gateway<S>>>,
    Path((home_region, token)): Path<(String, String)>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let peer = peer.map(|Extension(Peer(addr))| addr);
    // The root of the notification's trace. The sink fills in `home` once it knows it is
    // one it serves (the URL's text is the caller's) and `trace_id` when traces are
    // exported, so that log lines written while it is handled name the trace.
    let span = if gateway.request_spans {
        tracing::info_span!(
            "ews.notification",
            home = tracing::field::Empty,
            answer = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        )
    } else {
        tracing::Span::none()
    };
    let callback = Callback::new(home_region, token);
    let (status, answer, response) = answer(&gateway, peer, &callback, &headers, body)
        .instrument(span.clone())
        .await;
    let kind = match (status, answer) {
        (StatusCode::OK, "ok") => "ok",
        (StatusCode::OK, _) => "unsubscribe",
        (StatusCode::SERVICE_UNAVAILABLE, _) => "unavailable",
        (StatusCode::FORBIDDEN, _) => "forbidden",
        _ => "refused",
    };
    span.record("answer", kind);
    span.in_scope(|| tracing::debug!(status = status.as_u16(), "answered Exchange"));
    gateway
        .metrics
        .request_seconds
        .get_or_create(&AnswerLabels { answer: kind })
        .observe(started.elapsed().as_secs_f64());
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

async fn answer<S: NotificationSink>(
    gateway: &Gateway<S>,
    peer: Option<SocketAddr>,
    callback: &Callback,
    headers: &HeaderMap,
    body: Body,
) -> Answered {
    let edge = &gateway.edge;
    let metrics = &gateway.metrics;
    if let Some(peer) = peer {
        let source = edge.sources.client(peer.ip(), headers);
        if !edge.sources.is_exempt(source) && !edge.rates.source_allows(source) {
            return refuse(
                metrics,
                Refusal::too_many("source_rate", "this source"),
                false,
            );
        }
    }
    if let Err(refusal) = check_content_type(headers) {
        return refuse(metrics, refusal, false);
    }
    let cap = gateway.config.max_body;
    let declared = declared_length(headers);
    if declared.is_some_and(|len| len > cap) {
        return refuse(metrics, too_large(cap), false);
    }
    let admitted = match gateway.sink.admit(callback).await {
        Admission::Known(admitted) => admitted,
        Admission::Unknown => {
            let whole = discard(body, declared, edge.body).await;
            let soap = soap_of(headers);
            return closing(
                respond(soap, Outcome::Answer(SubscriptionStatus::Unsubscribe)),
                whole,
            );
        }
        Admission::Unavailable => {
            let whole = discard(body, declared, edge.body).await;
            return closing(respond(soap_of(headers), Outcome::Unavailable), whole);
        }
    };
    if !edge.rates.token_allows(callback.token()) {
        let whole = discard(body, declared, edge.body).await;
        return refuse(
            metrics,
            Refusal::too_many("token_rate", "this callback URL"),
            whole,
        );
    }
    // Bytes are paid for as they arrive: a body trickled in holds only what it has sent,
    // and the minimum rate cuts it.
    let mut held = edge.budget.hold();
    let bytes = match read_body(body, declared, edge.body, &edge.budget, &mut held).await {
        Ok(bytes) => bytes,
        Err(error) => return refuse(metrics, body_refusal(error, cap), false),
    };
    metrics.body_bytes.observe(bytes.len() as f64);
    let started = Instant::now();
    let parsed = parse(&bytes, &gateway.limits);
    metrics
        .parse_seconds
        .observe(started.elapsed().as_secs_f64());
    let request = match parsed {
        Ok(request) => request,
        Err(e) => {
            let refusal = Refusal::new(
                StatusCode::BAD_REQUEST,
                e.reason.as_str(),
                format!("rejected: {e}"),
            );
            return refuse(metrics, refusal, true);
        }
    };
    let soap = request.soap;
    let outcome = deliver(gateway, admitted, request).await;
    // The body's bytes are held until the request is answered.
    drop((bytes, held));
    respond(soap, outcome)
}

/// Hands a parsed request to the sink and combines its verdicts.
async fn deliver<S: NotificationSink>(
    gateway: &Gateway<S>,
    admitted: S::Admitted,
    request: SendNotification,
) -> Outcome {
    let messages = request.messages.len();
    let verdicts = gateway.sink.deliver(admitted, request).await;
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
fn respond(soap: SoapVersion, outcome: Outcome) -> Answered {
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

/// `answered`, closing its connection unless the request's body was read whole.
fn closing(mut answered: Answered, whole: bool) -> Answered {
    if !whole {
        answered
            .2
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    answered
}

/// The SOAP version of a request whose body was not read, from its content type: SOAP 1.2
/// is `application/soap+xml`; Exchange sends SOAP 1.1 as `text/xml`.
fn soap_of(headers: &HeaderMap) -> SoapVersion {
    let soap12 = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/soap+xml"));
    if soap12 {
        SoapVersion::V12
    } else {
        SoapVersion::V11
    }
}

fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
}

/// A refusal before the sink: status, metric reason, and a short text.
struct Refusal {
    status: StatusCode,
    reason: &'static str,
    text: String,
    /// Seconds after which the client may try again.
    retry_after: Option<u32>,
}

impl Refusal {
    fn new(status: StatusCode, reason: &'static str, text: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            text: text.into(),
            retry_after: None,
        }
    }

    fn too_many(reason: &'static str, whose: &str) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                reason,
                format!("too many requests for {whose}; retry later"),
            )
        }
    }
}

/// The answer to a refused request: a short text, counted by reason. `whole` says whether
/// the body was read to its end; if not, the connection cannot be reused.
fn refuse(metrics: &GatewayMetrics, refusal: Refusal, whole: bool) -> Answered {
    metrics.reject(refusal.reason);
    tracing::debug!(reason = refusal.reason, status = refusal.status.as_u16(), detail = %refusal.text, "ews request refused");
    let mut response = (refusal.status, format!("{}\n", refusal.text)).into_response();
    if let Some(seconds) = refusal.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    closing((refusal.status, "none", response), whole)
}

fn too_large(cap: usize) -> Refusal {
    Refusal::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the body is larger than {cap} bytes"),
    )
}

fn over_budget() -> Refusal {
    Refusal {
        retry_after: Some(1),
        ..Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "body_budget",
            "too many request bodies in flight; retry",
        )
    }
}

fn body_refusal(error: BodyError, cap: usize) -> Refusal {
    match error {
        BodyError::TooLarge => too_large(cap),
        BodyError::OverBudget => over_budget(),
        BodyError::TooSlow => Refusal::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_too_slow",
            "the body arrived too slowly",
        ),
        BodyError::TimedOut => Refusal::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "the body did not arrive in time",
        ),
        BodyError::Unreadable => Refusal::new(
            StatusCode::BAD_REQUEST,
            "body_read",
            "the body could not be read",
        ),
    }
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
