//! Finding subscriptions Exchange has silently dropped (protocol note §6, §9.2): a pending or
//! active registration not heard from for more than twice `liveness.status_frequency` is
//! marked `STALE` and counted, so the app can re-subscribe. Its next notification makes it
//! `ACTIVE` again (the subscription actor does that).

use std::sync::Arc;
use std::time::Duration;

use herald_cluster::ShardId;
use tokio::sync::watch;

use crate::domain::{RegState, RegistrationId, UnixMillis};
use crate::metrics::Metrics;
use crate::registry::Fencing;
use crate::store::{RegistrationStore, StoreError};

/// How many silent registrations are read per shard and round trip.
const PAGE: usize = 500;

/// Marks every registration silent since before `threshold` stale; returns how many.
pub async fn sweep(
    store: &dyn RegistrationStore,
    fencing: &dyn Fencing,
    threshold: UnixMillis,
    metrics: &Metrics,
) -> Result<usize, StoreError> {
    let mut marked = 0;
    for shard in ShardId::all() {
        loop {
            let silent = store.silent_since(shard, threshold, PAGE).await?;
            let mut progressed = false;
            for id in &silent {
                if mark_stale(store, fencing, id, threshold).await? {
                    marked += 1;
                    progressed = true;
                    metrics.subscriptions.stale_marked.inc();
                }
            }
            if silent.len() < PAGE || !progressed {
                break;
            }
        }
    }
    Ok(marked)
}

async fn mark_stale(
    store: &dyn RegistrationStore,
    fencing: &dyn Fencing,
    id: &RegistrationId,
    threshold: UnixMillis,
) -> Result<bool, StoreError> {
    let Some(mut record) = store.get(id).await? else {
        return Ok(false);
    };
    if record.last_heard().is_none_or(|t| t >= threshold) {
        return Ok(false);
    }
    record.state = RegState::Stale;
    let Ok(fence) = fencing.fence(record.device_token.shard()) else {
        return Ok(false);
    };
    match store.update(fence, &record).await {
        Ok(_) => {
            tracing::info!(registration = %id, "no word from exchange for twice the status frequency: marked stale");
            Ok(true)
        }
        // Written meanwhile (a notification, most likely): the next sweep looks again.
        Err(StoreError::Conflict | StoreError::NotFound | StoreError::Fenced { .. }) => Ok(false),
        Err(other) => Err(other),
    }
}

/// Sweeps every `interval` until `stop`.
pub fn spawn_sweeper(
    store: Arc<dyn RegistrationStore>,
    fencing: Arc<dyn Fencing>,
    metrics: Arc<Metrics>,
    status_frequency: Duration,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
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
            if let Err(error) = sweep(store.as_ref(), fencing.as_ref(), threshold, &metrics).await {
                tracing::warn!(%error, "liveness sweep failed; retried at the next interval");
            }
        }
    });
}
