//! Several `herald serve` processes on one Redis, on loopback: start, kill (SIGKILL), pause
//! (SIGSTOP/SIGCONT), stop (SIGTERM); register through any node, post Exchange requests to
//! any node's gateway, read each node's recorded pushes and the cluster's status.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use herald_broker::testsuite::{callback_path, eventually, expected, fixture, http_get};
use herald_proto::v1::admin_client::AdminClient;
use herald_proto::v1::registrations_client::RegistrationsClient;
use herald_proto::v1::{ClusterStatusRequest, ClusterStatusResponse, Platform, RegisterRequest};
use herald_workers::{PushRequest, RecordingSender};

pub(crate) const TOKEN: &str = "cluster-test-token-0123456789";
const PEER_SECRET: &str = "cluster-test-peer-secret-0123456789";
/// The gateway limits the tests lift: one test process plays every Exchange server from
/// one address and replays notifications faster than Exchange would.
pub(crate) const LOOSE_EDGE: &str = "source_requests_per_second = 0\nmax_connections_per_source = 0\ntoken_requests_per_second = 0\n";

/// How fast the nodes heartbeat and how long their rows and leases last.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    pub(crate) heartbeat: Duration,
    pub(crate) member_ttl: Duration,
    pub(crate) lease_ttl: Duration,
}

/// Short enough for a test, in the proportions of the defaults.
pub(crate) const TEST_TIMING: Timing = Timing {
    heartbeat: Duration::from_millis(250),
    member_ttl: Duration::from_secs(2),
    lease_ttl: Duration::from_secs(3),
};

/// The defaults of `[cluster]`.
pub(crate) const DEFAULT_TIMING: Timing = Timing {
    heartbeat: Duration::from_secs(1),
    member_ttl: Duration::from_secs(5),
    lease_ttl: Duration::from_secs(6),
};

/// The `herald` binary the nodes run: `HERALD_BIN` (a release build, for measurements), or
/// this test's build.
fn herald_bin() -> String {
    std::env::var("HERALD_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_herald").to_owned())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where a node runs: its region, its region's Redis, and its copies of the other homes.
#[derive(Clone, Debug)]
pub(crate) struct Site {
    pub(crate) region: String,
    pub(crate) redis_url: String,
    pub(crate) redis_cluster: bool,
    /// `(home, url)` of this region's copy of each other home.
    pub(crate) homes: Vec<(String, String)>,
    pub(crate) timing: Timing,
}

/// One node's configuration and files.
pub(crate) struct Node {
    pub(crate) id: String,
    pub(crate) gateway: SocketAddr,
    pub(crate) grpc: SocketAddr,
    pub(crate) admin: SocketAddr,
    config: PathBuf,
    pub(crate) pushes: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    starts: usize,
}

impl Node {
    pub(crate) fn new(dir: &Path, id: &str, site: &Site) -> Self {
        let (gateway, grpc, admin) = (free_port(), free_port(), free_port());
        let (region, redis_url, redis_cluster, timing) = (
            &site.region,
            &site.redis_url,
            site.redis_cluster,
            site.timing,
        );
        let homes: String = site
            .homes
            .iter()
            .map(|(home, url)| format!("[homes.\"{home}\"]\nurl = \"{url}\"\n"))
            .collect();
        let pushes = dir.join(format!("{id}-pushes.jsonl"));
        let config = dir.join(format!("{id}.toml"));
        let text = format!(
            r#"
[node]
id = "{id}"
region = "{region}"
public_url = "https://push.example.test"
shutdown_grace = "10s"
[gateway]
listen = "127.0.0.1:{gateway}"
{LOOSE_EDGE}[grpc]
listen = "127.0.0.1:{grpc}"
[admin]
listen = "127.0.0.1:{admin}"
[redis]
url = "{redis_url}"
cluster = {redis_cluster}
[auth]
api_tokens = ["{TOKEN}"]
[cluster]
peer_secret = "{PEER_SECRET}"
heartbeat = "{heartbeat}ms"
member_ttl = "{member_ttl}ms"
lease_ttl = "{lease_ttl}ms"
forward_timeout = "5s"
[coalesce]
quiet = "2s"
max_delay = "4s"
min_interval = "0s"
[delivery]
record_file = "{pushes}"
{homes}
{apps}
"#,
            heartbeat = timing.heartbeat.as_millis(),
            member_ttl = timing.member_ttl.as_millis(),
            lease_ttl = timing.lease_ttl.as_millis(),
            pushes = pushes.display(),
            apps = herald_broker::testsuite::example_apps_toml(),
        );
        std::fs::write(&config, text).unwrap();
        let local = |port| SocketAddr::from(([127, 0, 0, 1], port));
        Self {
            id: id.to_owned(),
            gateway: local(gateway),
            grpc: local(grpc),
            admin: local(admin),
            config,
            pushes,
            log: dir.join(format!("{id}.log")),
            child: None,
            starts: 0,
        }
    }

    #[allow(
        dead_code,
        reason = "the regions tests, which share this harness, use it"
    )]
    pub(crate) fn config(&self) -> &Path {
        &self.config
    }

    /// Starts the process and waits until it is ready.
    pub(crate) async fn start(&mut self) {
        self.starts += 1;
        let log = self.log.with_extension(format!("{}.log", self.starts));
        let child = Command::new(herald_bin())
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let admin = self.admin;
        eventually(Duration::from_secs(30), || async move {
            if tokio::net::TcpStream::connect(admin).await.is_err() {
                return None;
            }
            (http_get(admin, "/readyz").await.0 == 200).then_some(())
        })
        .await;
    }

    fn pid(&self) -> String {
        self.child.as_ref().expect("running").id().to_string()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal}");
    }

    pub(crate) fn sigkill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub(crate) fn sigstop(&self) {
        self.signal("-STOP");
    }

    pub(crate) fn sigcont(&self) {
        self.signal("-CONT");
    }

    /// SIGTERM, and waits for the process to end by itself.
    pub(crate) async fn terminate(&mut self) {
        self.signal("-TERM");
        let mut child = self.child.take().expect("running");
        let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap();
        assert!(status.success(), "{} exited with {status}", self.id);
    }

    /// The process's resident memory now, in bytes.
    #[allow(
        dead_code,
        reason = "the fault tests, which share this harness, use it"
    )]
    pub(crate) fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status");
        kib * 1024
    }

    /// Every push this node recorded.
    pub(crate) fn sent(&self) -> Vec<PushRequest> {
        RecordingSender::read_file(&self.pushes).unwrap_or_default()
    }

    pub(crate) async fn registrations(&self) -> RegistrationsClient<tonic::transport::Channel> {
        RegistrationsClient::connect(format!("http://{}", self.grpc))
            .await
            .unwrap()
    }

    pub(crate) async fn status(&self) -> Result<ClusterStatusResponse, tonic::Status> {
        let mut admin = AdminClient::connect(format!("http://{}", self.grpc))
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let mut request = authed(ClusterStatusRequest::default());
        request.set_timeout(Duration::from_secs(2));
        admin
            .cluster_status(request)
            .await
            .map(tonic::Response::into_inner)
    }

    /// What the current process logged so far.
    #[allow(
        dead_code,
        reason = "the regions tests, which share this harness, use it"
    )]
    pub(crate) fn log_text(&self) -> String {
        let log = self.log.with_extension(format!("{}.log", self.starts));
        std::fs::read_to_string(log).unwrap_or_default()
    }

    pub(crate) async fn metrics(&self) -> String {
        http_get(self.admin, "/metrics").await.1
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // A paused process must be resumed to die of SIGKILL promptly.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub(crate) fn authed<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    request
}

/// N nodes on one Redis.
pub(crate) struct Cluster {
    pub(crate) nodes: Vec<Node>,
    pub(crate) dir: tempfile::TempDir,
    redis_url: String,
    redis_cluster: bool,
    timing: Timing,
}

impl Cluster {
    /// Starts `n` nodes, one after the other, and waits until every shard is owned.
    pub(crate) async fn start(redis_url: &str, n: usize) -> Self {
        Self::start_on(redis_url, false, n).await
    }

    /// [`start`](Self::start) on a Redis Cluster (`redis_cluster`: `redis_url` is one of
    /// its nodes).
    pub(crate) async fn start_on(redis_url: &str, redis_cluster: bool, n: usize) -> Self {
        Self::start_timed(redis_url, redis_cluster, n, TEST_TIMING).await
    }

    /// [`start_on`](Self::start_on) with the nodes' `timing`.
    pub(crate) async fn start_timed(
        redis_url: &str,
        redis_cluster: bool,
        n: usize,
        timing: Timing,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut cluster = Self {
            nodes: Vec::new(),
            dir,
            redis_url: redis_url.to_owned(),
            redis_cluster,
            timing,
        };
        for _ in 0..n {
            cluster.add().await;
        }
        cluster.settled(n).await;
        cluster
    }

    /// Starts one more node.
    pub(crate) async fn add(&mut self) -> usize {
        let id = format!("node-{}", self.nodes.len());
        let site = Site {
            region: "us-east-1".to_owned(),
            redis_url: self.redis_url.clone(),
            redis_cluster: self.redis_cluster,
            homes: Vec::new(),
            timing: self.timing,
        };
        let mut node = Node::new(self.dir.path(), &id, &site);
        node.start().await;
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Waits until `alive` nodes are alive, every shard is owned, and each alive node owns
    /// some, as the last node started sees it; returns the status.
    pub(crate) async fn settled(&self, alive: usize) -> ClusterStatusResponse {
        self.settled_as(self.nodes.len() - 1, alive).await
    }

    /// [`settled`](Self::settled), as node `asked` sees it.
    pub(crate) async fn settled_as(&self, asked: usize, alive: usize) -> ClusterStatusResponse {
        let asked = &self.nodes[asked];
        eventually(Duration::from_secs(30), || async move {
            let status = asked.status().await.ok()?;
            let live: Vec<_> = status.nodes.iter().filter(|n| n.alive).collect();
            (live.len() == alive
                && status.unowned_shards == 0
                && live.iter().all(|n| n.shards_owned > 0 && !n.draining))
            .then_some(status)
        })
        .await
    }

    /// Every push any node recorded.
    pub(crate) fn sent(&self) -> Vec<PushRequest> {
        self.nodes.iter().flat_map(Node::sent).collect()
    }
}

/// A registration made for the tests, with the burst fixture's subscription.
#[derive(Clone, Debug)]
pub(crate) struct Device {
    pub(crate) registration_id: String,
    pub(crate) device_token: String,
    pub(crate) path: String,
    pub(crate) subscription: String,
}

/// Registers `count` devices, each through node `i % nodes`.
pub(crate) async fn register(cluster: &Cluster, count: usize, tag: &str) -> Vec<Device> {
    let nodes: Vec<&Node> = cluster.nodes.iter().collect();
    register_through(&nodes, count, tag).await
}

/// Registers `count` devices, each through `nodes[i % nodes.len()]`, in that node's home.
pub(crate) async fn register_through(nodes: &[&Node], count: usize, tag: &str) -> Vec<Device> {
    let registry = &expected("ews")["registry"]["alice"];
    let inbox = registry["inbox_folder_id"].as_str().unwrap();
    let mut devices = Vec::new();
    for i in 0..count {
        let node = nodes[i % nodes.len()];
        let subscription = format!("{tag}-subscription-{i:04}");
        let device_token = format!(
            "{:064x}",
            xxhash_rust::xxh3::xxh3_64(format!("{tag}{i}").as_bytes())
        );
        let registration = node
            .registrations()
            .await
            .register(authed(RegisterRequest {
                device_token: device_token.clone(),
                platform: Platform::Apns.into(),
                app_id: "com.example.mail".into(),
                inbox_folder_id: inbox.into(),
                subscription_id: subscription.clone(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        devices.push(Device {
            registration_id: registration.registration_id,
            device_token,
            path: callback_path(&registration.callback_url),
            subscription,
        });
    }
    devices
}

/// The burst fixture (created, new mail, unread count 4) for `device`.
pub(crate) fn burst(device: &Device) -> Vec<u8> {
    for_device("03-burst-created-newmail-modified.xml", device)
}

/// The heartbeat fixture (a status event) for `device`.
pub(crate) fn heartbeat(device: &Device) -> Vec<u8> {
    for_device("01-status-heartbeat.xml", device)
}

/// An EWS fixture written for alice's subscription, for `device`'s.
fn for_device(name: &str, device: &Device) -> Vec<u8> {
    let alice = expected("ews")["registry"]["alice"]["subscription_id"]
        .as_str()
        .unwrap()
        .to_owned();
    String::from_utf8(fixture("ews", name))
        .unwrap()
        .replace(&alice, &device.subscription)
        .into_bytes()
}

/// What Exchange was told, for one POST.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Told {
    Ok,
    Unavailable,
    /// Anything else: `Unsubscribe`, a 403, a 500 — never acceptable for a live registration.
    Other,
}

pub(crate) async fn post(gateway: SocketAddr, path: &str, body: &[u8]) -> Told {
    let answer = herald_gateway::testsuite::post(gateway, path, Some("text/xml"), body).await;
    match (answer.status, answer.soap_status().map(|(_, s)| s)) {
        (200, Some(status)) if status == "OK" => Told::Ok,
        (503, _) => Told::Unavailable,
        _ => Told::Other,
    }
}

/// Posts until Exchange is told OK (503 is retried, as Exchange does); panics on anything
/// else.
pub(crate) async fn post_until_ok(gateway: SocketAddr, path: &str, body: &[u8]) -> usize {
    let mut unavailable = 0;
    loop {
        match post(gateway, path, body).await {
            Told::Ok => return unavailable,
            Told::Unavailable => {
                unavailable += 1;
                assert!(unavailable < 200, "503 for 20 s");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Told::Other => panic!("Exchange was told something other than OK or 503"),
        }
    }
}

/// Waits until every device in `devices` was pushed `badge` by some node; returns every push.
pub(crate) async fn pushed(cluster: &Cluster, devices: &[Device], badge: u32) -> Vec<PushRequest> {
    pushed_in(|| cluster.sent(), devices, badge).await
}

/// Waits until every device in `devices` was pushed `badge` as `sent` tells; returns every
/// push.
pub(crate) async fn pushed_in(
    sent: impl Fn() -> Vec<PushRequest>,
    devices: &[Device],
    badge: u32,
) -> Vec<PushRequest> {
    eventually(Duration::from_secs(30), || async {
        let sent = sent();
        devices
            .iter()
            .all(|d| {
                sent.iter()
                    .any(|p| p.device_token == d.device_token && p.badge == badge)
            })
            .then_some(sent)
    })
    .await
}
