//! A node on loopback ports with a gRPC client that carries a valid bearer token.

use std::sync::Arc;
use std::time::Duration;

use herald_proto::v1::registrations_client::RegistrationsClient;
use herald_workers::RecordingSender;
use tonic::Request;
use tonic::transport::Channel;

use crate::api::ApiTokens;
use crate::config::{Config, EXAMPLE_APPS_TOML};
use crate::node::{RunningNode, build_store};
use crate::store::RegistrationStore;

pub const API_TOKEN: &str = "test-api-token-0123456789";

/// A configuration on ephemeral loopback ports with one APNs and one FCM app, and the given
/// Redis URL (`None`: in-memory store).
pub fn test_config(redis_url: Option<String>) -> Config {
    let toml = r#"
        [gateway]
        listen = "127.0.0.1:0"
        [grpc]
        listen = "127.0.0.1:0"
        [admin]
        listen = "127.0.0.1:0"
        [auth]
        api_tokens = ["test-api-token-0123456789"]
        [node]
        public_url = "https://push.example.test/"
        [coalesce]
        quiet = "150ms"
        max_delay = "600ms"
        min_interval = "0s"
    "#;
    let mut config: Config = toml::from_str(toml).expect("test configuration");
    config.redis.url = redis_url;
    config.apps = toml::from_str::<AppsOnly>(EXAMPLE_APPS_TOML)
        .expect("example apps")
        .apps;
    config
}

#[derive(serde::Deserialize)]
struct AppsOnly {
    apps: Vec<herald_workers::AppConfig>,
}

#[derive(Debug)]
pub struct TestNode {
    pub node: RunningNode,
    pub store: Arc<dyn RegistrationStore>,
    /// Every push the node made.
    pub pushes: RecordingSender,
}

impl TestNode {
    pub async fn start(config: &Config) -> Self {
        let store = build_store(config).expect("store");
        let pushes = RecordingSender::new();
        let node = RunningNode::start_with_sender(
            config,
            store.clone(),
            ApiTokens::new([API_TOKEN]),
            Arc::new(pushes.clone()),
        )
        .await
        .expect("node starts");
        Self {
            node,
            store,
            pushes,
        }
    }

    pub async fn client(&self) -> RegistrationsClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.node.grpc_addr))
            .expect("grpc url")
            .connect()
            .await
            .expect("grpc connects");
        RegistrationsClient::new(channel)
    }

    pub fn gateway_addr(&self) -> std::net::SocketAddr {
        self.node.gateway_addr
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.node.admin_addr)
    }

    pub async fn stop(self) {
        self.node
            .shutdown(Duration::from_secs(5))
            .await
            .expect("clean shutdown");
    }
}

/// A request with the test bearer token.
pub fn authed<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {API_TOKEN}").parse().expect("header value"),
    );
    request
}
