//! The node's configuration: one typed tree read from a TOML file, then overridden by
//! `HERALD__SECTION__KEY` environment variables. Every section has production-safe
//! defaults, so an empty file (or none) is a valid single-node, in-memory configuration.
//! Every key is documented in `docs/configuration.md`.

mod check;
mod credentials;
mod env;
mod sections;
mod tls;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use herald_cluster::ClusterConfig;
use herald_gateway::GatewayConfig;
use herald_workers::AppConfig;
use serde::{Deserialize, Serialize};

pub use check::Problems;
pub use herald_workers::DeliverySettings as DeliveryConfig;
pub use sections::{ActorsConfig, LivenessConfig};
pub use tls::{GrpcTlsConfig, TlsSetupError};

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub node: NodeConfig,
    pub gateway: GatewayConfig,
    pub grpc: GrpcConfig,
    pub admin: AdminConfig,
    pub redis: RedisConfig,
    pub auth: AuthConfig,
    pub coalesce: CoalesceConfig,
    pub actors: ActorsConfig,
    pub liveness: LivenessConfig,
    pub delivery: DeliveryConfig,
    pub telemetry: TelemetryConfig,
    pub cluster: ClusterConfig,
    /// The other home regions, as reachable from this region, by region.
    pub homes: std::collections::BTreeMap<String, HomeCopyConfig>,
    pub apps: Vec<AppConfig>,
}

/// Another home region's Redis as reachable from this region: a replica of that home's
/// primary, until an operator promotes it here.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HomeCopyConfig {
    /// `redis://host:port[/db]` of the copy (one server; not a Redis Cluster).
    pub url: String,
}

impl fmt::Debug for HomeCopyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A Redis URL may carry a password.
        f.debug_struct("HomeCopyConfig")
            .field("url", &"<redacted>")
            .finish()
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Unique per node.
    pub id: String,
    /// This node's region.
    pub region: String,
    /// Base of the callback URLs given to Exchange.
    pub public_url: String,
    /// How long shutdown waits for in-flight work before giving up.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Allows an `http://` `public_url` on a host other than loopback (a test setup only:
    /// callback tokens would cross the network in the clear).
    pub insecure_public_url: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            id: "herald-1".to_owned(),
            region: "us-east-1".to_owned(),
            public_url: "http://127.0.0.1:8080".to_owned(),
            shutdown_grace: Duration::from_secs(10),
            insecure_public_url: false,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    pub listen: SocketAddr,
    /// Serve gRPC over TLS (`[grpc.tls]`), optionally requiring client certificates; the
    /// other nodes are then called over TLS too.
    pub tls: Option<GrpcTlsConfig>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            tls: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
        }
    }
}

#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://host:port[/db]`; absent: the embedded in-memory store.
    pub url: Option<String>,
    pub key_prefix: String,
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// `url` is one node of a Redis Cluster; the client discovers the others.
    pub cluster: bool,
    /// The CA that signed the Redis servers' certificates, for `rediss://` URLs (this
    /// region's and `[homes]`'); absent: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// A client certificate and its key, for servers that require one
    /// (`tls-auth-clients yes`).
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            key_prefix: "herald".to_owned(),
            response_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(1),
            cluster: false,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A Redis URL may carry a password.
        f.debug_struct("RedisConfig")
            .field("url", &self.url.as_ref().map(|_| "<redacted>"))
            .field("key_prefix", &self.key_prefix)
            .field("response_timeout", &self.response_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("cluster", &self.cluster)
            .field("ca_file", &self.ca_file)
            .field("client_cert_file", &self.client_cert_file)
            .field("client_key_file", &self.client_key_file)
            .finish()
    }
}

#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Bearer tokens accepted from gRPC callers.
    pub api_tokens: Vec<String>,
    /// A file with one more token per line (kept out of the main file and its backups).
    pub api_tokens_file: Option<PathBuf>,
    /// Calls per second each API token may make, sustained; beyond it and its burst:
    /// `RESOURCE_EXHAUSTED`. 0: no limit.
    pub requests_per_second: u32,
    pub burst: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            api_tokens: Vec::new(),
            api_tokens_file: None,
            requests_per_second: 1_000,
            burst: 2_000,
        }
    }
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field(
                "api_tokens",
                &format_args!("<{} redacted>", self.api_tokens.len()),
            )
            .field("api_tokens_file", &self.api_tokens_file)
            .field("requests_per_second", &self.requests_per_second)
            .field("burst", &self.burst)
            .finish()
    }
}

/// Burst coalescing, applied by the subscription actors.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CoalesceConfig {
    /// Quiet time that ends a burst.
    #[serde(with = "humantime_serde")]
    pub quiet: Duration,
    /// Longest a burst is held after its first event.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// Least time between two pushes to one device.
    #[serde(with = "humantime_serde")]
    pub min_interval: Duration,
}

impl Default for CoalesceConfig {
    fn default() -> Self {
        Self {
            quiet: Duration::from_secs(1),
            max_delay: Duration::from_secs(3),
            min_interval: Duration::from_secs(1),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// A `tracing` filter (`RUST_LOG` syntax); `RUST_LOG` itself wins when set.
    pub log_filter: String,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// OTLP/gRPC endpoint for traces (e.g. `http://127.0.0.1:4317`); absent: no export.
    pub otlp_endpoint: Option<String>,
    /// The share of traces exported (0 to 1), decided by trace id, so a trace is kept or
    /// dropped whole on every node.
    pub trace_sample_ratio: f64,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_filter: "info".to_owned(),
            log_format: LogFormat::Text,
            otlp_endpoint: None,
            trace_sample_ratio: 1.0,
        }
    }
}

/// Why a configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("environment variable {name}: {message}")]
    Env { name: String, message: String },
}

impl Config {
    /// Reads `path` (if any), applies the `HERALD__…` entries of `env`, and builds the tree.
    pub fn load(path: Option<&Path>, env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let (origin, text) = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                (path.display().to_string(), text)
            }
            None => ("<defaults>".to_owned(), String::new()),
        };
        let mut table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: origin.clone(),
            message: e.to_string(),
        })?;
        env::apply_overrides(&mut table, env)?;
        Config::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Parse {
            path: origin,
            message: e.to_string(),
        })
    }

    /// The API tokens from `auth.api_tokens` and `auth.api_tokens_file`.
    pub fn api_tokens(&self) -> Result<Vec<String>, ConfigError> {
        let mut tokens = self.auth.api_tokens.clone();
        if let Some(path) = &self.auth.api_tokens_file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            tokens.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned),
            );
        }
        Ok(tokens)
    }

    /// The public URL without a trailing slash.
    pub fn public_base(&self) -> &str {
        self.node.public_url.trim_end_matches('/')
    }
}

#[cfg(test)]
mod tests;
