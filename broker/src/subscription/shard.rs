//! `ShardSupervisor`: owns the subscription actors of one shard — spawns them on first use,
//! routes each request to its actor, passivates idle ones (least recently used first when
//! the shard is at its share of `actors.max_live`), and restarts a failed one from the store
//! within the restart budget.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use super::Deps;
use super::actor::{DeliverReply, Item, SubArgs, SubMsg, SubscriptionActor};
use crate::domain::{RegistrationId, RegistrationRecord};

const RESTART_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub(super) enum ShardMsg {
    /// A request for `record`'s actor, spawned from `record` if it is not live.
    Deliver {
        record: Arc<RegistrationRecord>,
        items: Vec<Item>,
        reply: DeliverReply,
    },
    /// An actor that has handled `handled` requests is idle and asks to stop.
    Passivate { id: RegistrationId, handled: u64 },
    /// Every live actor, for the drain at shutdown.
    Children(RpcReplyPort<Vec<ActorRef<SubMsg>>>),
    /// Start the actors of registrations with an unflushed burst, so they flush it.
    Recover(Vec<RegistrationId>),
    /// Ask the actors not routed to for `actors.idle_timeout` whether they can passivate.
    Sweep,
    /// Makes a live actor fail, to test supervision.
    #[cfg(feature = "testsuite")]
    Fail(RegistrationId),
}

#[derive(Debug)]
pub(super) struct ShardSupervisor;

#[derive(Debug)]
struct Child {
    actor: ActorRef<SubMsg>,
    last_routed: Instant,
    /// Requests sent to the actor.
    routed: u64,
}

#[derive(Debug)]
pub(super) struct ShardState {
    deps: Arc<Deps>,
    /// This shard's share of `actors.max_live`.
    capacity: usize,
    children: HashMap<RegistrationId, Child>,
    by_actor: HashMap<ActorId, RegistrationId>,
    restarts: HashMap<RegistrationId, (Instant, u32)>,
}

impl Actor for ShardSupervisor {
    type Msg = ShardMsg;
    type State = ShardState;
    type Arguments = Arc<Deps>;

    async fn pre_start(
        &self,
        myself: ActorRef<ShardMsg>,
        deps: Arc<Deps>,
    ) -> Result<ShardState, ActorProcessingErr> {
        let capacity = (deps.actors.max_live / usize::from(herald_cluster::SHARD_COUNT)).max(1);
        // One timer per shard rather than one per actor: an idle actor costs no timer task.
        let every = (deps.actors.idle_timeout / 2).max(Duration::from_millis(10));
        myself.send_interval(every, || ShardMsg::Sweep);
        Ok(ShardState {
            deps,
            capacity,
            children: HashMap::new(),
            by_actor: HashMap::new(),
            restarts: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ShardMsg>,
        message: ShardMsg,
        state: &mut ShardState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ShardMsg::Deliver {
                record,
                items,
                reply,
            } => route(&myself, state, record, SubMsg::Deliver { items, reply }).await,
            ShardMsg::Passivate { id, handled } => {
                // A request sent and not yet handled keeps the actor.
                let in_flight = state.children.get(&id).is_some_and(|c| c.routed > handled);
                if !in_flight && let Some(child) = forget(state, &id) {
                    child.actor.stop(Some("passivated".into()));
                    state.deps.metrics.subscriptions.passivations.inc();
                }
            }
            #[cfg(feature = "testsuite")]
            ShardMsg::Fail(id) => {
                if let Some(child) = state.children.get(&id) {
                    let _ = child.actor.send_message(SubMsg::Fail);
                }
            }
            ShardMsg::Sweep => {
                let idle = state.deps.actors.idle_timeout;
                for child in state.children.values() {
                    if child.last_routed.elapsed() >= idle {
                        let _ = child.actor.send_message(SubMsg::Idle { force: false });
                    }
                }
            }
            ShardMsg::Children(reply) => {
                let _ = reply.send(state.children.values().map(|c| c.actor.clone()).collect());
            }
            ShardMsg::Recover(ids) => {
                for id in ids {
                    let _ = child(&myself, state, &id, None).await;
                }
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
                state.children.remove(&id);
                state.deps.live.unlist(&id, cell.get_id());
                tracing::warn!(registration = %id, %error, "subscription actor failed");
                let now = Instant::now();
                let (since, count) = state.restarts.entry(id.clone()).or_insert((now, 0));
                if now.duration_since(*since) > RESTART_WINDOW {
                    (*since, *count) = (now, 0);
                }
                *count += 1;
                if *count <= state.deps.actors.restart_budget {
                    state.deps.metrics.subscriptions.restarts.inc();
                    // Rebuilt from the store: its pending burst, if any, is flushed.
                    let _ = child(&myself, state, &id, None).await;
                } else {
                    tracing::error!(registration = %id, "subscription actor restart budget spent; it stays stopped until its next notification");
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if let Some(id) = state.by_actor.remove(&cell.get_id()) {
                    state.children.remove(&id);
                    state.deps.live.unlist(&id, cell.get_id());
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Sends `message` to `record`'s actor, spawning it if needed; a child that stopped between
/// our bookkeeping and the send gets a successor.
async fn route(
    myself: &ActorRef<ShardMsg>,
    state: &mut ShardState,
    record: Arc<RegistrationRecord>,
    mut message: SubMsg,
) {
    let id = record.id.clone();
    for _ in 0..2 {
        let Some(actor) = child(myself, state, &id, Some(record.clone())).await else {
            break;
        };
        match actor.send_message(message) {
            Ok(()) => {
                if let Some(child) = state.children.get_mut(&id) {
                    child.routed += 1;
                    child.last_routed = Instant::now();
                }
                return;
            }
            Err(ractor::MessagingErr::SendErr(back)) => {
                forget(state, &id);
                message = back;
            }
            Err(_) => return,
        }
    }
    // Dropping the reply port makes the caller answer 503; Exchange retries.
    tracing::warn!(registration = %id, "no actor could take a notification");
}

fn forget(state: &mut ShardState, id: &RegistrationId) -> Option<Child> {
    let child = state.children.remove(id)?;
    state.deps.live.unlist(id, child.actor.get_id());
    state.by_actor.remove(&child.actor.get_id());
    Some(child)
}

/// The live actor of `id`, spawned (from `record`, else from the store) if needed.
async fn child(
    myself: &ActorRef<ShardMsg>,
    state: &mut ShardState,
    id: &RegistrationId,
    record: Option<Arc<RegistrationRecord>>,
) -> Option<ActorRef<SubMsg>> {
    if let Some(child) = state.children.get(id) {
        return Some(child.actor.clone());
    }
    if state.children.len() >= state.capacity {
        // Ask the least recently used actor to go if it is idle; it stays if it has work.
        if let Some(lru) = state.children.values().min_by_key(|c| c.last_routed) {
            let _ = lru.actor.send_message(SubMsg::Idle { force: true });
        }
    }
    let args = SubArgs {
        id: id.clone(),
        record,
        deps: state.deps.clone(),
        shard: myself.clone(),
    };
    match Actor::spawn_linked(None, SubscriptionActor, args, myself.get_cell()).await {
        Ok((actor, _)) => {
            state.by_actor.insert(actor.get_id(), id.clone());
            state.children.insert(
                id.clone(),
                Child {
                    actor: actor.clone(),
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
