//! A node on loopback ports with a gRPC client that carries a valid bearer token.

use std::sync::Arc;
use std::time::Duration;

use herald_proto::v1::registrations_client::RegistrationsClient;
use herald_workers::RecordingSender;
use herald_workers::mock::{MockApnsOptions, MockFcmOptions, MockProviders};
use tonic::Request;
use tonic::transport::Channel;

use crate::api::ApiTokens;
use crate::config::Config;
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
        [cluster]
        peer_secret = "test-peer-secret-0123456789"
        heartbeat = "200ms"
        member_ttl = "2s"
        lease_ttl = "3s"
    "#;
    let mut config: Config = toml::from_str(toml).expect("test configuration");
    config.redis.url = redis_url;
    config.apps = toml::from_str::<AppsOnly>(&example_apps_toml())
        .expect("example apps")
        .apps;
    config
}

/// The two example apps of DESIGN.md §5.1 (an APNs and an FCM app) with the committed test
/// credentials (`testdata/`), as TOML: for tests whose pushes never reach a provider.
pub fn example_apps_toml() -> String {
    let testdata = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata");
    format!(
        r#"
[[apps]]
id = "com.example.mail"
platform = "apns"
team_id = "ABCDE12345"
key_id = "KEY1234567"
key_file = "{testdata}/apns/test-key.p8"

[[apps]]
id = "com.example.mail.android"
platform = "fcm"
project_id = "example-mail"
service_account_file = "{testdata}/fcm/test-service-account.json"
"#
    )
}

#[derive(serde::Deserialize)]
struct AppsOnly {
    apps: Vec<herald_workers::AppConfig>,
}

#[derive(Debug)]
pub struct TestNode {
    pub node: RunningNode,
    pub store: Arc<dyn RegistrationStore>,
    /// Every push the node made (nodes on a recording sender).
    pub pushes: RecordingSender,
    /// The mock APNs and FCM the node pushes to (nodes with providers).
    pub providers: Option<MockProviders>,
    _files: Option<tempfile::TempDir>,
}

/// The APNs app of the test configuration and the cast.
pub const IOS_APP: &str = "com.example.mail";
/// The FCM app of the test configuration.
pub const ANDROID_APP: &str = "com.example.mail.android";

impl TestNode {
    pub async fn start(config: &Config) -> Self {
        let pushes = RecordingSender::new();
        Self::with_sender(config, pushes.clone(), Arc::new(pushes)).await
    }

    /// A node that pushes through `sender`, which records what it sends in `pushes`.
    pub async fn with_sender(
        config: &Config,
        pushes: RecordingSender,
        sender: Arc<dyn herald_workers::PushSender>,
    ) -> Self {
        let store = build_store(config).expect("store");
        Self::on_store(config, store, pushes, sender).await
    }

    /// A node on `store` (a restart on the same in-memory store, say) that pushes through
    /// `sender`, which records what it sends in `pushes`.
    pub async fn on_store(
        config: &Config,
        store: Arc<dyn RegistrationStore>,
        pushes: RecordingSender,
        sender: Arc<dyn herald_workers::PushSender>,
    ) -> Self {
        let node = RunningNode::start_with_sender(
            config,
            store.clone(),
            ApiTokens::new([API_TOKEN]),
            sender,
        )
        .await
        .expect("node starts");
        Self {
            node,
            store,
            pushes,
            providers: None,
            _files: None,
        }
    }

    /// A node that really delivers: to a mock APNs (`apns` options) and a mock FCM over
    /// TLS, with retries spaced in milliseconds rather than seconds.
    pub async fn with_providers(config: &Config, apns: MockApnsOptions) -> Self {
        let files = tempfile::tempdir().expect("temp dir");
        let providers = MockProviders::start(files.path(), apns, MockFcmOptions::default())
            .await
            .expect("mock providers start");
        let mut config = config.clone();
        config.apps = providers
            .apps(&[IOS_APP], &[ANDROID_APP], "example-mail")
            .expect("service account");
        config.delivery.retry_base = Duration::from_millis(100);
        config.delivery.retry_cap = Duration::from_millis(400);
        let store = build_store(&config).expect("store");
        let node = RunningNode::start(&config, store.clone(), ApiTokens::new([API_TOKEN]))
            .await
            .expect("node starts");
        Self {
            node,
            store,
            pushes: RecordingSender::new(),
            providers: Some(providers),
            _files: Some(files),
        }
    }

    /// The mock providers of a node started [`with_providers`](Self::with_providers).
    pub fn mocks(&self) -> &MockProviders {
        self.providers.as_ref().expect("a node with providers")
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

    /// Shuts the node down within `node.shutdown_grace`'s default (10 s): a node whose Redis
    /// is gone spends a third of it on handovers that cannot finish.
    pub async fn stop(self) {
        self.node
            .shutdown(Duration::from_secs(10))
            .await
            .expect("clean shutdown");
    }
}

/// A node's write path without its listeners: a registry on `store` whose subscription
/// actors serve the shards `ownership` holds, write with its epochs and record their pushes
/// (in the returned sender) instead of sending them. Its settings are [`test_config`]'s.
pub async fn registry_on(
    store: Arc<dyn RegistrationStore>,
    ownership: Arc<herald_cluster::Ownership>,
) -> (crate::registry::Registry, RecordingSender) {
    let config = test_config(None);
    let pushes = RecordingSender::new();
    let forwarder = Arc::new(crate::cluster::Forwarder::alone(
        config.cluster.forward_timeout,
    ));
    let subscriptions = crate::subscription::Subscriptions::new(crate::subscription::Deps {
        store: store.clone(),
        ownership: ownership.clone(),
        sender: Arc::new(pushes.clone()),
        rules: crate::subscription::Coalescing {
            quiet: config.coalesce.quiet,
            max_delay: config.coalesce.max_delay,
            min_interval: config.coalesce.min_interval,
        },
        actors: config.actors.clone(),
        give_up_after: config.delivery.badge_lifetime,
        metrics: Arc::new(crate::metrics::Metrics::default()),
        live: Default::default(),
        forwarder: forwarder.clone(),
    });
    for (shard, epoch) in ownership.held() {
        subscriptions
            .acquire(shard, epoch)
            .await
            .expect("a shard is served");
    }
    let router = crate::routing::Router::new(subscriptions, store.clone(), forwarder);
    let registry = crate::registry::Registry::new(
        store,
        router,
        crate::node::registry_settings(&config, &config.node.region),
    );
    (registry, pushes)
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

/// Waits (up to 30 s) until nodes `a` and `b` of one cluster hold every shard between them,
/// each some.
pub async fn split_between(a: &TestNode, b: &TestNode) {
    super::eventually(Duration::from_secs(30), || async {
        let (held_a, held_b) = (a.node.ownership.count(), b.node.ownership.count());
        let all = usize::from(herald_cluster::SHARD_COUNT);
        (held_a > 0 && held_b > 0 && held_a + held_b == all).then_some(())
    })
    .await;
}

/// An APNs device token (64 hex digits) whose shard `node` holds now.
pub fn token_held_by(node: &TestNode) -> String {
    (0u32..)
        .map(|n| format!("{n:064x}"))
        .find(|t| {
            let shard = herald_cluster::ShardId::of_device_token(t);
            node.node.ownership.epoch(shard).is_some()
        })
        .expect("a node of a split holds some shard")
}
