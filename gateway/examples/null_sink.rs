//! The gateway with a sink that accepts everything: what parsing and answering cost on their
//! own, for `herald-loadtest ews` to measure against.
//!
//! `cargo run --release -p herald-gateway --example null_sink -- 127.0.0.1:8088`

use std::sync::Arc;

use herald_gateway::{AcceptAll, Gateway, GatewayConfig, GatewayMetrics, serve};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8088".to_owned());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("null-sink gateway on {}", listener.local_addr()?);
    // A baseline for load tests from one address: no per-source or per-URL limits.
    let config = GatewayConfig {
        source_requests_per_second: 0,
        max_connections_per_source: 0,
        token_requests_per_second: 0,
        ..GatewayConfig::default()
    };
    let gateway = Arc::new(Gateway::new(config, AcceptAll, GatewayMetrics::default()));
    serve(listener, gateway, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
