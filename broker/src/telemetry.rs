//! Logs and traces: `tracing` to stderr as text or JSON, and optionally an OTLP/gRPC trace
//! exporter.
//!
//! A notification is one trace: the gateway's `ews.notification` span (the root), the
//! actor's `subscription.apply` and its `store.write`, and later the burst's
//! `subscription.flush` (a child of the notification that started the burst, linked to the
//! others coalesced into it) with the provider's `push.send`. A request forwarded to the
//! node holding its shard carries the W3C `traceparent` in its gRPC metadata, and every gRPC
//! call continues the caller's trace when it sends one. The root spans carry a `trace_id`
//! field, so the log lines written inside them name their trace.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::{SpanContext, TraceContextExt as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{Config, LogFormat};

/// Whether spans are exported: the spans of a notification's path are created only then
/// (they cost the hot path a few per cent otherwise, for logs that name no trace).
static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process exports traces (see [`init`]).
pub fn exporting() -> bool {
    EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
}

/// Keeps the trace exporter alive; flushes it when dropped.
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            tracing::warn!(error = %err, "trace exporter did not shut down cleanly");
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("telemetry.log_filter: {0}")]
    Filter(String),
    #[error("telemetry.otlp_endpoint: {0}")]
    Otlp(String),
    #[error("a global subscriber is already installed: {0}")]
    Install(String),
}

/// What the traces say about the process that sends them.
fn resource(config: &Config) -> Resource {
    Resource::builder()
        .with_service_name("herald")
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("service.instance.id", config.node.id.clone()),
            KeyValue::new("cloud.region", config.node.region.clone()),
        ])
        .build()
}

/// Installs the global subscriber, logging to stderr, and the trace exporter when
/// `telemetry.otlp_endpoint` is set. `RUST_LOG`, when set, replaces `telemetry.log_filter`.
pub fn init(config: &Config) -> Result<TelemetryGuard, TelemetryError> {
    // Colours for a person at a terminal, not for a log collector.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    init_with(config, std::io::stderr, ansi)
}

/// [`init`], logging to `logs`, in colour with `ansi`.
pub fn init_with<W>(config: &Config, logs: W, ansi: bool) -> Result<TelemetryGuard, TelemetryError>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let telemetry = &config.telemetry;
    let directives = match std::env::var("RUST_LOG") {
        Ok(raw) if !raw.is_empty() => raw,
        _ => telemetry.log_filter.clone(),
    };
    let filter = EnvFilter::try_new(quiet_handshakes(directives))
        .map_err(|e| TelemetryError::Filter(e.to_string()))?;

    let (otel_layer, provider) = match &telemetry.otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .map_err(|e| TelemetryError::Otlp(e.to_string()))?;
            // Decided by trace id alone, so that every span of a trace (on every node that
            // shares the ratio) is kept or dropped together, whatever a caller's
            // `traceparent` asks (only authenticated callers' are continued).
            let sampler = Sampler::TraceIdRatioBased(telemetry.trace_sample_ratio);
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_sampler(sampler)
                .with_resource(resource(config))
                .build();
            let tracer = provider.tracer("herald");
            // ractor runs every actor inside a span as long as the actor lives: not a
            // trace worth exporting.
            let layer = tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                    !meta.target().starts_with("ractor")
                }));
            (Some(layer), Some(provider))
        }
        None => (None, None),
    };

    let registry = tracing_subscriber::registry().with(filter).with(otel_layer);
    let installed = match telemetry.log_format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(ansi)
                    .with_writer(logs),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().with_writer(logs))
            .try_init(),
    };
    installed.map_err(|e| TelemetryError::Install(e.to_string()))?;
    EXPORTING.store(provider.is_some(), std::sync::atomic::Ordering::Relaxed);
    Ok(TelemetryGuard { provider })
}

/// `directives`, with rustls's own logs kept to errors unless they name rustls: anyone who
/// reaches a TLS listener could otherwise write a warning per malformed handshake.
fn quiet_handshakes(directives: String) -> String {
    if directives.contains("rustls") {
        directives
    } else if directives.trim().is_empty() {
        "rustls=error".to_owned()
    } else {
        format!("{directives},rustls=error")
    }
}

/// Records `span`'s trace id in its `trace_id` field (the span must declare it), so that
/// the log lines written inside it name the trace. Nothing without a trace exporter.
pub(crate) fn stamp_trace_id(span: &tracing::Span) {
    let context = span.context();
    let trace = context.span().span_context().clone();
    if trace.is_valid() && trace.is_sampled() {
        span.record("trace_id", tracing::field::display(trace.trace_id()));
    }
}

/// The trace position of `span`, to continue its trace later (from another task); an
/// invalid one without a trace exporter.
pub(crate) fn position(span: &tracing::Span) -> SpanContext {
    span.context().span().span_context().clone()
}

/// Makes `span` (not entered yet) a child of `parent`, which may have ended, and links it
/// to `links`.
pub(crate) fn continue_from(span: &tracing::Span, parent: &SpanContext, links: &[SpanContext]) {
    if parent.is_valid() {
        let _ = span.set_parent(Context::new().with_remote_span_context(parent.clone()));
    }
    for link in links {
        span.add_link(link.clone());
    }
}

/// The span of one admitted gRPC call (`path`): a child of the caller's trace when it
/// sends a W3C `traceparent` (a forwarding node does), so that a forwarded notification or
/// a service's call is one trace. None for health checks and reflection, or when traces are
/// not exported.
pub(crate) fn call_span(path: &str, headers: &http::HeaderMap) -> tracing::Span {
    if !exporting() || path.starts_with("/grpc.") {
        return tracing::Span::none();
    }
    let span = tracing::info_span!("grpc.request", path, trace_id = tracing::field::Empty);
    let caller = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let _ = span.set_parent(caller);
    stamp_trace_id(&span);
    span
}

/// Writes the current span's trace position into a gRPC request's metadata
/// (`traceparent`), for the called node to continue the trace.
pub(crate) fn inject_current(metadata: &mut tonic::metadata::MetadataMap) {
    let context = tracing::Span::current().context();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, &mut MetadataInjector(metadata));
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            value.parse(),
        ) {
            self.0.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_logs_only_errors_unless_the_filter_says_otherwise() {
        assert_eq!(quiet_handshakes("info".into()), "info,rustls=error");
        assert_eq!(quiet_handshakes(String::new()), "rustls=error");
        assert_eq!(
            quiet_handshakes("debug,rustls=debug".into()),
            "debug,rustls=debug"
        );
    }
}
