//! Finding subscriptions Exchange has silently dropped (protocol note §6, §9.2): a pending or
//! active registration not heard from for more than twice `liveness.status_frequency` is
//! marked `STALE` and counted, so the app can re-subscribe. Its next notification makes it
//! `ACTIVE` again (the subscription actor does that).

use std::time::Duration;

use herald_cluster::ShardId;
use tokio::sync::watch;

use crate::domain::{RegState, UnixMillis};
use crate::routing::Router;
use crate::store::RegistrationStore;
use crate::subscription::{Command, CommandError};

/// How many silent registrations are read per shard and round trip.
const PAGE: usize = 500;

/// Has every registration of the shards this node holds silent since before `threshold`
/// marked stale by its actor;
/// returns how many were marked. A registration heard from meanwhile is left as it is (its
/// actor checks again).
pub async fn sweep(
    store: &dyn RegistrationStore,
    router: &Router,
    threshold: UnixMillis,
) -> Result<usize, CommandError> {
    let mut marked = 0;
    for shard in router.held() {
        marked += sweep_shard(store, router, shard, threshold).await?;
    }
    Ok(marked)
}

async fn sweep_shard(
    store: &dyn RegistrationStore,
    router: &Router,
    shard: ShardId,
    threshold: UnixMillis,
) -> Result<usize, CommandError> {
    let mut marked = 0;
    loop {
        let silent = store
            .silent_since(shard, threshold, PAGE)
            .await
            .map_err(|e| CommandError::Unavailable(e.into()))?;
        let mut progressed = false;
        for id in &silent {
            match router.command(id, Command::MarkStale { threshold }).await {
                // Silent registrations are pending or active: stale now means marked now.
                Ok(Some(record)) if record.state == RegState::Stale => {
                    marked += 1;
                    progressed = true;
                }
                Ok(Some(_)) => {}
                // Unregistered meanwhile: its index entry went with it.
                Ok(None) | Err(CommandError::NotFound) => {}
                // One registration that cannot be marked now (moving, its actor busy) does
                // not hold up the others; the next sweep looks again.
                Err(error) => {
                    tracing::debug!(registration = %id, %error, "cannot mark a silent registration stale now");
                }
            }
        }
        if silent.len() < PAGE || !progressed {
            return Ok(marked);
        }
    }
}

/// Sweeps every `interval` until `stop`.
pub fn spawn_sweeper(
    store: std::sync::Arc<dyn RegistrationStore>,
    router: Router,
    status_frequency: Duration,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let silence = u64::try_from((status_frequency * 2).as_millis()).unwrap_or(u64::MAX);
            let threshold = UnixMillis(UnixMillis::now().0.saturating_sub(silence));
            let swept = tokio::select! {
                swept = sweep(store.as_ref(), &router, threshold) => swept,
                _ = stop.wait_for(|s| *s) => return,
            };
            if let Err(error) = swept {
                tracing::warn!(%error, "liveness sweep failed; retried at the next interval");
            }
        }
    })
}
