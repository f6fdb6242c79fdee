//! `ShardSupervisor`: owns the subscription actors of one shard. It routes each message to
//! its registration's actor (started on demand), stops idle actors, keeps the number of live
//! ones within the shard's share of `actors.max_live` (evicting the least recently used
//! when full: an evicted actor's burst is safe in the store and the registration is parked
//! until its due time), restarts a failed actor from the store within the restart budget,
//! and never lets two actors of one registration run at once: a message for a registration
//! whose actor is stopping waits for it to be gone.

mod parked;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_cluster::{Epoch, ShardId};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use super::Shared;
use super::activity::{Activity, BUSY};
use super::actor::{SubArgs, SubMsg, SubscriptionActor};
use crate::domain::{RegistrationId, RegistrationRecord, UnixMillis};
use parked::Parked;

const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// Most requests that wait for room in a full shard; beyond, a request is refused (503).
const MAX_WAITING: usize = 256;

/// Shortest wait before the parked registrations are looked at again after a round that
/// could not start one.
const WAKE_RETRY: Duration = Duration::from_millis(200);

#[derive(Debug)]
pub(super) enum ShardMsg {
    /// A message for registration `id`'s actor, started if it is not live — from `record`
    /// (the caller's read of this shard's copy) or, without one, from the store.
    Route {
        id: RegistrationId,
        record: Option<Arc<RegistrationRecord>>,
        message: SubMsg,
    },
    /// A message for registration `id`'s actor if it is live (none is started for it).
    Tell { id: RegistrationId, message: SubMsg },
    /// The actor has nothing left to do here (its copy is gone, or it is dead and idle).
    Done { id: RegistrationId, actor: ActorId },
    /// Every live actor, for the drain at shutdown.
    Children(RpcReplyPort<Vec<ActorRef<SubMsg>>>),
    /// Registrations with work left in the shard (found by recovery): start them when due.
    Recover(Vec<RegistrationId>),
    /// Start the parked registrations that are due.
    Wake,
    /// Stop the actors not routed to for `actors.idle_timeout` that have nothing to do.
    Sweep,
    /// Makes a live actor fail, to test supervision.
    #[cfg(feature = "testsuite")]
    Fail(RegistrationId),
    /// Stops every actor that can be stopped now, as a full shard would (those with work
    /// are parked until due), to test passivation. Answers how many were stopped.
    #[cfg(feature = "testsuite")]
    PassivateAll(RpcReplyPort<usize>),
}

#[derive(Debug)]
pub(super) struct ShardSupervisor;

/// A routed message not delivered yet.
#[derive(Debug)]
struct Pending {
    id: RegistrationId,
    record: Option<Arc<RegistrationRecord>>,
    message: SubMsg,
}

#[derive(Debug)]
struct Child {
    actor: ActorRef<SubMsg>,
    activity: Arc<Activity>,
    last_routed: Instant,
    /// Messages sent to the actor (the actor counts those it handled).
    routed: u64,
}

impl Child {
    /// Whether the actor can be stopped now: nothing on its way to it, no push in flight.
    fn stoppable(&self) -> bool {
        self.routed == self.activity.handled() && self.activity.due() != BUSY
    }
}

#[derive(Debug)]
pub(super) struct ShardState {
    deps: Arc<Shared>,
    shard: ShardId,
    epoch: Epoch,
    children: HashMap<RegistrationId, Child>,
    /// Every actor not yet terminated: the live ones and those stopping.
    by_actor: HashMap<ActorId, RegistrationId>,
    /// Registrations whose actor was told to stop and is not gone yet, with the messages
    /// that came for them meanwhile (their successor takes them).
    stopping: HashMap<RegistrationId, Vec<Pending>>,
    /// Requests waiting for room: the shard is full and no actor could be stopped.
    waiting: VecDeque<Pending>,
    parked: Parked,
    /// When a `Wake` is scheduled for.
    wake_at: Option<u64>,
    restarts: HashMap<RegistrationId, (Instant, u32)>,
}

/// The shard supervisor's start arguments.
#[derive(Debug)]
pub(super) struct ShardArgs {
    pub(super) deps: Arc<Shared>,
    pub(super) shard: ShardId,
    /// The epoch of the lease the shard is served under.
    pub(super) epoch: Epoch,
}

impl Actor for ShardSupervisor {
    type Msg = ShardMsg;
    type State = ShardState;
    type Arguments = ShardArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ShardMsg>,
        ShardArgs { deps, shard, epoch }: ShardArgs,
    ) -> Result<ShardState, ActorProcessingErr> {
        // One timer per shard rather than one per actor: an idle actor costs no timer task.
        let every = (deps.actors.idle_timeout / 2).max(Duration::from_millis(10));
        myself.send_interval(every, || ShardMsg::Sweep);
        deps.pending.open(shard, epoch);
        Ok(ShardState {
            deps,
            shard,
            epoch,
            children: HashMap::new(),
            by_actor: HashMap::new(),
            stopping: HashMap::new(),
            waiting: VecDeque::new(),
            parked: Parked::default(),
            wake_at: None,
            restarts: HashMap::new(),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ShardMsg>,
        state: &mut ShardState,
    ) -> Result<(), ActorProcessingErr> {
        state.deps.pending.close(state.shard, state.epoch);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ShardMsg>,
        message: ShardMsg,
        state: &mut ShardState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ShardMsg::Route {
                id,
                record,
                message,
            } => {
                let pending = Pending {
                    id,
                    record,
                    message,
                };
                route(&myself, state, pending).await;
            }
            ShardMsg::Tell { id, message } => {
                if let Some(child) = state.children.get(&id) {
                    let _ = child.actor.send_message(message);
                }
            }
            ShardMsg::Done { id, actor } => {
                // Asked before it got more work: it asks again once that is done.
                let done = state.children.get(&id).is_some_and(|c| {
                    c.actor.get_id() == actor && c.stoppable() && c.activity.due() == 0
                });
                if done {
                    stop_child(&myself, state, &id);
                    state.deps.metrics.subscriptions.passivations.inc();
                }
                admit_waiting(&myself, state).await;
            }
            ShardMsg::Sweep => {
                let idle = state.deps.actors.idle_timeout;
                let quiet: Vec<RegistrationId> = state
                    .children
                    .iter()
                    .filter(|(_, c)| {
                        c.last_routed.elapsed() >= idle && c.stoppable() && c.activity.due() == 0
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in quiet {
                    stop_child(&myself, state, &id);
                    state.deps.metrics.subscriptions.passivations.inc();
                }
                state
                    .restarts
                    .retain(|_, (since, _)| since.elapsed() <= RESTART_WINDOW);
                admit_waiting(&myself, state).await;
            }
            ShardMsg::Children(reply) => {
                let _ = reply.send(state.children.values().map(|c| c.actor.clone()).collect());
            }
            ShardMsg::Recover(ids) => {
                let now = UnixMillis::now().0;
                for id in ids {
                    state.parked.park(id, now);
                }
                schedule_wake(&myself, state);
            }
            ShardMsg::Wake => {
                state.wake_at = None;
                wake(&myself, state).await;
            }
            #[cfg(feature = "testsuite")]
            ShardMsg::Fail(id) => {
                if let Some(child) = state.children.get(&id) {
                    let _ = child.actor.send_message(SubMsg::Fail);
                }
            }
            #[cfg(feature = "testsuite")]
            ShardMsg::PassivateAll(reply) => {
                let mut stopped = 0;
                while evict_one(&myself, state) {
                    stopped += 1;
                }
                let _ = reply.send(stopped);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<ShardMsg>,
        event: SupervisionEvent,
        state: &mut ShardState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                let Some(id) = state.by_actor.remove(&cell.get_id()) else {
                    return Ok(());
                };
                state.deps.live.unlist(&id, cell.get_id());
                tracing::warn!(registration = %id, %error, "subscription actor failed");
                let was_child = state
                    .children
                    .get(&id)
                    .is_some_and(|c| c.actor.get_id() == cell.get_id());
                if was_child {
                    state.children.remove(&id);
                    restart(&myself, state, id.clone()).await;
                }
                successor(&myself, state, &id).await;
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if let Some(id) = state.by_actor.remove(&cell.get_id()) {
                    state.deps.live.unlist(&id, cell.get_id());
                    if state
                        .children
                        .get(&id)
                        .is_some_and(|c| c.actor.get_id() == cell.get_id())
                    {
                        state.children.remove(&id);
                    }
                    successor(&myself, state, &id).await;
                }
            }
            _ => {}
        }
        admit_waiting(&myself, state).await;
        Ok(())
    }
}

/// Restarts a failed actor from the store, within the restart budget.
async fn restart(myself: &ActorRef<ShardMsg>, state: &mut ShardState, id: RegistrationId) {
    let now = Instant::now();
    let (since, count) = state.restarts.entry(id.clone()).or_insert((now, 0));
    if now.duration_since(*since) > RESTART_WINDOW {
        (*since, *count) = (now, 0);
    }
    *count += 1;
    if *count <= state.deps.actors.restart_budget {
        state.deps.metrics.subscriptions.restarts.inc();
        // Parked rather than started here: a restart is started like any woken registration
        // (within the shard's room), and its pending burst, if any, is flushed.
        state.parked.park(id, UnixMillis::now().0);
        schedule_wake(myself, state);
    } else {
        tracing::error!(registration = %id, "subscription actor restart budget spent; it stays stopped until its next request");
    }
}

/// Once `id`'s stopping actor is gone, hands the messages that came for it meanwhile to a
/// successor, which reads the copy from the store: the records those messages carry were
/// read before the predecessor's last writes.
async fn successor(myself: &ActorRef<ShardMsg>, state: &mut ShardState, id: &RegistrationId) {
    if state.by_actor.values().any(|other| other == id) {
        return;
    }
    for mut pending in state.stopping.remove(id).unwrap_or_default() {
        pending.record = None;
        route(myself, state, pending).await;
    }
}

/// Delivers `pending` to its registration's actor, starting one if needed (and there is room).
async fn route(myself: &ActorRef<ShardMsg>, state: &mut ShardState, pending: Pending) {
    if let Some(queue) = state.stopping.get_mut(&pending.id) {
        queue.push(pending);
        return;
    }
    let Some(pending) = send_to_live(state, pending) else {
        return;
    };
    if state.children.len() >= capacity(state) && !evict_one(myself, state) {
        state.waiting.retain(|p| !p.message.abandoned());
        if state.waiting.len() < MAX_WAITING {
            state.waiting.push_back(pending);
        } else {
            // Dropping the reply port makes the caller answer 503; Exchange retries.
            tracing::warn!(shard = %state.shard, "shard full of busy actors: a request is refused");
        }
        return;
    }
    if let Some(actor) = start(myself, state, &pending.id, pending.record).await {
        if let Some(child) = state.children.get_mut(&pending.id) {
            child.routed += 1;
        }
        let _ = actor.send_message(pending.message);
    }
}

/// Sends `pending` to its registration's live actor; gives it back when there is none (or
/// the actor stopped between the supervisor's bookkeeping and the send).
fn send_to_live(state: &mut ShardState, pending: Pending) -> Option<Pending> {
    if !state.children.contains_key(&pending.id) {
        return Some(pending);
    }
    let Pending {
        id,
        record,
        message,
    } = pending;
    let child = state.children.get_mut(&id)?;
    child.routed += 1;
    child.last_routed = Instant::now();
    match child.actor.send_message(message) {
        Ok(())
        | Err(ractor::MessagingErr::ChannelClosed | ractor::MessagingErr::InvalidActorType) => None,
        Err(ractor::MessagingErr::SendErr(message)) => {
            state.children.remove(&id);
            Some(Pending {
                id,
                record,
                message,
            })
        }
    }
}

/// Routes the requests that waited for room, while there is room.
async fn admit_waiting(myself: &ActorRef<ShardMsg>, state: &mut ShardState) {
    while let Some(pending) = state.waiting.pop_front() {
        if pending.message.abandoned() {
            continue;
        }
        if state.children.len() >= capacity(state)
            && !state.children.contains_key(&pending.id)
            && !evict_one(myself, state)
        {
            state.waiting.push_front(pending);
            return;
        }
        route(myself, state, pending).await;
    }
}

/// Stops the least recently routed actor that can be stopped — one with nothing to do if
/// any, else one whose burst then waits, parked, for its due time. Whether one was.
fn evict_one(myself: &ActorRef<ShardMsg>, state: &mut ShardState) -> bool {
    let victim = state
        .children
        .iter()
        .filter(|(_, c)| c.stoppable())
        .min_by_key(|(_, c)| (c.activity.due() != 0, c.last_routed))
        .map(|(id, _)| id.clone());
    let Some(id) = victim else {
        return false;
    };
    stop_child(myself, state, &id);
    state.deps.metrics.subscriptions.passivations.inc();
    true
}

/// Stops `id`'s actor; with work left, the registration is parked until it is due.
fn stop_child(myself: &ActorRef<ShardMsg>, state: &mut ShardState, id: &RegistrationId) {
    let Some(child) = state.children.remove(id) else {
        return;
    };
    let due = child.activity.due();
    if due != 0 && due != BUSY {
        state.parked.park(id.clone(), due);
        schedule_wake(myself, state);
    }
    state.stopping.entry(id.clone()).or_default();
    child.actor.stop(Some("passivated".into()));
}

/// Starts the parked registrations that are due, as room allows.
async fn wake(myself: &ActorRef<ShardMsg>, state: &mut ShardState) {
    let now = UnixMillis::now().0;
    let mut stopping = Vec::new();
    while let Some((id, failures)) = state.parked.pop_due(now) {
        if let Some(child) = state.children.get(&id) {
            // Live: it takes the work up, after reading its copy again (it may have started
            // from a read older than the work).
            let _ = child.actor.send_message(SubMsg::Refresh);
            continue;
        }
        if state.stopping.contains_key(&id) {
            // Its actor is not gone yet: start a successor once it is.
            stopping.push(id);
            continue;
        }
        if state.children.len() >= capacity(state) && !evict_one(myself, state) {
            state
                .parked
                .park(id, now.saturating_add(millis(WAKE_RETRY)));
            break;
        }
        if start(myself, state, &id, None).await.is_none() {
            state.parked.retry(id, failures, now);
            break;
        }
    }
    for id in stopping {
        state
            .parked
            .park(id, now.saturating_add(millis(WAKE_RETRY)));
    }
    schedule_wake(myself, state);
}

fn schedule_wake(myself: &ActorRef<ShardMsg>, state: &mut ShardState) {
    let Some(due) = state.parked.next_due() else {
        return;
    };
    if state.wake_at.is_some_and(|at| at <= due) {
        return;
    }
    let now = UnixMillis::now().0;
    state.wake_at = Some(due);
    let wait = Duration::from_millis(due.saturating_sub(now));
    myself.send_after(wait, || ShardMsg::Wake);
}

/// This shard's share of `actors.max_live`: an even share over the shards this node holds
/// (at least one actor).
fn capacity(state: &ShardState) -> usize {
    (state.deps.actors.max_live / state.deps.ownership.count().max(1)).max(1)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Starts `id`'s actor (from `record`, else from the store).
async fn start(
    myself: &ActorRef<ShardMsg>,
    state: &mut ShardState,
    id: &RegistrationId,
    record: Option<Arc<RegistrationRecord>>,
) -> Option<ActorRef<SubMsg>> {
    let activity = Arc::new(Activity::default());
    let args = SubArgs {
        id: id.clone(),
        shard: state.shard,
        epoch: state.epoch,
        record,
        deps: state.deps.clone(),
        supervisor: myself.clone(),
        activity: activity.clone(),
    };
    match Actor::spawn_linked(None, SubscriptionActor, args, myself.get_cell()).await {
        Ok((actor, _)) => {
            state.by_actor.insert(actor.get_id(), id.clone());
            state.children.insert(
                id.clone(),
                Child {
                    actor: actor.clone(),
                    activity,
                    last_routed: Instant::now(),
                    routed: 0,
                },
            );
            Some(actor)
        }
        Err(error) => {
            tracing::warn!(registration = %id, %error, "cannot start a subscription actor");
            None
        }
    }
}
