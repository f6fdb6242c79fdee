//! Floods at the gateway: thousands of connections that send headers and a large body with
//! a random callback token and then hold the rest back, and thousands of connections that
//! never finish their headers. The node's memory stays bounded and registered devices keep
//! being answered.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use herald_broker::testsuite::RedisServer;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpSocket;
use tokio::sync::watch;

use crate::harness::{
    Device, LOOSE_EDGE, Node, Site, TEST_TIMING, Told, heartbeat, post, post_until_ok,
    register_through,
};
use crate::{mib, quantile};

/// Attacking connections open at once, and the addresses they come from (each under the
/// default per-source cap of 512). `HERALD_FLOOD_CONNECTIONS` sets another size.
const CONNECTIONS: usize = 5_000;
const SOURCES: u8 = 10;
/// How long each flood lasts.
const ATTACK: Duration = Duration::from_secs(8);
/// What a flood may add to the node's resident memory.
const RSS_BOUND: u64 = 256 * 1024 * 1024;

fn connections() -> usize {
    std::env::var("HERALD_FLOOD_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CONNECTIONS)
}

fn source(i: usize) -> IpAddr {
    IpAddr::from([127, 0, 1, 1 + (i % usize::from(SOURCES)) as u8])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_leave_memory_bounded_and_registered_devices_answered() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let site = Site {
        region: "us-east-1".to_owned(),
        redis_url: redis.url(),
        redis_cluster: false,
        homes: Vec::new(),
        timing: TEST_TIMING,
    };
    let mut node = Node::new(dir.path(), "flood", &site);
    // The gateway on its defaults, per-source and per-URL limits included.
    let config = std::fs::read_to_string(node.config()).unwrap();
    std::fs::write(node.config(), config.replace(LOOSE_EDGE, "")).unwrap();
    node.start().await;
    let node = &node;
    let devices = register_through(&[node], 20, "flood").await;
    for device in &devices {
        post_until_ok(node.gateway, &device.path, &heartbeat(device)).await;
    }
    let tokens = Arc::new(attack_tokens(&devices));
    let before = node.rss_bytes();

    let slow = measure(node, &devices, |i, stop| {
        slow_body(node.gateway, source(i), tokens.clone(), i, stop)
    })
    .await;
    let idle = measure(node, &devices, |i, stop| {
        idle_headers(node.gateway, source(i), stop)
    })
    .await;

    for (name, flood) in [("slow-body", &slow), ("header", &idle)] {
        eprintln!(
            "{name} flood, {} connections from {SOURCES} addresses for {ATTACK:?}: {} connections made; node RSS {:.0} MiB before, {:.0} MiB at most during (+{:.0} MiB); legitimate notifications: {} answered OK, {} 503, p50 {:?}, p99 {:?}, max {:?}",
            connections(),
            flood.connections_made,
            mib(before),
            mib(flood.peak_rss),
            mib(flood.peak_rss.saturating_sub(before)),
            flood.ok,
            flood.unavailable,
            flood.p50,
            flood.p99,
            flood.max,
        );
        assert!(
            flood.peak_rss.saturating_sub(before) <= RSS_BOUND,
            "{name} flood grew the node by {:.0} MiB",
            mib(flood.peak_rss - before)
        );
        assert!(flood.ok > 0, "{name} flood: no notification answered");
        assert!(
            flood.unavailable * 20 <= flood.ok,
            "{name} flood: {} of {} legitimate notifications were 503",
            flood.unavailable,
            flood.ok + flood.unavailable
        );
    }
    assert!(
        slow.connections_made >= connections() as u64,
        "the slow-body flood did not reach its size"
    );
}

/// Random tokens: half of any shape, half a registered device's with a wrong secret (the
/// costlier kind: its registration is read before the secret is refused).
fn attack_tokens(devices: &[Device]) -> Vec<String> {
    (0..1024)
        .map(|i| {
            let real = devices[i % devices.len()].path.rsplit('/').next().unwrap();
            let mut bytes = URL_SAFE_NO_PAD.decode(real).unwrap();
            if i.is_multiple_of(2) {
                let id_bytes = 16;
                for b in &mut bytes[id_bytes..] {
                    *b = fastrand::u8(..);
                }
            } else {
                for b in &mut bytes {
                    *b = fastrand::u8(..);
                }
            }
            URL_SAFE_NO_PAD.encode(bytes)
        })
        .collect()
}

/// What one flood did.
struct Flood {
    connections_made: u64,
    peak_rss: u64,
    ok: usize,
    unavailable: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

/// Runs `attacker` on [`connections`] tasks for [`ATTACK`] while a registered device's
/// heartbeat is posted every 20 ms and the node's memory sampled.
async fn measure<F, Fut>(node: &Node, devices: &[Device], attacker: F) -> Flood
where
    F: Fn(usize, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = u64> + Send + 'static,
{
    let (stop, stopped) = watch::channel(false);
    let attackers: Vec<_> = (0..connections())
        .map(|i| tokio::spawn(attacker(i, stopped.clone())))
        .collect();
    let started = Instant::now();
    let (mut latencies, mut unavailable, mut peak_rss) = (Vec::new(), 0, 0);
    let mut i = 0;
    while started.elapsed() < ATTACK {
        peak_rss = peak_rss.max(node.rss_bytes());
        let device = &devices[i % devices.len()];
        i += 1;
        let sent = Instant::now();
        let told = tokio::time::timeout(
            Duration::from_secs(10),
            post(node.gateway, &device.path, &heartbeat(device)),
        )
        .await
        .unwrap_or(Told::Unavailable);
        match told {
            Told::Ok => latencies.push(sent.elapsed()),
            Told::Unavailable => unavailable += 1,
            Told::Other => panic!("a registered device was told something other than OK or 503"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    peak_rss = peak_rss.max(node.rss_bytes());
    stop.send_replace(true);
    let connections_made = AtomicU64::new(0);
    for attacker in attackers {
        connections_made.fetch_add(attacker.await.unwrap(), Ordering::Relaxed);
    }
    Flood {
        connections_made: connections_made.into_inner(),
        peak_rss,
        ok: latencies.len(),
        unavailable,
        p50: quantile(&mut latencies, 0.5),
        p99: quantile(&mut latencies, 0.99),
        max: quantile(&mut latencies, 1.0),
    }
}

/// Connects from `from`, or `None` once stopped.
async fn connect(
    gateway: SocketAddr,
    from: IpAddr,
    stop: &mut watch::Receiver<bool>,
) -> Option<tokio::net::TcpStream> {
    loop {
        if *stop.borrow() {
            return None;
        }
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from, 0)).unwrap();
        tokio::select! {
            connected = socket.connect(gateway) => match connected {
                Ok(stream) => return Some(stream),
                // The backlog is full: try again shortly, as an attacker would.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            _ = stop.changed() => return None,
        }
    }
}

/// Sends the headers and up to 1 MiB of body (declared, or chunked) with a random token,
/// holds the rest back, and starts again as soon as the node closes the connection.
async fn slow_body(
    gateway: SocketAddr,
    from: IpAddr,
    tokens: Arc<Vec<String>>,
    i: usize,
    mut stop: watch::Receiver<bool>,
) -> u64 {
    let piece = vec![b' '; 16 * 1024];
    let mut made = 0;
    let mut n = i;
    while let Some(stream) = connect(gateway, from, &mut stop).await {
        made += 1;
        n += connections();
        let token = &tokens[n % tokens.len()];
        let chunked = n.is_multiple_of(2);
        let framing = if chunked {
            "Transfer-Encoding: chunked".to_owned()
        } else {
            "Content-Length: 200000".to_owned()
        };
        let head = format!(
            "POST /ews/v1/us-east-1/{token} HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n{framing}\r\n\r\n"
        );
        let (mut reader, mut writer) = stream.into_split();
        let send = async {
            writer.write_all(head.as_bytes()).await?;
            for _ in 0..64 {
                if chunked {
                    writer.write_all(b"4000\r\n").await?;
                }
                writer.write_all(&piece).await?;
                if chunked {
                    writer.write_all(b"\r\n").await?;
                }
            }
            std::future::pending::<std::io::Result<()>>().await
        };
        let closed = async {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        };
        tokio::select! {
            _ = send => {}
            () = closed => {}
            _ = stop.changed() => break,
        }
        // A pause before the next connection keeps the churn within what two cores carry.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    made
}

/// Opens a connection, sends half a request head and holds it.
async fn idle_headers(gateway: SocketAddr, from: IpAddr, mut stop: watch::Receiver<bool>) -> u64 {
    let mut made = 0;
    while let Some(mut stream) = connect(gateway, from, &mut stop).await {
        made += 1;
        let _ = stream
            .write_all(b"POST /ews/v1/us-east-1/x HTTP/1.1\r\nHost: x\r\n")
            .await;
        let mut buf = [0u8; 1024];
        tokio::select! {
            _ = stream.read(&mut buf) => {}
            _ = stop.changed() => break,
        }
    }
    made
}
