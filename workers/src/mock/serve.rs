//! The mocks' listeners: TLS (HTTP/2, or HTTP/2 and HTTP/1.1) with per-connection state,
//! and plain HTTP for token and control endpoints.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::{Extension, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;

use super::MockError;
use super::script::{Fault, delay};

/// What one client connection carries between its requests.
#[derive(Debug, Default)]
pub(crate) struct Connection {
    /// Notified to close the connection without answering.
    pub(crate) drop: Notify,
    /// Notified to send GOAWAY and let the connection end once its streams are answered.
    pub(crate) goaway: Notify,
    /// The connection's socket, to make its close a reset (`SO_LINGER` 0).
    socket: Option<std::net::TcpStream>,
    /// APNs pins one team and tracks the provider token per connection.
    pub(crate) auth: Mutex<Option<ConnectionAuth>>,
    /// The client certificate presented at the handshake (DER), if any.
    pub(crate) client_certificate: Option<Vec<u8>>,
}

#[derive(Clone, Debug)]
pub(crate) struct ConnectionAuth {
    pub(crate) team: String,
    pub(crate) jwt: String,
    pub(crate) iat: u64,
}

/// Binds `127.0.0.1:port` (0: any free port).
pub(crate) async fn bind(port: u16) -> Result<(TcpListener, SocketAddr), MockError> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| MockError::Io(format!("cannot listen on 127.0.0.1:{port}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| MockError::Io(e.to_string()))?;
    Ok((listener, addr))
}

/// Serves `router` over TLS until `stop` turns true.
pub(crate) fn spawn_tls(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    router: Router,
    http2_only: bool,
    max_streams: u32,
    accepted: Arc<std::sync::atomic::AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    tokio::spawn(async move {
        loop {
            let tcp = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(error) => {
                        tracing::warn!(%error, "mock: accept failed");
                        continue;
                    }
                },
                _ = stop.changed() => return,
            };
            let _ = tcp.set_nodelay(true);
            let Ok((tcp, socket)) = with_handle(tcp) else {
                continue;
            };
            accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (acceptor, router, mut stop) = (acceptor.clone(), router.clone(), stop.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let connection = Arc::new(Connection {
                    client_certificate: stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .map(|cert| cert.to_vec()),
                    socket,
                    ..Connection::default()
                });
                let service = TowerToHyperService::new(router.layer(Extension(connection.clone())));
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder.http2().max_concurrent_streams(max_streams);
                if http2_only {
                    builder = builder.http2_only();
                }
                let serving = builder.serve_connection(TokioIo::new(stream), service);
                tokio::pin!(serving);
                loop {
                    tokio::select! {
                        _ = serving.as_mut() => break,
                        () = connection.drop.notified() => break,
                        () = connection.goaway.notified() => serving.as_mut().graceful_shutdown(),
                        _ = stop.changed() => break,
                    }
                }
            });
        }
    });
}

/// `tcp`, and a second handle on its socket (to set options after tokio-rustls and hyper
/// own the first; none if the descriptor cannot be duplicated).
fn with_handle(
    tcp: tokio::net::TcpStream,
) -> std::io::Result<(tokio::net::TcpStream, Option<std::net::TcpStream>)> {
    let std = tcp.into_std()?;
    let handle = std.try_clone().ok();
    Ok((tokio::net::TcpStream::from_std(std)?, handle))
}

impl Connection {
    /// Carries out the faults that come before an answer — a delay, a GOAWAY sent while
    /// the stream is open — and returns the one that replaces the answer, if any.
    pub(crate) async fn before_answer(&self, fault: Option<Fault>) -> Option<Fault> {
        match fault {
            Some(Fault::DelayMs(ms)) => {
                tokio::time::sleep(delay(ms)).await;
                None
            }
            Some(Fault::Goaway) => {
                self.goaway.notify_one();
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                None
            }
            other => other,
        }
    }

    /// Makes the connection's close a reset, then closes it.
    pub(crate) fn reset(&self) {
        if let Some(socket) = &self.socket {
            let _ = socket2::SockRef::from(socket).set_linger(Some(std::time::Duration::ZERO));
        }
        self.drop.notify_one();
    }
}

/// Serves `router` over plain HTTP until `stop` turns true.
pub(crate) fn spawn_plain(listener: TcpListener, router: Router, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.changed().await;
        };
        if let Err(error) = axum::serve(listener, router)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::warn!(%error, "mock: plain listener failed");
        }
    });
}
