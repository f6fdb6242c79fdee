//! Getting a request to the node that holds its shard: this node when it serves the shard,
//! else one hop over `herald.v1.Peer` to the owner placement names (or, when that node
//! says it is not the owner, to the holder the lease table names). A request is retried,
//! with a short back-off, while the shard changes hands, until `cluster.forward_timeout`;
//! then it fails as unavailable (503 to Exchange, `UNAVAILABLE` to an API caller) — never
//! as anything that would tell Exchange to stop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use herald_cluster::lease::holder_node;
use herald_cluster::peer::Peers;
use herald_cluster::{Directory, LeaseTable, NotOwner, ShardId};
use herald_proto::v1::peer_client::PeerClient;
use tonic::transport::Channel;

use super::metrics::{ClusterMetrics, ForwardLabels, KindLabels};
use crate::subscription::DeliverError;

/// First wait before trying a shard again while it changes hands; doubled up to
/// [`MAX_RETRY_WAIT`].
const RETRY_WAIT: Duration = Duration::from_millis(25);
const MAX_RETRY_WAIT: Duration = Duration::from_millis(250);

/// What one try at a node gave.
#[derive(Debug)]
pub enum Hop<R> {
    /// The node that holds the shard answered.
    Done(R),
    /// The node tried does not hold the shard (now).
    NotHere,
}

/// One call to a peer: its client, and how to make a request of it.
#[derive(Debug)]
pub struct PeerCall {
    pub client: PeerClient<Channel>,
    peers: Peers,
    deadline: Duration,
    /// The node meant to answer: a process that is not it (an address reused, a member
    /// of another cluster) refuses the call.
    node: String,
    /// The home the request is for: a node serves each of its homes apart.
    home: Arc<str>,
}

impl PeerCall {
    /// `message` as an authenticated request for the node meant, with what is left of the
    /// forward's time.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = self.peers.request(message, self.deadline);
        if let Ok(node) = self.node.parse() {
            request.metadata_mut().insert(TARGET_NODE_KEY, node);
        }
        if let Ok(home) = self.home.parse() {
            request.metadata_mut().insert(HOME_KEY, home);
        }
        crate::telemetry::inject_current(request.metadata_mut());
        request
    }
}

/// Metadata naming the node a peer call is meant for.
pub(super) const TARGET_NODE_KEY: &str = "herald-target-node";

/// Metadata naming the home region a peer call is for.
pub const HOME_KEY: &str = "herald-home";

/// The other nodes, as far as forwarding needs them.
#[derive(Debug)]
struct Remote {
    node_id: String,
    home: Arc<str>,
    peers: Peers,
    directory: Arc<Directory>,
    leases: Arc<dyn LeaseTable>,
    metrics: ClusterMetrics,
}

/// Routes a request for a shard to the node that holds it.
#[derive(Debug)]
pub struct Forwarder {
    remote: Option<Remote>,
    timeout: Duration,
}

impl Forwarder {
    /// A node alone, which serves every shard itself from its start: a request for a shard
    /// it does not serve is refused at once.
    pub fn alone(timeout: Duration) -> Self {
        Self {
            remote: None,
            timeout,
        }
    }

    pub fn clustered(
        node_id: String,
        home: &str,
        peers: Peers,
        directory: Arc<Directory>,
        leases: Arc<dyn LeaseTable>,
        metrics: ClusterMetrics,
        timeout: Duration,
    ) -> Self {
        Self {
            remote: Some(Remote {
                node_id,
                home: home.into(),
                peers,
                directory,
                leases,
                metrics,
            }),
            timeout,
        }
    }

    /// Runs `local` while this node serves `shard`, else `remote` on the shard's owner, until
    /// one of them is answered by the shard's holder or `cluster.forward_timeout` passes.
    /// `remote`'s `Err` is a transport failure or a refusal of the peer (a dead node, an
    /// overloaded one): another try follows, after the owner is looked up again.
    pub async fn to_owner<'f, R: Send>(
        &self,
        kind: &'static str,
        shard: ShardId,
        local: impl Fn() -> BoxFuture<'f, Hop<R>> + Send + Sync,
        remote: impl Fn(PeerCall) -> BoxFuture<'f, Result<Hop<R>, tonic::Status>> + Send + Sync,
    ) -> Result<R, DeliverError> {
        let deadline = Instant::now() + self.timeout;
        let mut wait = RETRY_WAIT;
        let mut ask_the_lease_table = false;
        loop {
            if let Hop::Done(answer) = local().await {
                return Ok(answer);
            }
            let Some(cluster) = &self.remote else {
                // Alone, this node serves every shard it will ever serve from its start.
                return Err(DeliverError::NotOwner(NotOwner(shard)));
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                cluster.count(kind, "unavailable");
                return Err(DeliverError::NotOwner(NotOwner(shard)));
            }
            if let Some((node, address)) = cluster.owner(shard, ask_the_lease_table).await {
                match cluster.peers.client(&address) {
                    Ok(client) => {
                        let started = Instant::now();
                        // The call's own deadline does not cover the time a request waits for
                        // a connection to a peer that does not answer: bounded here.
                        // A try gets at most a third of the forward's time, so a peer that
                        // does not answer leaves time to ask the lease table.
                        let this_try = remaining.min(self.timeout / 3);
                        let answer = tokio::time::timeout(
                            this_try,
                            remote(PeerCall {
                                client,
                                peers: cluster.peers.clone(),
                                deadline: this_try,
                                node,
                                home: cluster.home.clone(),
                            }),
                        )
                        .await
                        .unwrap_or_else(|_| {
                            Err(tonic::Status::deadline_exceeded(
                                "the peer did not answer in time",
                            ))
                        });
                        cluster
                            .metrics
                            .forward_duration
                            .get_or_create(&KindLabels { kind })
                            .observe(started.elapsed().as_secs_f64());
                        match answer {
                            Ok(Hop::Done(answer)) => {
                                cluster.count(kind, "ok");
                                return Ok(answer);
                            }
                            Ok(Hop::NotHere) => cluster.count(kind, "not_owner"),
                            Err(status) => {
                                cluster.count(kind, "error");
                                tracing::debug!(%shard, %address, code = ?status.code(), message = status.message(), "a forwarded request failed; the owner is looked up again");
                            }
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "a member advertises an address that cannot be called")
                    }
                }
            }
            ask_the_lease_table = !ask_the_lease_table;
            tokio::time::sleep(wait.min(deadline.saturating_duration_since(Instant::now()))).await;
            wait = (wait * 2).min(MAX_RETRY_WAIT);
        }
    }

    /// A call to member `node_id` (for `DrainNode` of another node), with `deadline`.
    pub fn call_to(&self, node_id: &str, deadline: Duration) -> Option<PeerCall> {
        let remote = self.remote.as_ref()?;
        let address = remote.directory.snapshot().address(node_id)?.to_owned();
        Some(PeerCall {
            client: remote.peers.client(&address).ok()?,
            peers: remote.peers.clone(),
            deadline,
            node: node_id.to_owned(),
            home: remote.home.clone(),
        })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl Remote {
    /// The node that holds `shard` by placement or, with `ask_the_lease_table`, by its
    /// lease, and its address; `None` when that is this node or nobody.
    async fn owner(&self, shard: ShardId, ask_the_lease_table: bool) -> Option<(String, String)> {
        let snapshot = self.directory.snapshot();
        let node = if ask_the_lease_table {
            let holders = self.leases.holders(&[shard]).await.ok()?;
            let (holder, _) = holders.into_iter().next()??;
            holder_node(&holder).to_owned()
        } else {
            snapshot.owner(shard)?.to_owned()
        };
        if node == self.node_id {
            return None;
        }
        let address = snapshot.address(&node)?.to_owned();
        Some((node, address))
    }

    fn count(&self, kind: &'static str, outcome: &'static str) {
        self.metrics
            .forwards
            .get_or_create(&ForwardLabels { kind, outcome })
            .inc();
    }
}
