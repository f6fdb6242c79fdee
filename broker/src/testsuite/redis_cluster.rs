//! A private three-primary Redis Cluster on loopback (`redis-server --cluster-enabled yes`
//! ×3 and `redis-cli --cluster create`), stopped (by pid) when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<(Child, u16)>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts three primaries, joins them into one cluster with every slot assigned, and
    /// waits until the cluster says it is ok.
    ///
    /// # Panics
    /// If `redis-server` or `redis-cli` is missing, or the cluster does not form in 30 s.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory for redis");
        let ports = cluster_ports(3);
        let nodes: Vec<(Child, u16)> = ports
            .iter()
            .map(|&port| {
                let node_dir = dir.path().join(port.to_string());
                std::fs::create_dir_all(&node_dir).expect("node directory");
                let child = super::redis_server::server_command(port, &node_dir)
                    .args([
                        "--appendonly",
                        "no",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-node-timeout",
                        "5000",
                    ])
                    .spawn()
                    .expect("redis-server must be installed (apt-get install redis-server)");
                (child, port)
            })
            .collect();
        let cluster = Self { nodes, _dir: dir };
        for &port in &ports {
            wait_for(port, "PING", "PONG");
        }
        let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli must be installed");
        assert!(created.success(), "redis-cli --cluster create failed");
        for &port in &ports {
            wait_for(port, "CLUSTER INFO", "cluster_state:ok");
        }
        cluster
    }

    /// A node's URL: the seed a cluster client discovers the others from.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.nodes[0].1)
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for (child, _) in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until `redis-cli -p port COMMAND` prints something containing `expected`.
fn wait_for(port: u16, command: &str, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(command.split(' '))
            .output();
        if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(expected)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("redis on port {port} did not answer {command} with {expected} within 30 s");
}

/// `n` free ports whose cluster bus ports (+10000) are free too.
fn cluster_ports(n: usize) -> Vec<u16> {
    let mut ports = Vec::new();
    while ports.len() < n {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("bound address").port();
        if port < 55_000
            && !ports.contains(&port)
            && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()
        {
            ports.push(port);
        }
    }
    ports
}
