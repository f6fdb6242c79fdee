//! The home's generation: the epoch a promotion raised every shard's to, written with the
//! epochs into the promoted copy (so every copy of the home replicates it) and into this
//! region's own home (so the other regions learn of it even from a copy that lost the old
//! primary). A primary of a home whose generation is below another copy's is stale: a
//! region back from a failover whose Redis started as a primary. Nodes do not serve it, and
//! this command does not promote from it.

use std::io::Write;
use std::time::Instant;

use herald_broker::config::Config;
use herald_broker::store::CopyAdmin;

use super::{POLL, copy_url, say};

/// Raises the epochs and records the generation; a primary with `min-replicas-to-write`
/// refuses until a replica has attached, so this is retried until `deadline`.
pub(super) async fn raise(copy: &CopyAdmin, home: &str, deadline: Instant) -> Result<u64, String> {
    loop {
        match copy.raise_epochs(home).await {
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

/// Writes the generation of another region's `home` into this region's own home too,
/// retried until `deadline`.
pub(super) async fn record_at_home(
    config: &Config,
    home: &str,
    generation: u64,
    deadline: Instant,
    out: &mut impl Write,
) {
    let Some(url) = config
        .redis
        .url
        .as_deref()
        .filter(|_| home != config.node.region)
    else {
        return;
    };
    loop {
        let recorded = match super::open_copy(config, url).await {
            Ok(own) => own.set_generation(home, generation).await,
            Err(e) => Err(e),
        };
        match recorded {
            Ok(()) => return,
            Err(e) if Instant::now() >= deadline => {
                say(
                    out,
                    format!(
                        "{home}: warning: cannot record the promotion in {}'s Redis ({e}): a stale primary of {home} is recognised only through {home}'s own copies",
                        config.node.region
                    ),
                );
                return;
            }
            Err(_) => tokio::time::sleep(POLL * 2).await,
        }
    }
}

/// Refuses to take `copy`, a primary already, as the home's primary when another copy
/// knows a later generation — or cannot be read to say.
pub(super) async fn refuse_if_stale(
    config: &Config,
    copy: &CopyAdmin,
    home: &str,
) -> Result<(), String> {
    refuse_older(config, copy, home, "this copy is a stale primary", true).await
}

/// Refuses a switchover from `old` when another copy knows a later generation than it.
pub(super) async fn refuse_stale_source(
    config: &Config,
    old: &CopyAdmin,
    home: &str,
) -> Result<(), String> {
    refuse_older(
        config,
        old,
        home,
        "the primary this copy follows is stale",
        false,
    )
    .await
}

/// Refuses `server` when another copy this configuration names knows a later generation of
/// `home`; with `every_copy`, also when one of them cannot be read.
async fn refuse_older(
    config: &Config,
    server: &CopyAdmin,
    home: &str,
    what: &str,
    every_copy: bool,
) -> Result<(), String> {
    let theirs = server.generation(home).await.map_err(|e| e.to_string())?;
    let newest = newest_elsewhere(config, home, every_copy).await?;
    if newest > theirs {
        return Err(format!(
            "{home}: {what} (generation {theirs}; the home was promoted at generation {newest} since): make it a replica of the home's current primary (REPLICAOF); nothing changed"
        ));
    }
    Ok(())
}

/// The newest generation of `home` this configuration's other copies know; with
/// `every_copy`, an error when one of them cannot be read.
async fn newest_elsewhere(config: &Config, home: &str, every_copy: bool) -> Result<u64, String> {
    let own_url = copy_url(config, home).ok();
    let urls = config
        .redis
        .url
        .iter()
        .chain(config.homes.values().map(|c| &c.url))
        .filter(|url| Some(url.as_str()) != own_url);
    let mut newest = 0;
    for url in urls {
        let read = match super::open_copy(config, url).await {
            Ok(other) => other.generation(home).await,
            Err(e) => Err(e),
        };
        match read {
            Ok(generation) => newest = newest.max(generation),
            Err(e) if every_copy => {
                return Err(format!(
                    "{home}: cannot read another copy to check this one is not stale ({e}); run again when it answers"
                ));
            }
            Err(_) => {}
        }
    }
    Ok(newest)
}
