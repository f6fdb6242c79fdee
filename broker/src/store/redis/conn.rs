//! The store's connection: one Redis server (with its replicas) through a reconnecting
//! connection manager, or a Redis Cluster through the cluster client, which sends each
//! command to the primary of its key's slot. Both connect lazily, so a node starts while
//! Redis is down.
//!
//! A pipeline is sent to one server, so on a cluster it may only hold one slot's commands:
//! [`Conn::each`] runs commands that may span slots (a registration's location beside its
//! hash, every shard's lease), pipelined on one server, concurrently on a cluster.

use std::sync::LazyLock;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult, Value};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RedisLabels {
    /// `command` (one command or script) or `pipeline`.
    pub kind: &'static str,
}

/// The Redis client's answer times and failures. They are process-wide: a node has one
/// client per copy of a home, and its metrics registry takes these.
#[derive(Debug)]
pub struct RedisMetrics {
    pub seconds: Family<RedisLabels, Histogram, fn() -> Histogram>,
    pub errors: Family<RedisLabels, Counter>,
}

fn redis_histogram() -> Histogram {
    // 50 µs … ~1.6 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

pub static REDIS: LazyLock<RedisMetrics> = LazyLock::new(|| RedisMetrics {
    seconds: Family::new_with_constructor(redis_histogram),
    errors: Family::default(),
});

/// A client of `url`, with `tls`'s certificates when given.
pub(crate) fn client(
    url: impl redis::IntoConnectionInfo,
    tls: Option<&redis::TlsCertificates>,
) -> redis::RedisResult<redis::Client> {
    match tls {
        Some(certs) => redis::Client::build_with_tls(url, certs.clone()),
        None => redis::Client::open(url),
    }
}

/// `call`, timed and its failure counted under `kind`.
fn timed<'a, T: Send + 'a>(kind: &'static str, call: RedisFuture<'a, T>) -> RedisFuture<'a, T> {
    Box::pin(async move {
        let started = Instant::now();
        let result = call.await;
        let labels = RedisLabels { kind };
        REDIS
            .seconds
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            REDIS.errors.get_or_create(&labels).inc();
        }
        result
    })
}

#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    /// Runs `commands` and answers each one's reply, in order.
    pub(super) async fn each<T: FromRedisValue>(&self, commands: Vec<Cmd>) -> RedisResult<Vec<T>> {
        match self {
            Self::Single(_) => {
                if commands.is_empty() {
                    return Ok(Vec::new());
                }
                let mut pipe = redis::pipe();
                for command in commands {
                    pipe.add_command(command);
                }
                pipe.query_async(&mut self.clone()).await
            }
            Self::Cluster(_) => {
                let calls = commands.into_iter().map(|command| {
                    let mut conn = self.clone();
                    async move { command.query_async::<T>(&mut conn).await }
                });
                futures_util::future::try_join_all(calls).await
            }
        }
    }

    /// Runs `commands` and answers each one's outcome: all of them fail together on one
    /// server (one pipeline); on a cluster each stands alone, so a slot whose primary is
    /// failing over costs only its own commands.
    pub(super) async fn each_settled<T: FromRedisValue>(
        &self,
        commands: Vec<Cmd>,
    ) -> Vec<RedisResult<T>> {
        match self {
            Self::Single(_) => {
                let n = commands.len();
                match self.each::<T>(commands).await {
                    Ok(answers) => answers.into_iter().map(Ok).collect(),
                    Err(err) => (0..n).map(|_| Err(err.clone())).collect(),
                }
            }
            Self::Cluster(_) => {
                let calls = commands.into_iter().map(|command| {
                    let mut conn = self.clone();
                    async move { command.query_async::<T>(&mut conn).await }
                });
                futures_util::future::join_all(calls).await
            }
        }
    }

    /// Runs `commands` in order (each one after the previous one's answer on a cluster) and
    /// answers each one's reply.
    pub(super) async fn in_order(&self, commands: Vec<Cmd>) -> RedisResult<Vec<Value>> {
        match self {
            Self::Single(_) => self.each(commands).await,
            Self::Cluster(_) => {
                let mut conn = self.clone();
                let mut answers = Vec::with_capacity(commands.len());
                for command in commands {
                    answers.push(command.query_async(&mut conn).await?);
                }
                Ok(answers)
            }
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let call = match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        };
        timed("command", call)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let call = match self {
            Self::Single(conn) => conn.req_packed_commands(cmd, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        };
        timed("pipeline", call)
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}
