//! `herald region promote HOME`: the operator's failover and failback. It makes this
//! region's copy of HOME the home's primary, raises every HOME shard's epoch above anything
//! issued before, and waits until this region's nodes serve HOME.
//!
//! - When HOME's current primary answers (a planned move, a failback), its writes are
//!   paused, this copy catches up with it, is promoted, and the old primary is made to
//!   follow it: nothing is lost and no two copies take writes at once.
//! - When it does not answer (its region is lost), this copy is promoted as it is: the
//!   writes of the last replication lag are lost.
//!
//! The nodes notice the promotion themselves (they check their copies' roles every
//! heartbeat) and take HOME's leases once the old holders' have lapsed.

use std::io::Write;
use std::time::{Duration, Instant};

use herald_broker::config::Config;
use herald_broker::store::CopyAdmin;
use herald_proto::v1::ClusterStatusRequest;

use crate::cluster_cli::Target;

/// Longest a Redis command of the promotion may take.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the old primary's writes are held while this copy catches up.
const PAUSE: Duration = Duration::from_secs(10);
/// How often progress is polled.
const POLL: Duration = Duration::from_millis(100);

/// What the operator asked.
pub(crate) struct Promote {
    pub(crate) home: String,
    /// Other copies of HOME to follow the new primary (`host:port`): those of the third
    /// region after a region loss, which still follow the lost primary.
    pub(crate) replicas: Vec<String>,
    /// `host:port` by which the other copies reach this one; default: its URL's.
    pub(crate) advertise: Option<String>,
    /// Longest wait for this region's nodes to serve HOME.
    pub(crate) wait: Duration,
}

/// This region's copy of `home`: `[redis]` for the node's own region, else `[homes.HOME]`.
fn copy_url<'c>(config: &'c Config, home: &str) -> Result<&'c str, String> {
    if home == config.node.region {
        return config
            .redis
            .url
            .as_deref()
            .ok_or_else(|| "this node has no [redis]: there is nothing to promote".to_owned());
    }
    config
        .homes
        .get(home)
        .map(|copy| copy.url.as_str())
        .ok_or_else(|| {
            format!(
                "no copy of home {} in this region: configure [homes.\"{}\"] url",
                home.escape_debug(),
                home.escape_debug()
            )
        })
}

pub(crate) async fn promote(
    config: &Config,
    target: &Target,
    request: Promote,
    out: &mut impl Write,
) -> Result<(), String> {
    let say = |out: &mut dyn Write, line: String| {
        let _ = writeln!(out, "{line}");
    };
    let home = &request.home;
    let url = copy_url(config, home).map_err(|e| format!("config: {e}"))?;
    let prefix = &config.redis.key_prefix;
    let copy = CopyAdmin::open(url, prefix, REDIS_TIMEOUT)
        .await
        .map_err(|e| format!("cannot reach this region's copy of {home}: {e}"))?;
    let advertised = match &request.advertise {
        Some(address) => split_address(address)?,
        None => copy
            .address()
            .ok_or("this copy's URL names no TCP address: pass --advertise HOST:PORT")?,
    };
    let state = copy.replication().await.map_err(|e| e.to_string())?;
    if state.primary {
        say(
            out,
            format!("{home}: this region's copy is the primary already"),
        );
    } else {
        let old = match &state.follows {
            Some((host, port)) => match copy.sibling(host, *port).await {
                Ok(old) => match old.replication().await {
                    Ok(r) if r.primary => Some((old, host.clone(), *port)),
                    _ => None,
                },
                Err(_) => None,
            },
            None => None,
        };
        match old {
            Some((old, host, port)) => {
                switch_over(&copy, &old, &advertised).await?;
                say(
                    out,
                    format!(
                        "{home}: switched over from {host}:{port}, which now follows this copy; nothing was lost"
                    ),
                );
            }
            None => {
                copy.make_primary().await.map_err(|e| e.to_string())?;
                say(
                    out,
                    format!(
                        "{home}: the primary{} does not answer; this copy is promoted as it was (offset {}): writes of the last replication lag are lost",
                        state
                            .follows
                            .as_ref()
                            .map(|(h, p)| format!(" {h}:{p}"))
                            .unwrap_or_default(),
                        state.offset
                    ),
                );
            }
        }
    }
    for replica in &request.replicas {
        let (host, port) = split_address(replica)?;
        let followed = match copy.sibling(&host, port).await {
            Ok(other) => other.follow(&advertised.0, advertised.1).await,
            Err(e) => Err(e),
        };
        match followed {
            Ok(()) => say(out, format!("{home}: {replica} follows this copy")),
            Err(e) => say(
                out,
                format!("{home}: warning: cannot make {replica} follow this copy: {e}"),
            ),
        }
    }
    let top = copy.raise_epochs().await.map_err(|e| e.to_string())?;
    say(
        out,
        format!("{home}: every shard's epoch raised (now up to {top})"),
    );
    let started = Instant::now();
    wait_served(target, home, &config.node.region, request.wait).await?;
    say(
        out,
        format!(
            "{home}: served in {} ({} ms after the epochs were raised)",
            config.node.region,
            started.elapsed().as_millis()
        ),
    );
    Ok(())
}

/// The planned move: `old`'s writes held until `copy` has all of them, `copy` promoted,
/// `old` made to follow it, its writes let go (they are refused now: it is a replica).
async fn switch_over(
    copy: &CopyAdmin,
    old: &CopyAdmin,
    advertised: &(String, u16),
) -> Result<(), String> {
    old.pause_writes(PAUSE).await.map_err(|e| e.to_string())?;
    let caught_up = async {
        let target = old.replication().await?.offset;
        let deadline = Instant::now() + PAUSE / 2;
        while copy.replication().await?.offset < target {
            if Instant::now() > deadline {
                return Ok(false);
            }
            tokio::time::sleep(POLL / 10).await;
        }
        Ok::<_, herald_broker::store::StoreError>(true)
    };
    match caught_up.await {
        Ok(true) => {}
        outcome => {
            let _ = old.unpause().await;
            return Err(match outcome {
                Err(e) => format!("cannot compare the copies' offsets: {e}"),
                _ => "this copy did not catch up with the primary in time; nothing changed"
                    .to_owned(),
            });
        }
    }
    copy.make_primary().await.map_err(|e| e.to_string())?;
    let followed = old.follow(&advertised.0, advertised.1).await;
    let _ = old.unpause().await;
    followed.map_err(|e| format!("promoted, but the old primary does not follow this copy: {e}; make it a replica (REPLICAOF) before it takes writes"))
}

/// Polls this region's node until HOME's shards are all held by live nodes of `region`.
async fn wait_served(
    target: &Target,
    home: &str,
    region: &str,
    wait: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + wait;
    loop {
        let asked = async {
            let request = target.request(
                ClusterStatusRequest {
                    region: home.to_owned(),
                },
                REDIS_TIMEOUT,
            )?;
            target
                .client()
                .await?
                .cluster_status(request)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| s.message().to_owned())
        };
        let last = match asked.await {
            Ok(status) => {
                let elsewhere: u32 = status
                    .nodes
                    .iter()
                    .filter(|n| n.region != region)
                    .map(|n| n.shards_owned)
                    .sum();
                if status.unowned_shards == 0 && elsewhere == 0 {
                    return Ok(());
                }
                format!(
                    "{} shard(s) not held, {elsewhere} held by nodes of other regions",
                    status.unowned_shards
                )
            }
            Err(e) => e,
        };
        if Instant::now() > deadline {
            return Err(format!(
                "{home} is not served here after {wait:?} ({last}); the copy is promoted: see `herald cluster status`"
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn split_address(address: &str) -> Result<(String, u16), String> {
    address
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host.to_owned(), port.parse().ok()?)))
        .ok_or_else(|| format!("not a HOST:PORT address: {address}"))
}
