//! Three regions with real processes: for each, a Redis primary of its home, replicas of the
//! other two homes and `herald serve` nodes, on loopback. A notification for a home not
//! served where it arrives is answered 503, never `Unsubscribe`; a lost region's home is
//! promoted in a survivor and served there with nothing older than the replication lag
//! lost, then moved back; a region cut off stops writing and pushing for its home.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod failover;
#[allow(dead_code)]
#[path = "../cluster/harness.rs"]
mod harness;
mod partition;
mod proxy;
mod routing;
mod world;

use harness::{Device, Node};
use herald_workers::PushRequest;

/// [`harness::post`] that tells a node gone (connection refused or reset) as `None`.
pub(crate) async fn try_post(
    gateway: std::net::SocketAddr,
    path: &str,
    body: &[u8],
) -> Option<harness::Told> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let request = herald_gateway::testsuite::post_request(gateway, path, Some("text/xml"), body);
    let mut stream = tokio::net::TcpStream::connect(gateway).await.ok()?;
    stream.write_all(&request).await.ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.ok()?;
    let text = String::from_utf8_lossy(&raw);
    let status: u16 = text.split(' ').nth(1)?.parse().ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    let soap = herald_gateway::testsuite::soap_status(body.as_bytes()).map(|(_, s)| s);
    Some(match (status, soap.as_deref()) {
        (200, Some("OK")) => harness::Told::Ok,
        (503, _) => harness::Told::Unavailable,
        _ => harness::Told::Other,
    })
}

/// One world at a time: each is a dozen processes with second-scale timing on two cores.
pub(crate) static ONE_WORLD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits until `node` pushed `badge` to every device of `devices`; returns its pushes.
pub(crate) async fn pushed_by(node: &Node, devices: &[Device], badge: u32) -> Vec<PushRequest> {
    harness::pushed_in(|| node.sent(), devices, badge).await
}

/// The burst fixture for `device`, with Inbox unread count `unread` and watermarks of its
/// own `phase` (a later phase's are new to Herald, so they are applied, not deduplicated).
pub(crate) fn burst_of(device: &Device, unread: u32, phase: char) -> Vec<u8> {
    let body = String::from_utf8(harness::burst(device)).unwrap();
    assert!(
        body.contains("<t:UnreadCount>4</t:UnreadCount>"),
        "fixture shape"
    );
    body.replace(
        "<t:UnreadCount>4</t:UnreadCount>",
        &format!("<t:UnreadCount>{unread}</t:UnreadCount>"),
    )
    .replace(
        "AQAAAJ6Xmtv4ya7Fg7VYBjxa5Q",
        &format!("AQAAAJ6Xmtv4ya7Fg7VYBjx{phase}5Q"),
    )
    .into_bytes()
}
