//! A private `redis-server` on a free loopback port, stopped (by pid) when dropped.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
    /// More `redis-server` arguments (replication settings, say).
    extra: Vec<String>,
    /// Writes every command to its append-only file before answering, so a restart keeps
    /// everything.
    durable: bool,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server that keeps nothing on disk and waits until it answers PING.
    ///
    /// # Panics
    /// If `redis-server` is not installed or does not come up within 10 s.
    pub fn start() -> Self {
        Self::launch(false)
    }

    /// Starts a server that survives [`kill`](Self::kill) and [`restart`](Self::restart)
    /// with everything it answered (append-only file, fsync on every write).
    pub fn start_durable() -> Self {
        Self::launch(true)
    }

    /// Starts a server with more `redis-server` arguments (`--replicaof`, say).
    pub fn start_with(extra: &[String]) -> Self {
        Self::launch_with(false, extra.to_vec())
    }

    fn launch(durable: bool) -> Self {
        Self::launch_with(durable, Vec::new())
    }

    fn launch_with(durable: bool, extra: Vec<String>) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory for redis");
        let port = free_port();
        let child = spawn(port, durable, dir.path(), &extra);
        let server = Self {
            child,
            port,
            extra,
            durable,
            dir,
        };
        server.wait_ready();
        server
    }

    /// Starts the server again on its port and directory (after [`kill`](Self::kill)).
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn(self.port, self.durable, self.dir.path(), &self.extra);
        self.wait_ready();
    }

    /// Starts the server again on its port and directory with other extra arguments.
    pub fn restart_with(&mut self, extra: &[String]) {
        self.extra = extra.to_vec();
        self.restart();
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL) without dropping the handle, to test an outage.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn wait_ready(&self) {
        let client = redis::Client::open(self.url()).expect("redis url");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut conn) = client.get_connection()
                && redis::cmd("PING").query::<String>(&mut conn).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server on port {} did not answer within 10s",
            self.port
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(port: u16, durable: bool, dir: &std::path::Path, extra: &[String]) -> Child {
    let persistence: &[&str] = if durable {
        &["--appendonly", "yes", "--appendfsync", "always"]
    } else {
        &["--appendonly", "no"]
    };
    server_command(port, dir)
        .args(persistence)
        .args(extra)
        .spawn()
        .expect("redis-server must be installed (apt-get install redis-server)")
}

/// `redis-server` on loopback `port`, keeping its files in `dir`, without snapshots and
/// without output.
pub(super) fn server_command(port: u16, dir: &std::path::Path) -> Command {
    let mut command = Command::new("redis-server");
    command
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("bound address").port()
}
