//! The HTTP side: one route, `POST /ews/v1/{home_region}/{token}`, behind an HTTP/1.1
//! server with a header read timeout, small per-connection buffers, a connection cap, and
//! a cap per source address.

use std::future::Future;
use std::io;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::routing::post;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

use crate::config::GatewayConfig;
use crate::edge::{Edge, FORGET_EVERY};
use crate::handler::{Peer, notify};
use crate::metrics::GatewayMetrics;
use crate::parse::Limits;
use crate::sink::NotificationSink;

/// Most bytes hyper buffers per connection (headers, and body not yet handed over): what a
/// connection that sends and never finishes costs at most.
const CONNECTION_BUFFER: usize = 16 * 1024;

/// Everything a request handler needs.
#[derive(Debug)]
pub struct Gateway<S> {
    pub(crate) config: GatewayConfig,
    pub(crate) limits: Limits,
    pub(crate) sink: S,
    pub(crate) metrics: GatewayMetrics,
    pub(crate) edge: Edge,
    /// HTTPS, when the gateway ends TLS itself.
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    /// Each request gets a span (the root of its trace), when traces are exported.
    pub(crate) request_spans: bool,
}

impl<S: NotificationSink> Gateway<S> {
    /// A gateway for `config` handing requests to `sink`, with the parser's default caps.
    pub fn new(config: GatewayConfig, sink: S, metrics: GatewayMetrics) -> Self {
        let edge = Edge::new(&config, &metrics);
        Self {
            config,
            limits: Limits::default(),
            sink,
            metrics,
            edge,
            tls: None,
            request_spans: false,
        }
    }

    /// The same gateway opening a span (`ews.notification`) per request: for a process
    /// that exports traces.
    #[must_use]
    pub fn with_request_spans(mut self) -> Self {
        self.request_spans = true;
        self
    }

    /// The same gateway serving HTTPS with `tls` (see [`crate::tls::server_config`]).
    #[must_use]
    pub fn with_tls(mut self, tls: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The same gateway with other parser caps.
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn sink(&self) -> &S {
        &self.sink
    }
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
        .max_buf_size(CONNECTION_BUFFER)
        .keep_alive(true);
    let http = Arc::new(http);
    let header_timeout = gateway.config.header_timeout;
    let tls = gateway.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let sources = gateway.edge.sources.clone();
    let metrics = gateway.metrics.clone();
    let forget = tokio::spawn(forget_idle(gateway.clone()));
    let app = router(gateway);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit.map_err(io::Error::other)?,
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "gateway accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(counted) = sources.connect(peer.ip()) else {
            // Closed at once: a source holding its share waits for none of ours.
            metrics.reject("source_connections");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service =
            TowerToHyperService::new(app.clone().map_request(move |mut r: Request<_>| {
                r.extensions_mut().insert(Peer(peer));
                r
            }));
        let open = metrics.connections.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let http = http.clone();
        let handshake_failed = metrics.clone();
        open.inc();
        tokio::spawn(async move {
            // A client that goes away mid-request is not our error.
            match tls {
                None => {
                    let _ = watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await;
                }
                Some(acceptor) => {
                    // The handshake counts against the header timeout: a client that
                    // opens and stalls holds its connection slot only that long.
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let _ = watcher
                                .watch(http.serve_connection(TokioIo::new(stream), service))
                                .await;
                        }
                        Ok(Err(_)) | Err(_) => handshake_failed.reject("tls_handshake"),
                    }
                }
            }
            open.dec();
            drop((counted, permit));
        });
    }
    drop(listener);
    forget.abort();
    graceful.shutdown().await;
    Ok(())
}

/// Forgets idle sources and tokens in the rate limiters, for as long as the gateway serves.
async fn forget_idle<S>(gateway: Arc<Gateway<S>>) {
    let mut every = tokio::time::interval(FORGET_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        gateway.edge.rates.forget_idle();
    }
}
