//! Logs and traces: `tracing` to stderr as text or JSON, and optionally an OTLP/gRPC trace
//! exporter.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{LogFormat, TelemetryConfig};

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

/// Installs the global subscriber. `RUST_LOG`, when set, replaces `telemetry.log_filter`.
pub fn init(config: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(raw) if !raw.is_empty() => EnvFilter::try_new(raw),
        _ => EnvFilter::try_new(&config.log_filter),
    }
    .map_err(|e| TelemetryError::Filter(e.to_string()))?;

    let (otel_layer, provider) = match &config.otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .map_err(|e| TelemetryError::Otlp(e.to_string()))?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .build();
            let tracer = provider.tracer("herald");
            (
                Some(tracing_opentelemetry::layer().with_tracer(tracer)),
                Some(provider),
            )
        }
        None => (None, None),
    };

    let registry = tracing_subscriber::registry().with(filter).with(otel_layer);
    let installed = match config.log_format {
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    installed.map_err(|e| TelemetryError::Install(e.to_string()))?;
    Ok(TelemetryGuard { provider })
}
