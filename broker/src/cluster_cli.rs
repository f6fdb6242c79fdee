//! `herald cluster status` and `herald cluster drain NODE`: the operators' view of a
//! region's cluster, through the `herald.v1.Admin` service of any of its nodes.

use std::io::Write;
use std::time::{Duration, SystemTime};

use herald_broker::config::Config;
use herald_proto::v1::admin_client::AdminClient;
use herald_proto::v1::{ClusterStatusRequest, ClusterStatusResponse, DrainNodeRequest};

/// Which node to ask, and how.
pub(crate) struct Target {
    /// `host:port` of a node's gRPC listener.
    pub(crate) address: String,
    pub(crate) token: String,
    /// The node's gRPC is TLS (`[grpc.tls]`): how to check it, and what to present.
    tls: Option<tonic::transport::ClientTlsConfig>,
}

impl Target {
    /// The node `--node` names (else this configuration's own gRPC address), with the token
    /// `--token` names (else `HERALD_API_TOKEN`, else the configuration's first API token).
    pub(crate) fn new(
        config: &Config,
        node: Option<String>,
        token: Option<String>,
        env_token: Option<String>,
    ) -> Result<Self, String> {
        let address = node.unwrap_or_else(|| {
            if config.cluster.advertise.is_empty() {
                config.grpc.listen.to_string()
            } else {
                config.cluster.advertise.clone()
            }
        });
        let token = match token.or(env_token) {
            Some(token) => token,
            None => config
                .api_tokens()
                .map_err(|e| e.to_string())?
                .into_iter()
                .next()
                .ok_or(
                    "no API token: pass --token, set HERALD_API_TOKEN or configure auth.api_tokens",
                )?,
        };
        let tls = match &config.grpc.tls {
            Some(tls) => Some(tls.client().map_err(|e| e.to_string())?),
            None => None,
        };
        Ok(Self {
            address,
            token,
            tls,
        })
    }

    pub(crate) async fn client(&self) -> Result<AdminClient<tonic::transport::Channel>, String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint =
            tonic::transport::Endpoint::from_shared(format!("{scheme}://{}", self.address))
                .map_err(|e| format!("not a node address: {}: {e}", self.address))?
                .connect_timeout(Duration::from_secs(5));
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| format!("grpc.tls: {e}"))?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| format!("cannot reach {}: {e}", self.address))?;
        Ok(AdminClient::new(channel))
    }

    pub(crate) fn request<T>(
        &self,
        message: T,
        timeout: Duration,
    ) -> Result<tonic::Request<T>, String> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(timeout);
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.token)
                .parse()
                .map_err(|_| "the API token must be printable ASCII")?,
        );
        Ok(request)
    }
}

fn status_error(status: tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// The cluster serving `home` (default: the node's own region's home).
pub(crate) async fn status(
    target: &Target,
    home: Option<String>,
    out: &mut impl Write,
) -> Result<(), String> {
    let request = ClusterStatusRequest {
        region: home.unwrap_or_default(),
    };
    let answer = target
        .client()
        .await?
        .cluster_status(target.request(request, Duration::from_secs(10))?)
        .await
        .map_err(status_error)?
        .into_inner();
    print_status(&answer, out).map_err(|e| e.to_string())
}

pub(crate) async fn drain(
    target: &Target,
    node_id: String,
    out: &mut impl Write,
) -> Result<(), String> {
    let answer = target
        .client()
        .await?
        .drain_node(target.request(
            DrainNodeRequest {
                node_id: node_id.clone(),
            },
            Duration::from_secs(120),
        )?)
        .await
        .map_err(status_error)?
        .into_inner();
    writeln!(
        out,
        "{node_id}: released {} shard(s); it takes no more until it restarts",
        answer.shards_released
    )
    .map_err(|e| e.to_string())
}

fn print_status(status: &ClusterStatusResponse, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "region {}: {} shards, {} unowned",
        status.region, status.shard_count, status.unowned_shards
    )?;
    writeln!(
        out,
        "{:<20} {:<22} {:<6} {:<9} {:>6} {:>8}  LAST HEARTBEAT",
        "NODE", "ADDRESS", "ALIVE", "DRAINING", "SHARDS", "ACTORS"
    )?;
    for node in &status.nodes {
        let heartbeat = node
            .last_heartbeat
            .as_ref()
            .and_then(|t| SystemTime::try_from(*t).ok())
            .map(|t| humantime::format_rfc3339_millis(t).to_string())
            .unwrap_or_else(|| "-".to_owned());
        writeln!(
            out,
            "{:<20} {:<22} {:<6} {:<9} {:>6} {:>8}  {}",
            node.node_id,
            node.peer_address,
            if node.alive { "yes" } else { "no" },
            if node.draining { "yes" } else { "no" },
            node.shards_owned,
            node.live_actors,
            heartbeat
        )?;
    }
    Ok(())
}
