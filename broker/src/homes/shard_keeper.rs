//! Serving the shards this node holds: the one task that follows the ownership view. It
//! starts serving a shard the node acquires and finishes the work the shard's previous
//! owner left (bursts accepted and not pushed, moves not finished — read until the read
//! succeeds, with back-off while the store is unreachable), and stops serving a shard the
//! node releases or loses.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use herald_cluster::{Epoch, Ownership, ShardId};
use tokio::sync::watch;

use crate::subscription::{DeliverError, Subscriptions};

const RECOVERY_BACKOFF: Duration = Duration::from_millis(250);
const MAX_RECOVERY_BACKOFF: Duration = Duration::from_secs(10);

/// Starts serving every shard the node holds now: done before the node takes requests, so
/// none meets a shard it holds but does not serve yet.
pub(super) async fn serve_held(
    subscriptions: &Subscriptions,
    ownership: &Ownership,
) -> Result<(), DeliverError> {
    for (shard, epoch) in ownership.held() {
        subscriptions.acquire(shard, epoch).await?;
    }
    Ok(())
}

/// Follows `ownership` until `stop`; a released shard's actors get `release_grace` to
/// flush what is due.
pub(super) fn spawn(
    subscriptions: Subscriptions,
    ownership: Arc<Ownership>,
    release_grace: Duration,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut changes = ownership.subscribe();
        // The shards served, each at the epoch it was started at: a shard lost and taken
        // again meanwhile (at another epoch) is started afresh, its pending work read again.
        let mut serving: BTreeMap<ShardId, Epoch> = BTreeMap::new();
        let mut to_recover = BTreeSet::new();
        let mut backoff = RECOVERY_BACKOFF;
        loop {
            changes.borrow_and_update();
            let held: BTreeMap<ShardId, Epoch> = ownership.held().into_iter().collect();
            let gone: Vec<ShardId> = serving
                .iter()
                .filter(|&(shard, epoch)| held.get(shard) != Some(epoch))
                .map(|(shard, _)| *shard)
                .collect();
            futures_util::future::join_all(
                gone.iter()
                    .map(|&shard| subscriptions.release(shard, release_grace)),
            )
            .await;
            for shard in gone {
                serving.remove(&shard);
                to_recover.remove(&shard);
            }
            for (&shard, &epoch) in &held {
                if serving.contains_key(&shard) {
                    continue;
                }
                match subscriptions.acquire(shard, epoch).await {
                    Ok(()) => {
                        serving.insert(shard, epoch);
                        to_recover.insert(shard);
                    }
                    // Being handed over: it is dropped, or reopened, shortly.
                    Err(DeliverError::NotOwner(_)) => {
                        tracing::debug!(%shard, "a shard being handed over is not started");
                    }
                    Err(error) => {
                        tracing::error!(%shard, %error, "cannot start serving a shard; retried");
                    }
                }
            }
            let recovering = tokio::select! {
                done = recover(&subscriptions, &mut to_recover) => done,
                _ = stop.wait_for(|s| *s) => return,
            };
            backoff = match recovering {
                Ok(()) => RECOVERY_BACKOFF,
                Err(()) => (backoff * 2).min(MAX_RECOVERY_BACKOFF),
            };
            let retry = !to_recover.is_empty() || serving.len() < held.len();
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(backoff), if retry => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    })
}

/// Recovers the shards in `left`, in order, until one fails (the store is unreachable: the
/// rest wait for the next attempt).
async fn recover(subscriptions: &Subscriptions, left: &mut BTreeSet<ShardId>) -> Result<(), ()> {
    let mut recovered = 0;
    while let Some(&shard) = left.first() {
        match subscriptions.recover(shard).await {
            Ok(n) => {
                recovered += n;
                left.remove(&shard);
            }
            Err(error) => {
                tracing::warn!(%shard, %error, "cannot read a shard's pending work yet; retrying");
                break;
            }
        }
    }
    if recovered > 0 {
        tracing::info!(
            registrations = recovered,
            "finishing the work a previous owner of the shards left pending"
        );
    }
    if left.is_empty() { Ok(()) } else { Err(()) }
}
