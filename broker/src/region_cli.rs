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
use herald_broker::store::{CopyAdmin, Replication};
use herald_proto::v1::ClusterStatusRequest;

use crate::cluster_cli::Target;

/// Longest a Redis command of the promotion may take.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the old primary's writes are held while this copy catches up.
const PAUSE: Duration = Duration::from_secs(10);
/// How often progress is polled.
const POLL: Duration = Duration::from_millis(100);
/// Longest chain of replicas followed to find the home's primary.
const MAX_HOPS: usize = 4;

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
    let home = &request.home;
    let url = copy_url(config, home).map_err(|e| format!("config: {e}"))?;
    let prefix = &config.redis.key_prefix;
    let deadline = Instant::now() + request.wait;
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
        refuse_if_stale(config, &copy, home).await?;
        say(
            out,
            format!("{home}: this region's copy is the primary already"),
        );
    } else {
        match upstream(&copy, &state, &advertised).await {
            Upstream::Primary(old, (host, port)) => {
                switch_over(&copy, &old, &advertised).await?;
                say(
                    out,
                    format!(
                        "{home}: switched over from {host}:{port}, which now follows this copy; nothing was lost"
                    ),
                );
            }
            Upstream::NoPrimary => {
                copy.make_primary().await.map_err(|e| e.to_string())?;
                say(
                    out,
                    format!(
                        "{home}: no copy took writes (the copies followed each other); this one does now"
                    ),
                );
            }
            Upstream::Unreachable((host, port)) => {
                wait_out_old_primary(config, &copy, home, out).await?;
                copy.make_primary().await.map_err(|e| e.to_string())?;
                say(
                    out,
                    format!(
                        "{home}: the primary {host}:{port} does not answer; this copy is promoted as it was (offset {}): writes of the last replication lag are lost",
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
    let generation = raise_epochs(&copy, home, deadline).await?;
    say(
        out,
        format!("{home}: every shard's epoch raised (now up to {generation})"),
    );
    record_generation(config, &copy, home, generation, out).await?;
    let started = Instant::now();
    wait_served(target, home, &config.node.region, deadline).await?;
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

fn say(out: &mut impl Write, line: String) {
    let _ = writeln!(out, "{line}");
}

/// Where this copy's replication leads.
enum Upstream {
    /// The home's primary, answering.
    Primary(Box<CopyAdmin>, (String, u16)),
    /// The copies follow each other round: nobody takes writes.
    NoPrimary,
    /// A server on the way does not answer: the primary may be lost, or only out of reach.
    Unreachable((String, u16)),
}

/// Follows this copy's primary, and that one's if it is a replica, up to a few hops.
async fn upstream(copy: &CopyAdmin, state: &Replication, advertised: &(String, u16)) -> Upstream {
    let own = copy.address();
    let mut next = state.follows.clone();
    for _ in 0..MAX_HOPS {
        let Some(address) = next.take() else {
            break;
        };
        if address == *advertised || Some(&address) == own.as_ref() {
            return Upstream::NoPrimary;
        }
        let Ok(server) = copy.sibling(&address.0, address.1).await else {
            return Upstream::Unreachable(address);
        };
        match server.replication().await {
            Ok(r) if r.primary => return Upstream::Primary(Box::new(server), address),
            Ok(r) => next = r.follows,
            Err(_) => return Upstream::Unreachable(address),
        }
    }
    Upstream::Unreachable(state.follows.clone().unwrap_or_default())
}

/// Before promoting without the old primary: it may be alive but out of reach. Its copy
/// here must have lost it for longer than the old primary can go on writing
/// (`min-replicas-max-lag`) plus its nodes trusting their leases (`cluster.lease_ttl`) and a
/// heartbeat — so that it has stopped writing and pushing when this copy starts.
async fn wait_out_old_primary(
    config: &Config,
    copy: &CopyAdmin,
    home: &str,
    out: &mut impl Write,
) -> Result<(), String> {
    let bound = copy.max_lag().await + config.cluster.lease_ttl + config.cluster.heartbeat;
    let mut told = false;
    loop {
        let state = copy.replication().await.map_err(|e| e.to_string())?;
        if state.link_up {
            return Err(format!(
                "{home}: this copy still replicates from its primary{}: it is alive; promote from a host that reaches it (a switchover loses nothing), or stop it first",
                state
                    .follows
                    .map(|(h, p)| format!(" {h}:{p}"))
                    .unwrap_or_default()
            ));
        }
        let Some(down_for) = state.link_down_for else {
            return Err(format!(
                "{home}: this copy has never synced with its primary: promoting it would lose the home's registrations"
            ));
        };
        if down_for >= bound {
            return Ok(());
        }
        if !told {
            told = true;
            say(
                out,
                format!(
                    "{home}: this copy lost its primary {} s ago; waiting until {} s (min-replicas-max-lag + lease_ttl + heartbeat), when a primary still alive has stopped writing and its nodes pushing",
                    down_for.as_secs(),
                    bound.as_secs_f64().ceil()
                ),
            );
        }
        tokio::time::sleep(POLL * 5).await;
    }
}

/// A copy that is a primary but whose home was promoted since elsewhere (a region back
/// from a failover whose Redis started as a primary) must not be "promoted" as it is.
async fn refuse_if_stale(config: &Config, copy: &CopyAdmin, home: &str) -> Result<(), String> {
    let own = copy.generation(home).await.map_err(|e| e.to_string())?;
    let newest = newest_elsewhere(config, home).await;
    if newest > own {
        return Err(format!(
            "{home}: this copy is a stale primary (generation {own}; the home was promoted at generation {newest} since): make it a replica of the home's current primary (REPLICAOF), then promote it again"
        ));
    }
    Ok(())
}

/// The newest generation of `home` the other copies this configuration names know.
async fn newest_elsewhere(config: &Config, home: &str) -> u64 {
    let own_url = copy_url(config, home).ok();
    let urls = config
        .redis
        .url
        .iter()
        .chain(config.homes.values().map(|c| &c.url))
        .filter(|url| Some(url.as_str()) != own_url);
    let mut newest = 0;
    for url in urls {
        if let Ok(other) = CopyAdmin::open(url, &config.redis.key_prefix, REDIS_TIMEOUT).await
            && let Ok(generation) = other.generation(home).await
        {
            newest = newest.max(generation);
        }
    }
    newest
}

/// Raises the epochs; until a replica has attached, a primary with `min-replicas-to-write`
/// refuses, so this is retried until `deadline`.
async fn raise_epochs(copy: &CopyAdmin, home: &str, deadline: Instant) -> Result<u64, String> {
    loop {
        match copy.raise_epochs().await {
            Ok(top) => return Ok(top),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(%e, "raising the epochs; retried");
                tokio::time::sleep(POLL * 2).await;
            }
            Err(e) => {
                return Err(format!(
                    "{home}: promoted, but its epochs cannot be raised ({e}): a primary with min-replicas-to-write needs a replica in reach (--replica)"
                ));
            }
        }
    }
}

/// Writes the promotion's generation into the promoted copy and, for another region's home,
/// into this region's own home, which the other regions replicate: a primary of `home`
/// with an older generation is stale, and nodes do not serve it.
async fn record_generation(
    config: &Config,
    copy: &CopyAdmin,
    home: &str,
    generation: u64,
    out: &mut impl Write,
) -> Result<(), String> {
    copy.set_generation(home, generation)
        .await
        .map_err(|e| format!("{home}: cannot record the promotion: {e}"))?;
    if home != config.node.region
        && let Some(url) = &config.redis.url
    {
        let recorded = match CopyAdmin::open(url, &config.redis.key_prefix, REDIS_TIMEOUT).await {
            Ok(own) => own.set_generation(home, generation).await,
            Err(e) => Err(e),
        };
        if let Err(e) = recorded {
            say(
                out,
                format!(
                    "{home}: warning: cannot record the promotion in {}'s Redis: {e}",
                    config.node.region
                ),
            );
        }
    }
    Ok(())
}

/// The planned move, never with two primaries: `old`'s writes held until `copy` has all of
/// them; `old` made to follow `copy` (from then on it refuses writes), then `copy`
/// promoted, then `old`'s clients let go. If `copy` cannot be promoted after `old` follows
/// it, no copy takes writes until the command is run again.
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
    let ready = match caught_up.await {
        Ok(true) => old.follow(&advertised.0, advertised.1).await.map_err(|e| {
            format!("the primary cannot be made to follow this copy: {e}; nothing changed")
        }),
        Ok(false) => {
            Err("this copy did not catch up with the primary in time; nothing changed".to_owned())
        }
        Err(e) => Err(format!(
            "cannot compare the copies' offsets: {e}; nothing changed"
        )),
    };
    if let Err(e) = ready {
        let _ = old.unpause().await;
        return Err(e);
    }
    let promoted = copy.make_primary().await;
    let _ = old.unpause().await;
    promoted.map_err(|e| {
        format!("the old primary follows this copy, but this copy cannot be promoted: {e}; no copy takes writes until this command is run again")
    })
}

/// Polls this region's node until HOME's shards are all held by live nodes of `region`.
async fn wait_served(
    target: &Target,
    home: &str,
    region: &str,
    deadline: Instant,
) -> Result<(), String> {
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
                "{home} is not served here in the time given ({last}); the copy is promoted: see `herald cluster status --region {home}`"
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
