//! The operator's side of cross-region replication, for `herald region promote`: one
//! home's copy in this region (a Redis server), asked its role and offsets, promoted to
//! primary, made to follow another, and its shards' epochs raised. Replication itself is
//! Redis's own; Herald only says which copy is the primary.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{ConnectionAddr, ConnectionInfo};

use super::keys::Keys;
use crate::store::StoreError;
use herald_cluster::ShardId;

/// Sets every shard's epoch to the larger of its value plus one and the server's clock in
/// milliseconds (KEYS: the epochs, then the home's generation key), and records the largest
/// epoch set as the home's generation: returned. A primary lost with the last
/// increments unreplicated issued at most a few epochs per shard past its replica's; to
/// have issued more than the clock jumps, it would have had to acquire one shard's lease
/// more than once a millisecond between two promotions.
const RAISE_EPOCHS: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local top = 0
for i = 1, #KEYS - 1 do
  local raised = math.max(tonumber(redis.call('GET', KEYS[i]) or '0') + 1, now)
  redis.call('SET', KEYS[i], string.format('%d', raised))
  if raised > top then top = raised end
end
redis.call('SET', KEYS[#KEYS], string.format('%d', top))
return string.format('%d', top)
"#;

/// A copy's place in replication, from `INFO replication`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replication {
    pub primary: bool,
    /// A replica's primary, as the replica reaches it.
    pub follows: Option<(String, u16)>,
    /// A replica's link to its primary is up.
    pub link_up: bool,
    /// How long a replica's link has been down, if it was ever up (`None`: up, or never
    /// synced).
    pub link_down_for: Option<Duration>,
    /// The replication offset this copy has applied (a primary's: what it has written).
    pub offset: u64,
    /// A primary's replicas that are connected.
    pub replicas: usize,
    /// The replication history this copy is in (a replica's: its primary's, once synced).
    pub replid: Option<String>,
}

/// One home's copy, reached for administration.
#[derive(Clone)]
pub struct CopyAdmin {
    conn: MultiplexedConnection,
    info: ConnectionInfo,
    key_prefix: String,
    keys: Keys,
    timeout: Duration,
}

impl std::fmt::Debug for CopyAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyAdmin").finish_non_exhaustive()
    }
}

impl CopyAdmin {
    /// Connects to the copy at `url` (keys under `key_prefix`, certificates `tls` for a
    /// `rediss://` URL), waiting at most `timeout`.
    pub async fn open(
        url: &str,
        key_prefix: &str,
        tls: Option<&redis::TlsCertificates>,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        let info = super::conn::client(url, tls)?.get_connection_info().clone();
        Self::connect(info, key_prefix, timeout).await
    }

    async fn connect(
        info: ConnectionInfo,
        key_prefix: &str,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        let client = redis::Client::open(info.clone())?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok(Self {
            conn,
            info,
            key_prefix: key_prefix.to_owned(),
            keys: Keys::new(key_prefix),
            timeout,
        })
    }

    /// Another server of the same home at `host:port`, reached with this one's
    /// credentials (and TLS).
    pub async fn sibling(&self, host: &str, port: u16) -> Result<Self, StoreError> {
        let (host, addr) = (host.to_owned(), self.info.addr());
        let addr = match addr {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host,
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(host, port),
        };
        let info = self.info.clone().set_addr(addr);
        Self::connect(info, &self.key_prefix, self.timeout).await
    }

    /// `host:port` of this copy, as its URL names it.
    pub fn address(&self) -> Option<(String, u16)> {
        match self.info.addr() {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                Some((host.clone(), *port))
            }
            _ => None,
        }
    }

    pub async fn replication(&self) -> Result<Replication, StoreError> {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(parse_replication(&info))
    }

    /// Holds every client's writes for `pause` (replication goes on).
    pub async fn pause_writes(&self, pause: Duration) -> Result<(), StoreError> {
        let ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX);
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(ms)
            .arg("WRITE")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    pub async fn unpause(&self) -> Result<(), StoreError> {
        let _: () = redis::cmd("CLIENT")
            .arg("UNPAUSE")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Stops following a primary: this copy takes writes from now on.
    pub async fn make_primary(&self) -> Result<(), StoreError> {
        let _: () = redis::cmd("REPLICAOF")
            .arg("NO")
            .arg("ONE")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Follows the primary at `host:port` (this copy's data is replaced by the primary's).
    pub async fn follow(&self, host: &str, port: u16) -> Result<(), StoreError> {
        let _: () = redis::cmd("REPLICAOF")
            .arg(host)
            .arg(port)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Records that home `home` was promoted at `generation` (its raised epochs).
    pub async fn set_generation(&self, home: &str, generation: u64) -> Result<(), StoreError> {
        let _: () = redis::cmd("SET")
            .arg(self.keys.home_generation(home))
            .arg(generation)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// The generation of home `home` this copy knows (0: never promoted).
    pub async fn generation(&self, home: &str) -> Result<u64, StoreError> {
        let value: Option<String> = redis::cmd("GET")
            .arg(self.keys.home_generation(home))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(value.and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    /// `min-replicas-to-write` (0 when unreadable).
    pub async fn min_replicas_to_write(&self) -> u64 {
        self.config_number("min-replicas-to-write")
            .await
            .unwrap_or(0)
    }

    /// `min-replicas-max-lag` (Redis's default of 10 s when unreadable).
    pub async fn max_lag(&self) -> Duration {
        Duration::from_secs(
            self.config_number("min-replicas-max-lag")
                .await
                .unwrap_or(10),
        )
    }

    /// A numeric setting (`CONFIG GET`), if the server tells it.
    async fn config_number(&self, name: &str) -> Option<u64> {
        let pair: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg(name)
            .query_async(&mut self.conn.clone())
            .await
            .ok()?;
        pair.get(1)?.parse().ok()
    }

    /// Raises every shard's epoch above anything issued before and records the largest as
    /// `home`'s generation (see [`RAISE_EPOCHS`]): that generation.
    pub async fn raise_epochs(&self, home: &str) -> Result<u64, StoreError> {
        let script = redis::Script::new(RAISE_EPOCHS);
        let mut invocation = script.prepare_invoke();
        for shard in ShardId::all() {
            invocation.key(self.keys.epoch(shard));
        }
        invocation.key(self.keys.home_generation(home));
        let top: String = invocation.invoke_async(&mut self.conn.clone()).await?;
        top.parse().map_err(|_| StoreError::Corrupt {
            key: "the raised epochs".into(),
            reason: format!("not a number: {top}"),
        })
    }
}

/// The fields of `INFO replication` Herald reads.
fn parse_replication(info: &str) -> Replication {
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.trim().strip_prefix(name)?.strip_prefix(':'))
    };
    let primary = field("role") == Some("master");
    let offset = if primary {
        field("master_repl_offset")
    } else {
        field("slave_repl_offset")
    }
    .and_then(|v| v.parse().ok())
    .unwrap_or(0);
    let follows = match (field("master_host"), field("master_port")) {
        (Some(host), Some(port)) if !primary => port.parse().ok().map(|p| (host.to_owned(), p)),
        _ => None,
    };
    Replication {
        primary,
        follows,
        link_up: field("master_link_status") == Some("up"),
        link_down_for: field("master_link_down_since_seconds")
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs),
        offset,
        replicas: field("connected_slaves")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        replid: field("master_replid").map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_names_its_primary_and_offset() {
        let info = "# Replication\r\nrole:slave\r\nmaster_host:10.0.0.7\r\nmaster_port:6380\r\nmaster_link_status:down\r\nmaster_link_down_since_seconds:37\r\nslave_repl_offset:4242\r\nconnected_slaves:0\r\nmaster_repl_offset:4242\r\n";
        assert_eq!(
            parse_replication(info),
            Replication {
                primary: false,
                follows: Some(("10.0.0.7".into(), 6380)),
                link_up: false,
                link_down_for: Some(Duration::from_secs(37)),
                offset: 4242,
                replicas: 0,
                replid: None,
            }
        );
    }

    #[test]
    fn a_primary_counts_its_replicas() {
        let info = "role:master\r\nconnected_slaves:2\r\nslave0:ip=127.0.0.1,port=7001,state=online,offset=99,lag=0\r\nmaster_repl_offset:120\r\n";
        let replication = parse_replication(info);
        assert!(replication.primary);
        assert_eq!(replication.offset, 120);
        assert_eq!(replication.replicas, 2);
        assert_eq!(replication.follows, None);
    }
}
