//! Helpers for integration tests (feature `testsuite`): real `redis-server` processes on
//! free ports, a node started on loopback, and `eventually`.

// Test-only code: a failed set-up step should stop the test with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod ews;
mod gated;
mod logs;
mod node;
mod redis_cluster;
mod redis_server;

pub use ews::{Cast, Member, as_alice, callback_path, expected, expected_pushes, fixture};
pub use gated::GatedSender;
pub use logs::LogCapture;
pub use node::{
    ANDROID_APP, API_TOKEN, IOS_APP, TestNode, authed, example_apps_toml, registry_on,
    split_between, test_config, token_held_by,
};
pub use redis_cluster::RedisCluster;
pub use redis_server::RedisServer;

use std::future::Future;
use std::time::Duration;

/// Polls `check` until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plain HTTP/1.1 GET on loopback: `(status, body)`.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read answer");
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
