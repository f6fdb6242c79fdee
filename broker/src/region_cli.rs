//! `herald region promote HOME`: the operator's failover and failback. It makes this
//! region's copy of HOME the home's primary, raises every HOME shard's epoch above anything
//! issued before (recorded as the home's generation), and waits until this region's nodes
//! serve HOME.
//!
//! - When HOME's current primary answers (a planned move, a failback), this is a switchover
//!   that loses nothing ([`switchover`]).
//! - When it does not answer (its region is lost, or out of reach), the other copies are
//!   taken from it first, and this copy is promoted only once the old primary, if alive,
//!   has stopped writing and its nodes pushing ([`forced`]).
//!
//! The nodes notice the promotion themselves (they check their copies' roles every
//! heartbeat) and take HOME's leases once the old holders' have lapsed.

mod forced;
mod generation;
mod switchover;

use std::io::Write;
use std::time::{Duration, Instant};

use herald_broker::config::Config;
use herald_broker::store::{CopyAdmin, Replication, StoreError};
use herald_proto::v1::ClusterStatusRequest;

use crate::cluster_cli::Target;

/// Longest a Redis command of the promotion may take.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// How often progress is polled.
const POLL: Duration = Duration::from_millis(100);
/// Longest chain of replicas followed to find the home's primary.
const MAX_HOPS: usize = 4;

/// What the operator asked.
pub(crate) struct Promote {
    pub(crate) home: String,
    /// The other regions' copies of HOME (`host:port`), made to follow the new primary.
    pub(crate) replicas: Vec<String>,
    /// `host:port` by which the other copies reach this one; default: its URL's.
    pub(crate) advertise: Option<String>,
    /// Longest wait for this region's nodes to serve HOME.
    pub(crate) wait: Duration,
    /// Promote without the old primary even when this command cannot rule out that it
    /// still writes (see [`forced`]).
    pub(crate) force: bool,
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
    let copy = open_copy(config, url)
        .await
        .map_err(|e| format!("cannot reach this region's copy of {home}: {e}"))?;
    let advertised = match &request.advertise {
        Some(address) => split_address(address)?,
        None => copy
            .address()
            .ok_or("this copy's URL names no TCP address: pass --advertise HOST:PORT")?,
    };
    let replicas = request
        .replicas
        .iter()
        .map(|r| split_address(r))
        .collect::<Result<Vec<_>, _>>()?;
    let state = copy.replication().await.map_err(|e| e.to_string())?;
    if state.primary {
        generation::refuse_if_stale(config, &copy, home).await?;
        say(
            out,
            format!("{home}: this region's copy is the primary already"),
        );
    } else {
        match upstream(&copy, &state, &advertised).await {
            Upstream::Primary(old, (host, port)) => {
                generation::refuse_stale_source(config, &old, home).await?;
                switchover::run(&copy, &old, &advertised).await?;
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
            Upstream::Unreachable { lost, via } => {
                let plan = forced::Plan {
                    config,
                    home,
                    copy: &copy,
                    via: via.as_deref().unwrap_or(&copy),
                    lost: &lost,
                    advertised: &advertised,
                    replicas: &replicas,
                    force: request.force,
                };
                forced::run(plan, out).await?;
                say(
                    out,
                    format!(
                        "{home}: the primary {}:{} does not answer; this copy is promoted as it was (offset {}): writes of the last replication lag are lost",
                        lost.0, lost.1, state.offset
                    ),
                );
            }
        }
    }
    for (host, port) in &replicas {
        match follow(&copy, host, *port, &advertised).await {
            Ok(()) => say(out, format!("{home}: {host}:{port} follows this copy")),
            Err(e) => say(
                out,
                format!("{home}: warning: cannot make {host}:{port} follow this copy: {e}"),
            ),
        }
    }
    let deadline = Instant::now() + request.wait;
    let generation = generation::raise(&copy, home, deadline).await?;
    say(
        out,
        format!(
            "{home}: every shard's epoch raised (now up to {generation}, the home's generation)"
        ),
    );
    generation::record_at_home(config, home, generation, deadline, out).await;
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

/// Makes the copy at `host:port` follow `advertised` (this region's copy).
async fn follow(
    copy: &CopyAdmin,
    host: &str,
    port: u16,
    advertised: &(String, u16),
) -> Result<(), herald_broker::store::StoreError> {
    copy.sibling(host, port)
        .await?
        .follow(&advertised.0, advertised.1)
        .await
}

/// Where this copy's replication leads.
enum Upstream {
    /// The home's primary, answering.
    Primary(Box<CopyAdmin>, (String, u16)),
    /// The copies follow each other round: nobody takes writes.
    NoPrimary,
    /// `lost` does not answer: the primary may be lost, or only out of reach. `via` is the
    /// last server on the way that answered (`None`: this copy), whose link to `lost` tells
    /// how long it has been gone.
    Unreachable {
        lost: (String, u16),
        via: Option<Box<CopyAdmin>>,
    },
}

/// Follows this copy's primary, and that one's if it is a replica, up to a few hops.
async fn upstream(copy: &CopyAdmin, state: &Replication, advertised: &(String, u16)) -> Upstream {
    let own = copy.address();
    let mut next = state.follows.clone();
    let mut via: Option<Box<CopyAdmin>> = None;
    for _ in 0..MAX_HOPS {
        let Some(address) = next.take() else {
            break;
        };
        if address == *advertised || Some(&address) == own.as_ref() {
            return Upstream::NoPrimary;
        }
        let answered = match copy.sibling(&address.0, address.1).await {
            Ok(server) => server.replication().await.map(|r| (server, r)),
            Err(e) => Err(e),
        };
        match answered {
            Ok((server, r)) if r.primary => return Upstream::Primary(Box::new(server), address),
            Ok((server, r)) => {
                next = r.follows;
                via = Some(Box::new(server));
            }
            Err(_) => return Upstream::Unreachable { lost: address, via },
        }
    }
    Upstream::Unreachable {
        lost: state.follows.clone().unwrap_or_default(),
        via,
    }
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

/// Opens the copy at `url` with `[redis]`'s key prefix and TLS.
pub(super) async fn open_copy(config: &Config, url: &str) -> Result<CopyAdmin, StoreError> {
    let tls = config
        .redis_tls()
        .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
    CopyAdmin::open(url, &config.redis.key_prefix, tls.as_ref(), REDIS_TIMEOUT).await
}
