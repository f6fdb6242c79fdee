//! A private `redis-server` on a free loopback port, stopped (by pid) when dropped.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
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

    fn launch(durable: bool) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory for redis");
        let port = free_port();
        let child = spawn(port, durable, dir.path());
        let server = Self {
            child,
            port,
            durable,
            dir,
        };
        server.wait_ready();
        server
    }

    /// Starts the server again on its port and directory (after [`kill`](Self::kill)).
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn(self.port, self.durable, self.dir.path());
        self.wait_ready();
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

fn spawn(port: u16, durable: bool, dir: &std::path::Path) -> Child {
    let persistence: &[&str] = if durable {
        &["--appendonly", "yes", "--appendfsync", "always"]
    } else {
        &["--appendonly", "no"]
    };
    server_command(port, dir)
        .args(persistence)
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
