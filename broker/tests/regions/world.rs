//! Three regions on loopback. Each has a Redis primary for its home, a replica of each other
//! home (replicating through a [`Proxy`] the test can cut), and `herald serve` nodes whose
//! `[redis]` is the primary and whose `[homes]` are the replicas. Every server refuses writes
//! without a replica in reach (`min-replicas-to-write 1`), as production's should.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use herald_broker::testsuite::{RedisServer, eventually};
use herald_proto::v1::{ClusterStatusRequest, ClusterStatusResponse};

use super::harness::{Device, Node, Site, TEST_TIMING, authed};
use super::proxy::Proxy;

pub(crate) const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-southeast-1"];

/// How long a primary keeps writing without a replica's acknowledgement.
pub(crate) const MAX_LAG: Duration = Duration::from_secs(2);

/// The replication settings of every server.
fn settings() -> Vec<String> {
    [
        "--min-replicas-to-write",
        "1",
        "--min-replicas-max-lag",
        &MAX_LAG.as_secs().to_string(),
        "--repl-diskless-sync-delay",
        "0",
        "--repl-timeout",
        "5",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// The settings of a replica of the server on `port`.
pub(crate) fn replica_of(port: u16) -> Vec<String> {
    let mut args = settings();
    args.extend([
        "--replicaof".to_owned(),
        "127.0.0.1".to_owned(),
        port.to_string(),
    ]);
    args
}

pub(crate) struct Region {
    pub(crate) name: &'static str,
    /// The home's primary (a replica again after a failback).
    pub(crate) primary: RedisServer,
    /// This region's copy of each home, by home index (`None` for its own).
    pub(crate) copies: Vec<Option<RedisServer>>,
    pub(crate) nodes: Vec<Node>,
}

pub(crate) struct World {
    pub(crate) regions: Vec<Region>,
    /// The replication link of region r's copy of home h, by `(r, h)`.
    proxies: HashMap<(usize, usize), Proxy>,
    pub(crate) dir: tempfile::TempDir,
}

impl World {
    /// Three regions with `nodes` nodes each, every copy in sync and every home served.
    pub(crate) async fn start(nodes: usize) -> Self {
        let primaries: Vec<RedisServer> = REGIONS
            .iter()
            .map(|_| RedisServer::start_with(&settings()))
            .collect();
        let mut proxies = HashMap::new();
        for r in 0..REGIONS.len() {
            for (h, primary) in primaries.iter().enumerate() {
                if h != r {
                    proxies.insert((r, h), Proxy::start(primary.port()).await);
                }
            }
        }
        let mut regions = Vec::new();
        for (r, primary) in primaries.into_iter().enumerate() {
            let copies = (0..REGIONS.len())
                .map(|h| {
                    (h != r).then(|| RedisServer::start_with(&replica_of(proxies[&(r, h)].port)))
                })
                .collect();
            regions.push(Region {
                name: REGIONS[r],
                primary,
                copies,
                nodes: Vec::new(),
            });
        }
        let mut world = Self {
            regions,
            proxies,
            dir: tempfile::tempdir().unwrap(),
        };
        for h in 0..REGIONS.len() {
            world.synced(h).await;
        }
        for r in 0..REGIONS.len() {
            for _ in 0..nodes {
                world.add_node(r).await;
            }
        }
        for r in 0..REGIONS.len() {
            world.served(r, r).await;
        }
        world
    }

    /// The site of region `r`'s nodes.
    pub(crate) fn site(&self, r: usize) -> Site {
        let region = &self.regions[r];
        Site {
            region: region.name.to_owned(),
            redis_url: region.primary.url(),
            redis_cluster: false,
            homes: region
                .copies
                .iter()
                .enumerate()
                .filter_map(|(h, copy)| Some((REGIONS[h].to_owned(), copy.as_ref()?.url())))
                .collect(),
            timing: TEST_TIMING,
        }
    }

    /// Starts one more node in region `r`.
    pub(crate) async fn add_node(&mut self, r: usize) {
        let id = format!("{}-{}", self.regions[r].name, self.regions[r].nodes.len());
        let mut node = Node::new(self.dir.path(), &id, &self.site(r));
        node.start().await;
        self.regions[r].nodes.push(node);
    }

    /// Every server holding home `h`.
    pub(crate) fn copies_of(&self, h: usize) -> Vec<&RedisServer> {
        self.regions
            .iter()
            .enumerate()
            .map(|(r, region)| {
                if r == h {
                    &region.primary
                } else {
                    region.copies[h].as_ref().unwrap()
                }
            })
            .collect()
    }

    /// Waits until every reachable replica of home `h` has applied all its primary wrote.
    pub(crate) async fn synced(&self, h: usize) {
        let copies = self.copies_of(h);
        eventually(Duration::from_secs(30), || async {
            let primary = copies
                .iter()
                .find(|s| role(s).as_deref() == Some("master"))?;
            let target = offset(primary, "master_repl_offset")?;
            let replicas: Vec<_> = copies
                .iter()
                .filter(|s| s.port() != primary.port())
                .filter(|s| role(s).is_some())
                .collect();
            replicas
                .iter()
                .all(|s| {
                    info(s).is_some_and(|i| i.contains("master_link_status:up"))
                        && offset(s, "slave_repl_offset") == Some(target)
                })
                .then_some(())
        })
        .await;
    }

    /// Waits until home `h`'s shards are all held by region `r`'s live nodes, as its first
    /// node sees it.
    pub(crate) async fn served(&self, r: usize, h: usize) -> ClusterStatusResponse {
        let node = &self.regions[r].nodes[0];
        eventually(Duration::from_secs(60), || async move {
            let status = status_of(node, REGIONS[h]).await.ok()?;
            let elsewhere = status
                .nodes
                .iter()
                .any(|n| n.region != REGIONS[r] && n.shards_owned > 0);
            (status.unowned_shards == 0 && !elsewhere).then_some(status)
        })
        .await
    }

    /// Cuts region `r` off: the replication links of its home's copies elsewhere and of its
    /// copies of the other homes.
    pub(crate) fn cut(&self, r: usize) {
        for ((from, home), proxy) in &self.proxies {
            if *from == r || *home == r {
                proxy.cut();
            }
        }
    }

    pub(crate) fn heal(&self, r: usize) {
        for ((from, home), proxy) in &self.proxies {
            if *from == r || *home == r {
                proxy.heal();
            }
        }
    }

    /// Runs `herald region promote HOME` with node `node`'s configuration and `extra`
    /// arguments; its standard output, or a panic with its error.
    pub(crate) fn promote(&self, config: &Path, home: &str, extra: &[String]) -> String {
        let output = promote_command(config, home, extra);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "promote failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }
}

/// `herald region promote HOME` with a node's configuration and `extra` arguments.
pub(crate) fn promote_command(config: &Path, home: &str, extra: &[String]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["region", "promote", home, "--wait", "60s", "--config"])
        .arg(config)
        .args(extra)
        .output()
        .unwrap()
}

pub(crate) async fn status_of(
    node: &Node,
    home: &str,
) -> Result<ClusterStatusResponse, tonic::Status> {
    let mut admin =
        herald_proto::v1::admin_client::AdminClient::connect(format!("http://{}", node.grpc))
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut request = authed(ClusterStatusRequest {
        region: home.to_owned(),
    });
    request.set_timeout(Duration::from_secs(2));
    admin
        .cluster_status(request)
        .await
        .map(tonic::Response::into_inner)
}

fn info(server: &RedisServer) -> Option<String> {
    let client = redis::Client::open(server.url()).ok()?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    redis::cmd("INFO").arg("replication").query(&mut conn).ok()
}

fn field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
        .map(str::to_owned)
}

pub(crate) fn role(server: &RedisServer) -> Option<String> {
    field(&info(server)?, "role")
}

fn offset(server: &RedisServer, name: &str) -> Option<u64> {
    field(&info(server)?, name)?.parse().ok()
}

/// Registers `count` devices through `node`, in the node's own home.
pub(crate) async fn register_at(node: &Node, count: usize, tag: &str) -> Vec<Device> {
    super::harness::register_through(&[node], count, tag).await
}

/// Time since `start`, in milliseconds.
pub(crate) fn ms_since(start: Instant) -> u128 {
    start.elapsed().as_millis()
}
