//! Following each home copy's role: a copy that becomes a primary (promoted here) gets a
//! stack and is served; a copy that becomes a replica (the home was promoted elsewhere) is
//! not served from then on and, unless it is this node's own region's home, its stack stops. The
//! own region's stack lives as long as the node: while its copy is a replica, its writes
//! (membership, leases) are refused by Redis and it serves nothing.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{HomeStack, Homes, Slot, StackParts};

/// Least time a copy is given to answer a round's questions.
const MIN_ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// Every copy's generations of every home (see `herald region promote`), `None` for a copy
/// that did not answer.
async fn generations(homes: &Homes, timeout: Duration) -> Vec<Option<Vec<u64>>> {
    let names: Vec<String> = homes.slots().iter().map(|s| s.home.clone()).collect();
    let reads = homes.slots().iter().map(|slot| {
        let names = &names;
        async move {
            match tokio::time::timeout(timeout, slot.copy.home_generations(names)).await {
                Ok(Ok(generations)) => Some(generations),
                _ => None,
            }
        }
    });
    futures_util::future::join_all(reads).await
}

/// Asks every copy its role once, records it, and starts or stops the stacks to follow. A
/// copy is taken as its home's primary when Redis says it is one and no other copy knows
/// of a later promotion of the home (a region back from a failover whose Redis started as
/// a primary holds a stale copy). While a copy does not answer, what it knows is unknown:
/// a home served stays served, one not served yet waits until every copy has answered.
pub async fn follow_roles(homes: &Homes, parts: &StackParts, timeout: Duration) {
    let known = generations(homes, timeout).await;
    let all_answered = known.iter().all(Option::is_some);
    for (index, slot) in homes.slots().iter().enumerate() {
        let own = index == 0;
        let role = match tokio::time::timeout(timeout, slot.copy.is_primary()).await {
            Ok(Ok(primary)) => Some(primary),
            Ok(Err(error)) => {
                tracing::debug!(home = %slot.home, %error, "cannot ask a home's copy its role");
                None
            }
            Err(_) => None,
        };
        let mine = known[index].as_ref().map(|g| g[index]);
        let newest = known.iter().flatten().map(|g| g[index]).max().unwrap_or(0);
        let serve = match (role, mine) {
            (Some(false), _) => Some(false),
            (Some(true), Some(mine)) if mine < newest => {
                if slot.set_stale(true) {
                    tracing::warn!(home = %slot.home, generation = mine, newest, "this region's copy of the home is a primary, but the home was promoted elsewhere since: not served; make the copy a replica of the home's primary");
                }
                Some(false)
            }
            (Some(true), Some(_)) if all_answered || slot.served().is_some() => {
                slot.set_stale(false);
                Some(true)
            }
            // Unknown for now: nothing changes until the copies answer.
            _ => None,
        };
        if let Some(serve) = serve {
            follow(slot, own, serve, parts).await;
        }
        parts
            .metrics
            .home_served
            .get_or_create(&crate::metrics::HomeLabels {
                home: slot.home.clone(),
            })
            .set(i64::from(slot.served().is_some()));
    }
}

/// Serves the home of `slot`, or stops serving it.
async fn follow(slot: &Slot, own: bool, serve: bool, parts: &StackParts) {
    if serve && !own && slot.stack().is_none() {
        if slot.still_stopping() {
            // The stack it had when it was last here (it left and is back) ends first.
            return;
        }
        match start(slot, parts).await {
            Ok(()) => {
                tracing::info!(home = %slot.home, "this region's copy of the home is its primary: serving it")
            }
            Err(error) => {
                tracing::warn!(home = %slot.home, %error, "cannot serve a home promoted here; retried");
                return;
            }
        }
    }
    if slot.set_primary(serve) {
        if serve {
            tracing::info!(home = %slot.home, "serving the home: its copy here is the primary");
        } else {
            tracing::warn!(home = %slot.home, "no longer serving the home: its copy here is not its primary");
        }
    }
    if !serve
        && !own
        && let Some(stack) = slot.set_stack(None)
    {
        let grace = parts.config.node.shutdown_grace / 2;
        slot.stopping(tokio::spawn(async move { stack.stop(grace).await }));
    }
}

/// Builds and runs the stack of a home promoted here. It is in its slot before it runs,
/// so that a shutdown meanwhile stops it.
async fn start(slot: &Slot, parts: &StackParts) -> Result<(), String> {
    let stack =
        Arc::new(HomeStack::build(parts, &slot.home, slot.copy.clone(), slot.serving()).await?);
    slot.set_stack(Some(stack.clone()));
    if let Err(error) = stack.run(parts).await {
        slot.set_stack(None);
        stack.stop(parts.config.node.shutdown_grace / 2).await;
        return Err(error);
    }
    Ok(())
}

/// Warns, once each copy answers, about copies that would keep taking writes when cut off
/// from the other regions. Only for a node with copies of other homes: a deployment of
/// one region has nowhere to fail over to.
async fn advise_on_partitions(homes: &Homes, interval: Duration) {
    if homes.slots().len() < 2 {
        return;
    }
    for slot in homes.slots() {
        loop {
            match tokio::time::timeout(interval, slot.copy.partition_advice()).await {
                Ok(Ok(advice)) => {
                    if let Some(line) = advice {
                        tracing::warn!(home = %slot.home, "{line} (docs/operations.md)");
                    }
                    break;
                }
                // Managed servers often refuse CONFIG: nothing to advise then.
                Ok(Err(_)) if slot.copy.ping().await.is_ok() => break,
                _ => tokio::time::sleep(interval).await,
            }
        }
    }
}

/// The task following the copies' roles.
#[derive(Debug)]
pub struct Watcher {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    advice: tokio::task::JoinHandle<()>,
}

impl Watcher {
    /// Stops following: no home starts or stops being served from now on. A round in
    /// progress (asking copies that may not answer) is cut short: a stack it was starting
    /// is in its slot before it runs, so the shutdown stops it with the others, and a
    /// stack it gave up is already being stopped.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.advice.abort();
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Follows the roles every `interval` until stopped.
pub fn spawn(homes: Arc<Homes>, parts: StackParts, interval: Duration) -> Watcher {
    let (stop, mut stopped) = watch::channel(false);
    let advice = {
        let homes = homes.clone();
        tokio::spawn(async move { advise_on_partitions(&homes, interval).await })
    };
    let task = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stopped.wait_for(|s| *s) => return,
            }
            follow_roles(&homes, &parts, interval.max(MIN_ASK_TIMEOUT)).await;
        }
    });
    Watcher { stop, task, advice }
}
