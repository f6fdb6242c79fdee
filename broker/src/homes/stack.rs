//! Everything that serves one home region on this node: its store, the shards this node
//! holds of it (leases and epochs in that home's Redis), their subscription actors, the
//! registry and the gateway sink over them, and the cluster member this node is in that
//! home's membership table. Each home a node serves has a stack of its own; stacks share
//! the push sender and the metrics.

use std::sync::Arc;
use std::time::Duration;

use herald_cluster::peer::Peers;
use herald_cluster::{Directory, Epoch, Ownership};
use herald_workers::PushSender;
use tokio::sync::watch;

use super::shard_keeper;
use crate::cluster::{AdminApi, ClusterNode, ClusterSettings, Forwarder, PeerApi};
use crate::config::Config;
use crate::ews_sink::EwsSink;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::routing::Router;
use crate::store::RegistrationStore;
use crate::subscription::{Coalescing, Deps, Subscriptions};

/// What every stack of a node is built from.
#[derive(Clone, Debug)]
pub struct StackParts {
    pub config: Arc<Config>,
    pub sender: Arc<dyn PushSender>,
    pub metrics: Arc<Metrics>,
    /// The peer channel pool (none for a node alone on the in-memory store).
    pub peers: Option<Peers>,
    /// The gRPC address this node's peers call.
    pub advertise: String,
}

/// One home, served by this node.
#[derive(Debug)]
pub struct HomeStack {
    pub home: String,
    pub store: Arc<dyn RegistrationStore>,
    pub registry: Registry,
    pub router: Router,
    pub subscriptions: Subscriptions,
    /// The shards of this home this node holds.
    pub ownership: Arc<Ownership>,
    pub sink: EwsSink,
    pub peer: PeerApi,
    pub admin: AdminApi,
    /// This node as a member of the home's cluster (none on the in-memory store).
    pub cluster: Option<Arc<ClusterNode>>,
    stop: watch::Sender<bool>,
    /// The liveness sweeper, the lease keeper and the shard keeper: they reach the actors,
    /// so they are stopped before the actors drain.
    workers: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl HomeStack {
    /// Builds the stack of `home` on `store`. It takes no lease before [`run`](Self::run).
    /// `serving` says whether this node serves the home now (its slot's flag).
    pub async fn build(
        parts: &StackParts,
        home: &str,
        store: Arc<dyn RegistrationStore>,
        serving: Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<Self, String> {
        let config = &parts.config;
        // With a store several nodes can share, the node is a cluster member and holds the
        // shards whose leases it acquires; on the in-memory store it holds every shard.
        let tables = store.clone().cluster_tables();
        let directory = Arc::new(Directory::default());
        let clustered = tables.as_ref().zip(parts.peers.as_ref());
        let (ownership, forwarder) = match clustered {
            Some(((_, leases), peers)) => (
                Arc::new(Ownership::none()),
                Forwarder::clustered(
                    config.node.id.clone(),
                    home,
                    peers.clone(),
                    directory.clone(),
                    leases.clone(),
                    parts.metrics.cluster.clone(),
                    config.cluster.forward_timeout,
                ),
            ),
            None => (
                Arc::new(Ownership::every_shard(Epoch(0))),
                Forwarder::alone(config.cluster.forward_timeout),
            ),
        };
        let forwarder = Arc::new(forwarder);
        let subscriptions = Subscriptions::new(Deps {
            forwarder: forwarder.clone(),
            store: store.clone(),
            ownership: ownership.clone(),
            sender: parts.sender.clone(),
            rules: Coalescing {
                quiet: config.coalesce.quiet,
                max_delay: config.coalesce.max_delay,
                min_interval: config.coalesce.min_interval,
            },
            actors: config.actors.clone(),
            give_up_after: config.delivery.badge_lifetime,
            metrics: parts.metrics.clone(),
            live: Default::default(),
        });
        shard_keeper::serve_held(&subscriptions, &ownership)
            .await
            .map_err(|e| e.to_string())?;
        let router = Router::new(subscriptions.clone(), store.clone(), forwarder);
        let registry = Registry::new(
            store.clone(),
            router.clone(),
            crate::node::registry_settings(config, home),
        );
        let cluster = match (tables, &parts.peers) {
            (Some((members, leases)), Some(peers)) => Some(Arc::new(ClusterNode::new(
                ClusterSettings {
                    node_id: config.node.id.clone(),
                    region: config.node.region.clone(),
                    address: parts.advertise.clone(),
                    member_ttl: config.cluster.member_ttl,
                    heartbeat: config.cluster.heartbeat,
                    lease_ttl: config.cluster.lease_ttl,
                    release_grace: config.node.shutdown_grace / 2,
                    peer_secret_set: !config.cluster.peer_secret.is_empty(),
                    serving: serving.clone(),
                },
                members,
                leases,
                ownership.clone(),
                directory,
                subscriptions.clone(),
                Some(peers.clone()),
                parts.metrics.cluster.clone(),
            ))),
            _ => None,
        };
        let sink = EwsSink::new(
            registry.clone(),
            router.clone(),
            serving,
            parts.metrics.clone(),
        );
        let peer = PeerApi::new(
            sink.clone(),
            router.clone(),
            subscriptions.clone(),
            cluster.clone(),
        );
        let admin = AdminApi::new(
            config.node.id.clone(),
            home.to_owned(),
            parts.advertise.clone(),
            ownership.clone(),
            subscriptions.clone(),
            router.clone(),
            cluster.clone(),
        );
        let (stop, _) = watch::channel(false);
        Ok(Self {
            home: home.to_owned(),
            store,
            registry,
            router,
            subscriptions,
            ownership,
            sink,
            peer,
            admin,
            cluster,
            stop,
            workers: Default::default(),
        })
    }

    /// Starts serving: the liveness sweeper, and for a cluster member its membership (it
    /// counts in placement from now on and takes the free leases placement gives it) and
    /// the keepers of its leases and shards. Call once the node's listeners answer.
    pub async fn run(&self, parts: &StackParts) -> Result<(), String> {
        let config = &parts.config;
        let mut workers = vec![crate::liveness::spawn_sweeper(
            self.store.clone(),
            self.router.clone(),
            config.liveness.status_frequency,
            config.liveness.sweep_interval,
            self.stop.subscribe(),
        )];
        if let Some(cluster) = &self.cluster {
            cluster.join().await;
            shard_keeper::serve_held(&self.subscriptions, &self.ownership)
                .await
                .map_err(|e| e.to_string())?;
            workers.push(cluster.clone().spawn(self.stop.subscribe()));
        }
        workers.push(shard_keeper::spawn(
            self.subscriptions.clone(),
            self.ownership.clone(),
            config.node.shutdown_grace / 2,
            self.stop.subscribe(),
        ));
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(workers);
        Ok(())
    }

    /// Hands this node's shards of the home over to the home's other nodes, while the
    /// node still answers for them.
    pub async fn hand_over(&self) {
        if let Some(cluster) = &self.cluster {
            cluster.drain().await;
        }
    }

    /// Stops the sweeper and the keepers, flushes the bursts still accepted (within
    /// `flush_grace`) and stops the actors, then releases the leases left and leaves the
    /// home's membership.
    pub async fn stop(&self, flush_grace: Duration) {
        let _ = self.stop.send(true);
        let workers: Vec<_> = self
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for worker in workers {
            let _ = worker.await;
        }
        self.subscriptions.drain_and_stop(flush_grace).await;
        if let Some(cluster) = &self.cluster {
            cluster.handovers_done().await;
            cluster.leave().await;
        }
    }
}
