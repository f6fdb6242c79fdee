//! Nothing accepted is lost: a node killed with SIGKILL while bursts wait for their flush,
//! then started again on the same Redis, pushes every one of them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use herald_broker::testsuite::{
    RedisServer, callback_path, eventually, expected, fixture, http_get,
};
use herald_proto::v1::registrations_client::RegistrationsClient;
use herald_proto::v1::{Platform, RegisterRequest};
use herald_workers::RecordingSender;

const TOKEN: &str = "crash-test-token-0123456789";
const REGISTRATIONS: usize = 20;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Ports {
    gateway: u16,
    grpc: u16,
    admin: u16,
}

fn write_config(dir: &Path, redis_url: &str, ports: &Ports, pushes: &Path) -> PathBuf {
    let path = dir.join("herald.toml");
    let text = format!(
        r#"
[node]
public_url = "https://push.example.test"
[gateway]
listen = "127.0.0.1:{gateway}"
[grpc]
listen = "127.0.0.1:{grpc}"
[admin]
listen = "127.0.0.1:{admin}"
[redis]
url = "{redis_url}"
[auth]
api_tokens = ["{TOKEN}"]
[coalesce]
quiet = "2s"
max_delay = "5s"
min_interval = "0s"
[delivery]
record_file = "{pushes}"
{apps}
"#,
        gateway = ports.gateway,
        grpc = ports.grpc,
        admin = ports.admin,
        pushes = pushes.display(),
        apps = herald_broker::testsuite::example_apps_toml(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A `herald serve` process, killed (SIGKILL) when dropped.
struct Node(Child);

impl Node {
    async fn start(config: &Path, admin: u16, log: &Path) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], admin));
        eventually(Duration::from_secs(20), || async move {
            let connected = tokio::net::TcpStream::connect(addr).await.is_ok();
            if !connected {
                return None;
            }
            (http_get(addr, "/readyz").await.0 == 200).then_some(())
        })
        .await;
        Self(child)
    }

    fn kill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn bursts_pending_at_a_sigkill_are_pushed_after_the_restart() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let pushes = dir.path().join("pushes.jsonl");
    let ports = Ports {
        gateway: free_port(),
        grpc: free_port(),
        admin: free_port(),
    };
    let config = write_config(dir.path(), &redis.url(), &ports, &pushes);
    let first = Node::start(&config, ports.admin, &dir.path().join("first.log")).await;

    let registry = &expected("ews")["registry"]["alice"];
    let (alice_sub, inbox) = (
        registry["subscription_id"].as_str().unwrap(),
        registry["inbox_folder_id"].as_str().unwrap(),
    );
    let burst = String::from_utf8(fixture("ews", "03-burst-created-newmail-modified.xml")).unwrap();
    let mut client = RegistrationsClient::connect(format!("http://127.0.0.1:{}", ports.grpc))
        .await
        .unwrap();
    let gateway = std::net::SocketAddr::from(([127, 0, 0, 1], ports.gateway));
    let mut devices = Vec::new();
    for i in 0..REGISTRATIONS {
        let subscription = format!("crash-subscription-{i:04}");
        let mut request = tonic::Request::new(RegisterRequest {
            device_token: format!("{:064x}", i + 1),
            platform: Platform::Apns.into(),
            app_id: "com.example.mail".into(),
            inbox_folder_id: inbox.into(),
            subscription_id: subscription.clone(),
            ..Default::default()
        });
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        let registration = client.register(request).await.unwrap().into_inner();
        let body = burst.replace(alice_sub, &subscription);
        let path = callback_path(&registration.callback_url);
        let answer =
            herald_gateway::testsuite::post(gateway, &path, Some("text/xml"), body.as_bytes())
                .await;
        assert_eq!(answer.soap_status().map(|(_, s)| s).as_deref(), Some("OK"));
        devices.push(registration.device_token);
    }
    // Every burst is accepted (answered OK) and waits out its 2 s quiet window: kill now.
    first.kill();
    let before = RecordingSender::read_file(&pushes).unwrap_or_default();
    assert!(
        before.len() < REGISTRATIONS,
        "the bursts were flushed before the kill; nothing was tested"
    );

    let second = Node::start(&config, ports.admin, &dir.path().join("second.log")).await;
    let pushed = eventually(Duration::from_secs(20), || {
        let pushes = pushes.clone();
        let devices = devices.clone();
        async move {
            let sent = RecordingSender::read_file(&pushes).unwrap_or_default();
            devices
                .iter()
                .all(|d| sent.iter().any(|p| &p.device_token == d))
                .then_some(sent)
        }
    })
    .await;
    for device in &devices {
        let badges: Vec<u32> = pushed
            .iter()
            .filter(|p| &p.device_token == device)
            .map(|p| p.badge)
            .collect();
        assert!(
            !badges.is_empty() && badges.iter().all(|&b| b == 4),
            "{badges:?}"
        );
    }
    second.kill();
}
