//! A TCP proxy the test controls: the replication links between regions (and, in the fault
//! tests, a node's link to its Redis) run through it, so a test can cut the link (every
//! connection closed, new ones refused) and heal it, or slow it down.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub(crate) struct Proxy {
    pub(crate) port: u16,
    cut: watch::Sender<bool>,
    delay: watch::Sender<Duration>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Forwards a free loopback port to `target`.
    pub(crate) async fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, _) = watch::channel(false);
        let (delay, _) = watch::channel(Duration::ZERO);
        let (watch, delays) = (cut.clone(), delay.clone());
        let task = tokio::spawn(async move {
            let target = SocketAddr::from(([127, 0, 0, 1], target));
            while let Ok((inbound, _)) = listener.accept().await {
                let mut is_cut = watch.subscribe();
                if *is_cut.borrow() {
                    drop(inbound);
                    continue;
                }
                let (up, down) = (delays.subscribe(), delays.subscribe());
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (from_client, to_client) = inbound.into_split();
                    let (from_server, to_server) = outbound.into_split();
                    tokio::select! {
                        () = pump(from_client, to_server, up) => {}
                        () = pump(from_server, to_client, down) => {}
                        _ = is_cut.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        Self {
            port,
            cut,
            delay,
            task,
        }
    }

    /// Closes every connection and refuses new ones until [`heal`](Self::heal).
    pub(crate) fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub(crate) fn heal(&self) {
        self.cut.send_replace(false);
    }

    /// Holds every chunk, each way, `delay` before passing it on (zero: none).
    #[allow(dead_code, reason = "the fault tests, which share this proxy, use it")]
    pub(crate) fn slow_down(&self, delay: Duration) {
        self.delay.send_replace(delay);
    }
}

/// Copies `from` to `to`, holding each chunk for the current delay.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: watch::Receiver<Duration>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let held = *delay.borrow();
        if !held.is_zero() {
            tokio::time::sleep(held).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
