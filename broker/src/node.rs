//! Wiring: builds a node from its configuration — store, registry, gRPC API, admin
//! listener — binds its listeners, and runs them until told to shut down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use herald_workers::{Delivery, DeliveryError, NoDelivery, PushSender, RecordingSender};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::admin::{self, AdminState, Phase};
use crate::api::{ApiTokens, GuardLayer};
use crate::config::{Config, ConfigError};
use crate::homes::{HomeCopy, HomeStack, Homes, HomesSink, StackParts, Watcher};
use crate::metrics::Metrics;
use crate::registry::{KnownApp, Registry, RegistrySettings};
use crate::routing::Router;
use crate::store::{MemoryStore, RedisStore, RedisStoreConfig, RegistrationStore, StoreError};
use crate::subscription::Subscriptions;
use herald_cluster::Ownership;
use herald_cluster::peer::Peers;

mod grpc;

use grpc::grpc_router;

/// Longest a connection to a peer may take to open.
const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How often the gRPC health status follows the store's reachability.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);
/// How often the gRPC guard forgets API tokens idle long enough to be back at a full burst.
const GUARD_FORGET_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the configuration is invalid:\n{0}")]
    Invalid(crate::config::Problems),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("gRPC reflection: {0}")]
    Reflection(String),
    #[error("push delivery: {0}")]
    Delivery(#[from] DeliveryError),
    #[error("cannot serve the node's shards: {0}")]
    Shards(String),
    #[error("TLS: {0}")]
    Tls(String),
}

/// A node whose listeners are bound and serving.
#[derive(Debug)]
pub struct RunningNode {
    pub gateway_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub registry: Registry,
    pub router: Router,
    pub subscriptions: Subscriptions,
    /// The shards of its own region's home this node holds (every one, for a node alone).
    pub ownership: Arc<Ownership>,
    /// Every home this node has a copy of, and the stacks of those it serves.
    pub homes: Arc<Homes>,
    shutdown: watch::Sender<bool>,
    /// What `/readyz` says: 503 until started, and again first thing in a shutdown.
    phase: watch::Sender<Phase>,
    /// The gateway and gRPC listeners and the health follower.
    tasks: JoinSet<Result<(), String>>,
    /// The admin listener, which has a stop of its own.
    admin: Option<AdminListener>,
    /// The task following which homes this node serves.
    watcher: Option<Watcher>,
}

/// A listener's task: it ends with an error, or with `Ok` once told to stop.
type Listener = tokio::task::JoinHandle<Result<(), String>>;

/// The admin listener and the stop it alone listens to.
#[derive(Debug)]
struct AdminListener {
    stop: watch::Sender<bool>,
    task: Listener,
}

/// Builds the node's store from `[redis]`: Redis when a URL is configured, else in memory.
pub fn build_store(config: &Config) -> Result<Arc<dyn RegistrationStore>, StoreError> {
    Ok(match &config.redis.url {
        Some(url) => Arc::new(RedisStore::connect(&RedisStoreConfig {
            url: url.clone(),
            key_prefix: config.redis.key_prefix.clone(),
            response_timeout: config.redis.response_timeout,
            connect_timeout: config.redis.connect_timeout,
            cluster: config.redis.cluster,
            tls: redis_tls(config)?,
        })?),
        None => {
            tracing::warn!(
                "no redis.url configured: registrations are kept in memory only and are lost when the node stops"
            );
            Arc::new(MemoryStore::new())
        }
    })
}

/// `[redis]`'s TLS certificates, as a store error when a file cannot be read.
fn redis_tls(config: &Config) -> Result<Option<redis::TlsCertificates>, StoreError> {
    config
        .redis_tls()
        .map_err(|e| StoreError::Unavailable(Box::new(e)))
}

/// This region's copies of the other homes (`[homes."<region>"]`), with `[redis]`'s
/// settings.
fn build_home_copies(config: &Config) -> Result<Vec<HomeCopy>, StoreError> {
    let tls = redis_tls(config)?;
    config
        .homes
        .iter()
        .map(|(home, copy)| {
            let store: Arc<dyn RegistrationStore> =
                Arc::new(RedisStore::connect(&RedisStoreConfig {
                    url: copy.url.clone(),
                    key_prefix: config.redis.key_prefix.clone(),
                    response_timeout: config.redis.response_timeout,
                    connect_timeout: config.redis.connect_timeout,
                    cluster: false,
                    tls: tls.clone(),
                })?);
            Ok((home.clone(), store))
        })
        .collect()
}

/// The push sender the configuration names: the configured apps' providers, or a recording
/// file (`delivery.record_file`), or nothing when no app is configured.
fn build_sender(
    config: &Config,
    store: &Arc<dyn RegistrationStore>,
    metrics: &Metrics,
) -> Result<Arc<dyn PushSender>, NodeError> {
    if let Some(path) = &config.delivery.record_file {
        tracing::warn!(file = %path.display(), "delivery.record_file is set: pushes are recorded, not sent");
        return Ok(Arc::new(RecordingSender::with_file(path)));
    }
    if config.apps.is_empty() {
        tracing::warn!("no [[apps]] configured: pushes are not delivered");
        return Ok(Arc::new(NoDelivery));
    }
    let share = store.clone().token_share();
    let delivery = Delivery::new(
        &config.apps,
        &config.delivery,
        share,
        metrics.delivery.clone(),
    )?;
    Ok(Arc::new(delivery))
}

/// Resolves when the node is told to stop.
async fn until_stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Keeps the gRPC health status in step with the store's reachability until the node stops;
/// the first time the store answers, warns about its settings.
async fn follow_store_health(
    health: tonic_health::server::HealthReporter,
    store: Arc<dyn RegistrationStore>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let mut ticker = tokio::time::interval(HEALTH_INTERVAL);
    let mut advised = false;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
        let serving = matches!(
            tokio::time::timeout(HEALTH_INTERVAL, store.ping()).await,
            Ok(Ok(()))
        );
        if serving && !advised {
            advised = true;
            advise_on_settings(store.as_ref()).await;
        }
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        health.set_service_status("", status).await;
        health
            .set_service_status("herald.v1.Registrations", status)
            .await;
    }
}

/// Warns about the store's settings that cost memory or registrations, once it answers.
async fn advise_on_settings(store: &dyn RegistrationStore) {
    match tokio::time::timeout(HEALTH_INTERVAL, store.settings_advice()).await {
        Ok(Ok(advice)) => {
            for line in advice {
                tracing::warn!("{line} (docs/configuration.md)");
            }
        }
        // Managed servers often refuse CONFIG: nothing to advise then.
        Ok(Err(error)) => tracing::debug!(%error, "cannot read the store's settings"),
        Err(_) => tracing::debug!("the store's settings did not come in time"),
    }
}

/// The registry settings of home `home`'s stack.
pub(crate) fn registry_settings(config: &Config, home: &str) -> RegistrySettings {
    RegistrySettings {
        public_url: config.public_base().to_owned(),
        region: home.to_owned(),
        regions: config.cluster.regions.clone(),
        apps: config
            .apps
            .iter()
            .map(|app| KnownApp {
                id: app.id().to_owned(),
                platform: match app {
                    herald_workers::AppConfig::Apns(_) => crate::domain::Platform::Apns,
                    herald_workers::AppConfig::Fcm(_) => crate::domain::Platform::Fcm,
                },
            })
            .collect(),
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, NodeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Bind { what, addr, source })
}

fn local_addr(
    what: &'static str,
    listener: &TcpListener,
    addr: SocketAddr,
) -> Result<SocketAddr, NodeError> {
    listener
        .local_addr()
        .map_err(|source| NodeError::Bind { what, addr, source })
}

impl RunningNode {
    /// Starts a node on `store` with the API tokens `tokens`, pushing through the sender the
    /// configuration names.
    pub async fn start(
        config: &Config,
        store: Arc<dyn RegistrationStore>,
        tokens: ApiTokens,
    ) -> Result<Self, NodeError> {
        Self::launch(config, store, tokens, None).await
    }

    /// Starts a node that pushes through `sender`.
    #[cfg(feature = "testsuite")]
    pub async fn start_with_sender(
        config: &Config,
        store: Arc<dyn RegistrationStore>,
        tokens: ApiTokens,
        sender: Arc<dyn PushSender>,
    ) -> Result<Self, NodeError> {
        Self::launch(config, store, tokens, Some(sender)).await
    }

    async fn launch(
        config: &Config,
        store: Arc<dyn RegistrationStore>,
        tokens: ApiTokens,
        sender: Option<Arc<dyn PushSender>>,
    ) -> Result<Self, NodeError> {
        let problems = config.problems();
        if !problems.0.is_empty() {
            return Err(NodeError::Invalid(problems));
        }
        let metrics = Arc::new(Metrics::default());
        for (certificate, expires) in config.certificate_expiries() {
            metrics
                .certificate_expiry
                .get_or_create(&crate::metrics::CertificateLabels { certificate })
                .set(expires);
        }
        let sender = match sender {
            Some(sender) => sender,
            None => build_sender(config, &store, &metrics)?,
        };
        let clustered = store.clone().cluster_tables().is_some();
        let peers = if clustered {
            let tls = match &config.grpc.tls {
                Some(tls) => Some(tls.client().map_err(|e| NodeError::Tls(e.to_string()))?),
                None => None,
            };
            Some(
                Peers::new(&config.cluster.peer_secret, PEER_CONNECT_TIMEOUT, tls)
                    .map_err(|e| NodeError::Shards(e.to_string()))?,
            )
        } else {
            None
        };
        let (shutdown, _) = watch::channel(false);
        let (phase, _) = watch::channel(Phase::Starting);
        let mut tasks = JoinSet::new();

        let gateway_listener = bind("gateway", config.gateway.listen).await?;
        let grpc_listener = bind("grpc", config.grpc.listen).await?;
        let admin_listener = bind("admin", config.admin.listen).await?;
        let gateway_addr = local_addr("gateway", &gateway_listener, config.gateway.listen)?;
        let grpc_addr = local_addr("grpc", &grpc_listener, config.grpc.listen)?;
        let admin_addr = local_addr("admin", &admin_listener, config.admin.listen)?;
        let advertise = if config.cluster.advertise.is_empty() {
            grpc_addr.to_string()
        } else {
            config.cluster.advertise.clone()
        };
        let parts = StackParts {
            config: Arc::new(config.clone()),
            sender,
            metrics: metrics.clone(),
            peers,
            advertise,
        };
        let homes = Arc::new(Homes::new(
            (&config.node.region, store.clone()),
            build_home_copies(config)?,
            config.cluster.regions.clone(),
        ));
        for slot in homes.slots() {
            metrics
                .home_served
                .get_or_create(&crate::metrics::HomeLabels {
                    home: slot.home.clone(),
                })
                .set(0);
        }
        let own = Arc::new(
            HomeStack::build(
                &parts,
                &config.node.region,
                store.clone(),
                homes.own().serving(),
            )
            .await
            .map_err(NodeError::Shards)?,
        );
        homes.own().set_stack(Some(own.clone()));

        let (health, health_service) = tonic_health::server::health_reporter();
        let guard = GuardLayer::new(
            tokens,
            &config.cluster.peer_secret,
            config.auth.requests_per_second,
            config.auth.burst,
            metrics.clone(),
        );
        tasks.spawn({
            let forgetting = guard.spawn_forgetting(GUARD_FORGET_EVERY);
            let mut stop = shutdown.subscribe();
            async move {
                let _ = stop.wait_for(|s| *s).await;
                forgetting.abort();
                Ok(())
            }
        });
        let grpc = grpc_router(health_service, &homes, config, guard, &metrics)?;
        let stop = until_stopped(shutdown.subscribe());
        tasks.spawn(async move {
            // Small request/answer frames: without TCP_NODELAY, Nagle and delayed ACKs add ~40 ms.
            let incoming = TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
            grpc.serve_with_incoming_shutdown(incoming, stop)
                .await
                .map_err(|e| format!("grpc server: {e}"))
        });

        let mut gateway = herald_gateway::Gateway::new(
            config.gateway.clone(),
            HomesSink::new(homes.clone(), metrics.clone()),
            metrics.gateway.clone(),
        );
        if crate::telemetry::exporting() {
            gateway = gateway.with_request_spans();
        }
        if let Some(files) = &config.gateway.tls {
            let tls = herald_gateway::tls::server_config(files, None, &[b"http/1.1"])
                .map_err(|e| NodeError::Tls(format!("gateway.tls: {e}")))?;
            gateway = gateway.with_tls(tls);
        }
        let gateway = Arc::new(gateway);
        let stop = until_stopped(shutdown.subscribe());
        tasks.spawn(async move {
            herald_gateway::serve(gateway_listener, gateway, stop)
                .await
                .map_err(|e| format!("gateway server: {e}"))
        });

        let admin = admin::router(AdminState {
            store: store.clone(),
            metrics,
            phase: phase.subscribe(),
            ownership: own.ownership.clone(),
        });
        // The admin listener answers until the end of a shutdown (readiness off first,
        // metrics meanwhile): it has a stop of its own.
        let (admin_stop, admin_stopped) = watch::channel(false);
        let stop = until_stopped(admin_stopped);
        let admin = tokio::spawn(async move {
            axum::serve(admin_listener, admin)
                .with_graceful_shutdown(stop)
                .await
                .map_err(|e| format!("admin server: {e}"))
        });

        tasks.spawn(follow_store_health(health, store, shutdown.subscribe()));
        // Listeners up. Which copies are primaries: until this answers, no home is served
        // (503), so that a region back from a failover, whose Redis is now a replica, does
        // not serve its home; a home promoted here gets its stack. Then the own home's
        // stack joins its cluster and takes its leases.
        crate::homes::follow_roles(&homes, &parts, HEALTH_INTERVAL).await;
        own.run(&parts).await.map_err(NodeError::Shards)?;
        let watcher = crate::homes::spawn_watch(homes.clone(), parts, config.cluster.heartbeat);
        phase.send_replace(Phase::Serving);
        tracing::info!(%gateway_addr, %grpc_addr, %admin_addr, node = %config.node.id, region = %config.node.region, shards = own.ownership.count(), "node started");
        Ok(Self {
            router: own.router.clone(),
            subscriptions: own.subscriptions.clone(),
            ownership: own.ownership.clone(),
            registry: own.registry.clone(),
            homes,
            gateway_addr,
            grpc_addr,
            admin_addr,
            shutdown,
            phase,
            tasks,
            admin: Some(AdminListener {
                stop: admin_stop,
                task: admin,
            }),
            watcher: Some(watcher),
        })
    }

    /// Stops, in order: readiness off (`/readyz` answers 503); for a cluster member, its
    /// shards handed over to the other nodes while its listeners still answer (within a
    /// third of `grace`); the gateway and gRPC listeners closed, the sweeper and the keepers
    /// stopped, the bursts still accepted flushed (within half of `grace`) and the actors
    /// stopped, the leases left released and the member row removed; then the admin
    /// listener. Waits up to `grace` in all.
    pub async fn shutdown(mut self, grace: Duration) -> Result<(), String> {
        let started = std::time::Instant::now();
        let _ = self.phase.send(Phase::Stopping);
        // No home starts or stops being served from now on.
        if let Some(watcher) = self.watcher.take() {
            watcher.stop().await;
        }
        // The shards are handed over while the listeners still answer.
        let stacks = self.homes.stacks();
        let handed_over = futures_util::future::join_all(stacks.iter().map(|s| s.hand_over()));
        if tokio::time::timeout(grace / 3, handed_over).await.is_err() {
            tracing::warn!(
                "the shards were not all handed over in time; the rest lapse or are released at the end"
            );
        }
        let _ = self.shutdown.send(true);
        let drained = tokio::time::timeout(grace.saturating_sub(started.elapsed()), async {
            let mut first_error = None;
            while let Some(joined) = self.tasks.join_next().await {
                let outcome = joined.map_err(|e| e.to_string()).and_then(|r| r);
                if let Err(e) = outcome {
                    first_error.get_or_insert(e);
                }
            }
            // Listeners are closed: flush what was accepted, stop the actors, give the
            // leases to the other nodes and leave.
            futures_util::future::join_all(stacks.iter().map(|s| s.stop(grace / 2))).await;
            self.homes.stopped().await;
            if let Some(admin) = self.admin.take() {
                let _ = admin.stop.send(true);
                if let Err(e) = admin.task.await.map_err(|e| e.to_string()).and_then(|r| r) {
                    first_error.get_or_insert(e);
                }
            }
            first_error.map_or(Ok(()), Err)
        })
        .await;
        match drained {
            Ok(result) => result,
            Err(_) => {
                self.tasks.abort_all();
                if let Some(admin) = self.admin.take() {
                    admin.task.abort();
                }
                Err(format!("listeners did not stop within {grace:?}"))
            }
        }
    }

    /// Resolves when a listener stops by itself (an error: it should run until shutdown).
    pub async fn failed(&mut self) -> String {
        let admin = async {
            match self.admin.as_mut() {
                Some(admin) => (&mut admin.task).await,
                None => std::future::pending().await,
            }
        };
        let stopped = tokio::select! {
            joined = self.tasks.join_next() => joined,
            joined = admin => Some(joined),
        };
        match stopped {
            Some(Ok(Err(e))) => e,
            Some(Err(e)) => e.to_string(),
            Some(Ok(Ok(()))) => "a listener stopped".to_owned(),
            None => "no listener is running".to_owned(),
        }
    }
}
