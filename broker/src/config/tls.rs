//! TLS settings: the gRPC listener's (`[grpc.tls]`, which also secures this node's calls
//! to the other nodes), Redis's (`rediss://` with `redis.ca_file` and an optional client
//! certificate), and the gateway's (`[gateway.tls]`, read by the gateway crate). Every file
//! is read and checked by `check-config` and again at start.

use std::path::PathBuf;

use herald_gateway::tls::{self, TlsFiles};
use serde::{Deserialize, Serialize};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use super::Config;

/// TLS for the gRPC listener, and for this node's calls to the other nodes.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GrpcTlsConfig {
    /// This node's certificate (then any intermediates), PEM; also the client certificate
    /// this node presents to the other nodes.
    pub cert_file: PathBuf,
    /// Its private key, PEM.
    pub key_file: PathBuf,
    /// The CA that signed the nodes' certificates: this node checks the other nodes'
    /// with it when it calls them (and, with `client_auth`, checks every caller's).
    pub ca_file: PathBuf,
    /// Every caller must present a certificate `ca_file` signed (mutual TLS); the API
    /// token is still required.
    #[serde(default)]
    pub client_auth: bool,
    /// The name the other nodes' certificates are checked against; absent: the host of
    /// each node's advertised address.
    pub peer_server_name: Option<String>,
}

/// A TLS file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct TlsSetupError {
    what: &'static str,
    reason: String,
}

fn read(what: &'static str, path: &PathBuf) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|e| TlsSetupError {
        what,
        reason: format!("{}: {e}", path.display()),
    })
}

impl GrpcTlsConfig {
    fn files(&self) -> TlsFiles {
        TlsFiles {
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
        }
    }

    fn identity(&self) -> Result<Identity, TlsSetupError> {
        Ok(Identity::from_pem(
            read("grpc.tls.cert_file", &self.cert_file)?,
            read("grpc.tls.key_file", &self.key_file)?,
        ))
    }

    /// The listener's TLS: this node's identity and, with `client_auth`, the CA callers'
    /// certificates must chain to.
    pub fn server(&self) -> Result<ServerTlsConfig, TlsSetupError> {
        let mut config = ServerTlsConfig::new().identity(self.identity()?);
        if self.client_auth {
            config = config.client_ca_root(self.ca()?);
        }
        Ok(config)
    }

    fn ca(&self) -> Result<Certificate, TlsSetupError> {
        Ok(Certificate::from_pem(read(
            "grpc.tls.ca_file",
            &self.ca_file,
        )?))
    }

    /// The TLS of this node's calls to a node's gRPC listener (peers, and the `herald
    /// cluster` commands): the other node is checked against `ca_file`, and this node
    /// presents its own certificate — whether or not it asks for one itself, so that nodes
    /// that do not yet require client certificates can call those that do (a rolling
    /// change of `client_auth`).
    pub fn client(&self) -> Result<ClientTlsConfig, TlsSetupError> {
        let mut config = ClientTlsConfig::new()
            .ca_certificate(self.ca()?)
            .identity(self.identity()?);
        if let Some(name) = &self.peer_server_name {
            config = config.domain_name(name.clone());
        }
        Ok(config)
    }
}

impl Config {
    /// The certificates this node presents, by use, with when each stops being valid
    /// (seconds since the epoch): the earliest over the file's chain, since an
    /// intermediate that expires first ends it too. A file that cannot be read or parsed is
    /// left out (`check-config` and the start refuse it).
    pub fn certificate_expiries(&self) -> Vec<(&'static str, i64)> {
        let files = [
            ("gateway", self.gateway.tls.as_ref().map(|t| &t.cert_file)),
            ("grpc", self.grpc.tls.as_ref().map(|t| &t.cert_file)),
            ("redis_client", self.redis.client_cert_file.as_ref()),
        ];
        files
            .into_iter()
            .filter_map(|(name, path)| {
                let chain = tls::certificates(path?).ok()?;
                let earliest = chain.iter().filter_map(|c| tls::not_after(c)).min()?;
                Some((name, earliest))
            })
            .collect()
    }

    /// The certificates of `rediss://` connections: `redis.ca_file` (else the system's
    /// roots) and the client certificate, when configured. `None` when no file is set.
    pub fn redis_tls(&self) -> Result<Option<redis::TlsCertificates>, TlsSetupError> {
        let redis = &self.redis;
        let root_cert = match &redis.ca_file {
            Some(ca) => Some(read("redis.ca_file", ca)?),
            None => None,
        };
        let client_tls = match (&redis.client_cert_file, &redis.client_key_file) {
            (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                client_cert: read("redis.client_cert_file", cert)?,
                client_key: read("redis.client_key_file", key)?,
            }),
            _ => None,
        };
        if root_cert.is_none() && client_tls.is_none() {
            return Ok(None);
        }
        Ok(Some(redis::TlsCertificates {
            client_tls,
            root_cert,
        }))
    }

    /// What is wrong with the TLS settings: files that cannot be read or do not hold what
    /// they should, and settings that need another.
    pub(super) fn tls_problems(&self, p: &mut Vec<String>) {
        if let Some(files) = &self.gateway.tls
            && let Err(e) = tls::server_config(files, None, &[])
        {
            p.push(format!("gateway.tls: {e}"));
        }
        if let Some(grpc) = &self.grpc.tls {
            if let Some(name) = &grpc.peer_server_name
                && rustls::pki_types::ServerName::try_from(name.as_str()).is_err()
            {
                p.push(format!(
                    "grpc.tls.peer_server_name {name:?} is not a DNS name or an IP address"
                ));
            }
            match tls::roots(&grpc.ca_file) {
                Err(e) => p.push(format!("grpc.tls.ca_file: {e}")),
                Ok(_) => {
                    let client_ca = grpc.client_auth.then_some(grpc.ca_file.as_path());
                    if let Err(e) = tls::server_config(&grpc.files(), client_ca, &[]) {
                        p.push(format!("grpc.tls: {e}"));
                    }
                }
            }
        }
        self.redis_tls_problems(p);
    }

    fn redis_tls_problems(&self, p: &mut Vec<String>) {
        let redis = &self.redis;
        if redis.client_cert_file.is_some() != redis.client_key_file.is_some() {
            p.push("redis.client_cert_file and redis.client_key_file go together".to_owned());
        }
        let files = [
            ("redis.ca_file", &redis.ca_file),
            ("redis.client_cert_file", &redis.client_cert_file),
        ];
        for (name, path) in files {
            if let Some(path) = path
                && let Err(e) = tls::certificates(path)
            {
                p.push(format!("{name}: {e}"));
            }
        }
        if let Some(key) = &redis.client_key_file
            && let Err(e) = tls::private_key(key)
        {
            p.push(format!("redis.client_key_file: {e}"));
        }
        if let (Some(cert), Some(key)) = (&redis.client_cert_file, &redis.client_key_file)
            && let Err(e) = tls::client_identity(cert, key)
        {
            p.push(format!(
                "redis.client_cert_file and redis.client_key_file: {e}"
            ));
        }
        let configured = files.iter().any(|(_, path)| path.is_some());
        let urls = redis
            .url
            .iter()
            .map(|url| ("redis.url".to_owned(), url))
            .chain(
                self.homes
                    .iter()
                    .map(|(home, copy)| (format!("homes.\"{home}\".url"), &copy.url)),
            );
        for (name, url) in urls {
            if configured && !url.starts_with("rediss://") {
                p.push(format!(
                    "{name} is not rediss:// but redis TLS files are set: the connection would be in the clear"
                ));
            }
        }
    }
}
