//! `SubscriptionActor`: the one writer of one registration's copy in one shard (DESIGN.md
//! §4). Every change — a notification, a push outcome, an API call, the liveness sweep, a
//! move to another shard — is a message, applied in order and written to the store (one
//! fenced write) before it is answered. Its record is the stored copy, shared with
//! [`super::LiveIndex`]. The pure rules are [`super::state`] and [`super::flush`]; the
//! handlers live in `deliver`, `push`, `commands` and `handoff`.

mod commands;
mod deliver;
mod handoff;
mod push;
mod siblings;
mod trace;

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_cluster::{Epoch, Fence, Fencing as _, NotOwner, ShardId};
use herald_gateway::model::SendNotification;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::Instrument as _;

use super::activity::{Activity, BUSY};
use super::shard::ShardMsg;
use super::{AdoptOutcome, Command, CommandError, DeliverError, Shared, flush};
use crate::domain::{RegState, RegistrationId, RegistrationRecord, UnixMillis};
use crate::registry::MessageEffect;
use crate::store::StoreError;

pub(super) use push::PushDone;
use siblings::{nudge_siblings, siblings};

/// The span of a notification applied by its actor (its store write is its child).
const APPLY_SPAN: &str = "subscription.apply";

/// A request's items, answered with the effects that held.
pub(super) type DeliverReply = RpcReplyPort<Result<Vec<MessageEffect>, DeliverError>>;
/// A command, answered with the registration as it is now (`None`: deleted).
pub(super) type CommandReply = RpcReplyPort<Result<Option<RegistrationRecord>, CommandError>>;
/// An adoption, answered once the copy is written (or found there already).
pub(super) type AdoptReply = RpcReplyPort<Result<AdoptOutcome, DeliverError>>;

#[derive(Debug)]
pub(super) enum SubMsg {
    /// A gateway request: the effect the sink decided for each of its response messages.
    Deliver {
        effects: Vec<MessageEffect>,
        request: Arc<SendNotification>,
        reply: DeliverReply,
        /// The caller's span (the gateway's `ews.notification`): the apply is its child.
        span: tracing::Span,
    },
    Command {
        command: Command,
        reply: CommandReply,
    },
    /// The registration moves into this shard: write this copy (see `handoff`).
    Adopt {
        record: Box<RegistrationRecord>,
        reply: AdoptReply,
    },
    /// Another registration of the device left it or died: the device's badge changed.
    DeviceChanged,
    /// Work may be due (a burst, a retry, a move to finish); ignored unless `generation`
    /// is the latest scheduled.
    Flush { generation: u64 },
    /// A push ended (boxed: every future that holds a message is as large as the largest).
    PushDone(Box<PushDone>),
    /// Shutdown: flush the pending burst now, and answer once no push is in flight.
    Drain(RpcReplyPort<()>),
    /// The move into this shard was committed: readers find this copy now.
    Committed,
    /// Work was parked for this registration while this actor was live (it may have started
    /// from an older read): read the copy again and take up what is due.
    Refresh,
    /// Fails the actor, to test its supervision.
    #[cfg(feature = "testsuite")]
    Fail,
}

impl SubMsg {
    /// Whether the caller stopped waiting for the answer (it timed out): such a request is
    /// not worth applying any more; Exchange sends it again.
    pub(super) fn abandoned(&self) -> bool {
        match self {
            Self::Deliver { reply, .. } => reply.is_closed(),
            Self::Command { reply, .. } => reply.is_closed(),
            Self::Adopt { reply, .. } => reply.is_closed(),
            _ => false,
        }
    }

    /// Whether the message came through the supervisor's routing (which counts them).
    fn routed(&self) -> bool {
        matches!(
            self,
            Self::Deliver { .. } | Self::Command { .. } | Self::Adopt { .. } | Self::DeviceChanged
        )
    }
}

#[derive(Debug)]
pub(super) struct SubscriptionActor;

#[derive(Debug)]
pub(super) struct SubArgs {
    pub(super) id: RegistrationId,
    pub(super) shard: ShardId,
    /// The epoch of the lease its shard was started under: the actor writes and pushes
    /// only while the node holds the shard at this epoch.
    pub(super) epoch: Epoch,
    /// This shard's copy as the caller just read it; `None`: read it from the store.
    pub(super) record: Option<Arc<RegistrationRecord>>,
    pub(super) deps: Arc<Shared>,
    pub(super) supervisor: ActorRef<ShardMsg>,
    pub(super) activity: Arc<Activity>,
}

#[derive(Debug)]
pub(super) struct SubState {
    id: RegistrationId,
    shard: ShardId,
    epoch: Epoch,
    /// This shard's copy as stored (shared with [`super::LiveIndex`], republished after every
    /// write); `None`: the registration has no copy here (it moved away, was deleted, or was
    /// never here).
    copy: Option<Arc<RegistrationRecord>>,
    /// This actor, as its [`super::LiveIndex`] entry names it.
    actor: ActorId,
    deps: Arc<Shared>,
    supervisor: ActorRef<ShardMsg>,
    activity: Arc<Activity>,
    generation: u64,
    /// When the armed timer fires, if one is armed.
    armed: Option<UnixMillis>,
    /// A push is on its way to the provider.
    in_flight: bool,
    /// Retries of the current burst's push so far (the back-off grows with them).
    retries: u32,
    /// Do not push, nor finish a move, before this: a provider's "retry after", our own
    /// back-off after a store error, a device's minimum interval between pushes.
    not_before: Option<Instant>,
    /// Failed attempts to finish the move out of this shard so far.
    move_failures: u32,
    /// Store failures in a row while flushing (the back-off grows with them).
    store_failures: u32,
    /// Set while the node drains: flush without waiting, answer these when done.
    draining: Vec<RpcReplyPort<()>>,
    /// The copy may differ from the stored one (a write was refused by fencing): read it
    /// again before the next write.
    stale: bool,
    /// Asked the supervisor to be stopped.
    done: bool,
    /// Since when its burst is pending, as last told to the node's count of pending bursts
    /// (`None`: not told yet — a predecessor may have left an entry).
    reported_pending: Option<Option<UnixMillis>>,
    /// The traces of the pending burst's notifications, when traces are exported.
    burst_trace: Option<Box<trace::BurstTrace>>,
}

impl Actor for SubscriptionActor {
    type Msg = SubMsg;
    type State = SubState;
    type Arguments = SubArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SubMsg>,
        args: SubArgs,
    ) -> Result<SubState, ActorProcessingErr> {
        let listed = args.record.is_some();
        let copy = match args.record.filter(|r| r.shard() == args.shard) {
            Some(record) => Some(record),
            None => args
                .deps
                .store
                .get_in(args.shard, &args.id)
                .await?
                .map(Arc::new),
        };
        args.deps.metrics.subscriptions.live_actors.inc();
        // Listed for the gateway only when started from a reader's copy, which readers found
        // where the registration lives (a copy read here by recovery may be a move's
        // uncommitted or frozen one; readers then find the right one in the store).
        if let Some(copy) = copy.as_ref().filter(|c| listed && c.moving_to.is_none()) {
            args.deps.live.publish(myself.get_id(), copy, true);
        }
        let mut state = SubState {
            id: args.id,
            shard: args.shard,
            epoch: args.epoch,
            copy,
            actor: myself.get_id(),
            deps: args.deps,
            supervisor: args.supervisor,
            activity: args.activity,
            generation: 0,
            armed: None,
            in_flight: false,
            retries: 0,
            not_before: None,
            move_failures: 0,
            store_failures: 0,
            draining: Vec::new(),
            stale: false,
            done: false,
            reported_pending: None,
            burst_trace: None,
        };
        // A burst or a move left by a passivated or crashed predecessor is taken up when due.
        schedule(&myself, &mut state);
        if finished(&state) {
            ask_to_stop(&mut state);
        }
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SubMsg>,
        state: &mut SubState,
    ) -> Result<(), ActorProcessingErr> {
        state.deps.metrics.subscriptions.live_actors.dec();
        state.deps.live.unlist(&state.id, state.actor);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SubMsg>,
        message: SubMsg,
        state: &mut SubState,
    ) -> Result<(), ActorProcessingErr> {
        // Boxed: ractor keeps the future that waits for an actor's next message (which
        // embeds this one) for as long as the actor lives, so its size is paid by every idle
        // live actor; the work itself is allocated only while a message is handled.
        Box::pin(on_message(myself, message, state)).await
    }
}

async fn on_message(
    myself: ActorRef<SubMsg>,
    message: SubMsg,
    state: &mut SubState,
) -> Result<(), ActorProcessingErr> {
    let routed = message.routed();
    if routed {
        // Asked to be stopped, and given work since: ask again once it is done.
        state.done = false;
    }
    let mut stop_after = false;
    match message {
        SubMsg::Deliver {
            effects,
            request,
            reply,
            span,
        } => {
            // Traced only within a traced request (when traces are exported).
            let answer = if span.is_disabled() {
                deliver::deliver(state, effects, &request).await
            } else {
                let applied =
                    tracing::info_span!(parent: &span, APPLY_SPAN, registration = %state.id);
                let answer = deliver::deliver(state, effects, &request)
                    .instrument(applied.clone())
                    .await;
                if answer.is_ok() {
                    trace::note(state, &applied);
                }
                answer
            };
            let _ = reply.send(answer);
        }
        SubMsg::Command { command, reply } => {
            // Started only to be marked stale: no reason to stay afterwards.
            stop_after =
                matches!(command, Command::MarkStale { .. }) && state.activity.handled() == 0;
            let answer = commands::run(&myself, state, command).await;
            let _ = reply.send(answer);
        }
        SubMsg::Adopt { record, reply } => {
            let answer = handoff::adopt(state, *record).await;
            let _ = reply.send(answer);
        }
        SubMsg::DeviceChanged => commands::device_changed(state).await,
        SubMsg::Flush { generation } if generation == state.generation => {
            state.armed = None;
            work_now(&myself, state).await
        }
        // An earlier timer, replaced since: nothing changed, nothing to re-arm.
        SubMsg::Flush { .. } => return Ok(()),
        SubMsg::PushDone(done) => push::done(&myself, state, *done).await,
        SubMsg::Committed => {
            if let Some(copy) = state.copy.as_ref().filter(|c| c.moving_to.is_none()) {
                state.deps.live.publish(state.actor, copy, true);
            }
        }
        SubMsg::Refresh => {
            if let Err(error) = refresh(state).await {
                tracing::warn!(registration = %state.id, ?error, "cannot read the registration again; its work is taken up at its next request");
            }
        }
        SubMsg::Drain(reply) => {
            state.draining.push(reply);
            work_now(&myself, state).await;
            push::finish_drain(state);
        }
        #[cfg(feature = "testsuite")]
        SubMsg::Fail => return Err("failure injected by a test".into()),
    }
    // The work left is published before the message counts as handled: the supervisor
    // stops an actor only once both say it can (nothing on its way, nothing due).
    schedule(&myself, state);
    if routed {
        state.activity.count_handled();
    }
    if finished(state) || (stop_after && state.activity.due() == 0) {
        ask_to_stop(state);
    }
    Ok(())
}

/// Does the work that is due: finish a move out, or flush the burst.
async fn work_now(myself: &ActorRef<SubMsg>, state: &mut SubState) {
    if state.copy.as_ref().is_some_and(|c| c.moving_to.is_some()) {
        let backing_off = state.not_before.is_some_and(|at| Instant::now() < at);
        if !backing_off || !state.draining.is_empty() {
            let _ = handoff::finish(myself, state).await;
        }
    } else {
        push::flush_now(myself, state).await;
    }
}

/// Arms the timer for the work left (a burst, a retry, a move) and publishes when it is due
/// for the supervisor.
fn schedule(myself: &ActorRef<SubMsg>, state: &mut SubState) {
    let pending = state
        .copy
        .as_ref()
        .and_then(|c| c.progress.burst.map(|b| b.first_at));
    if state.reported_pending != Some(pending) {
        state.reported_pending = Some(pending);
        state
            .deps
            .pending
            .set(state.shard, state.epoch, &state.id, pending);
    }
    if pending.is_none() {
        state.burst_trace = None;
    }
    let due = due(state);
    state.activity.set_due(match (state.in_flight, due) {
        (true, _) => BUSY,
        (false, Some(at)) => at.0.max(1),
        (false, None) => 0,
    });
    if state.in_flight {
        return;
    }
    match due {
        // A timer armed for no later is enough: when it fires early, it arms the next.
        Some(at) if state.armed.is_some_and(|armed| armed <= at) => {}
        Some(at) => {
            let wait = Duration::from_millis(at.0.saturating_sub(UnixMillis::now().0));
            state.armed = Some(at);
            schedule_in(myself, state, wait);
        }
        None => {}
    }
}

/// Whether nothing is left for this actor to do: no copy here any more, or a dead
/// registration with nothing in flight.
fn finished(state: &SubState) -> bool {
    !state.in_flight
        && state.draining.is_empty()
        && state
            .copy
            .as_ref()
            .is_none_or(|c| c.state == RegState::Dead && c.moving_to.is_none())
}

/// When the work left here is due, if there is any.
fn due(state: &SubState) -> Option<UnixMillis> {
    let copy = state.copy.as_ref()?;
    let backing_off = state.not_before.map(|at| {
        let wait = at.saturating_duration_since(Instant::now());
        plus(UnixMillis::now(), wait)
    });
    if copy.moving_to.is_some() {
        return Some(backing_off.unwrap_or_else(UnixMillis::now));
    }
    if copy.state == RegState::Dead {
        return None;
    }
    let burst = copy.progress.burst.as_ref()?;
    let due = flush::due(burst, &state.deps.rules);
    Some(backing_off.map_or(due, |at| at.max(due)))
}

fn plus(t: UnixMillis, d: Duration) -> UnixMillis {
    UnixMillis(t.0.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
}

fn schedule_in(myself: &ActorRef<SubMsg>, state: &mut SubState, wait: Duration) {
    state.generation += 1;
    let generation = state.generation;
    myself.send_after(wait, move || SubMsg::Flush { generation });
}

/// Holds the work off for `wait` (a back-off of our own, a device's minimum interval).
fn hold(state: &mut SubState, wait: Duration) {
    let until = Instant::now().checked_add(wait);
    state.not_before = state.not_before.max(until);
}

fn ask_to_stop(state: &mut SubState) {
    if !state.done {
        state.done = true;
        let _ = state.supervisor.send_message(ShardMsg::Done {
            id: state.id.clone(),
            actor: state.actor,
        });
    }
}

/// Why a write of the copy did not happen.
#[derive(Debug)]
enum WriteError {
    /// This shard holds no copy of the registration (any more).
    Absent,
    /// The copy is frozen: the registration is moving to another shard.
    Moving,
    /// This node does not hold the shard's lease.
    NotOwner(NotOwner),
    Store(StoreError),
}

impl From<NotOwner> for WriteError {
    fn from(err: NotOwner) -> Self {
        Self::NotOwner(err)
    }
}

impl From<StoreError> for WriteError {
    fn from(err: StoreError) -> Self {
        Self::Store(err)
    }
}

impl From<WriteError> for DeliverError {
    fn from(err: WriteError) -> Self {
        match err {
            WriteError::Absent => Self::Elsewhere,
            WriteError::Moving => Self::Moving,
            WriteError::NotOwner(err) => Self::NotOwner(err),
            WriteError::Store(err) => Self::Store(err),
        }
    }
}

impl From<WriteError> for CommandError {
    fn from(err: WriteError) -> Self {
        match err {
            WriteError::Absent => Self::Unavailable(DeliverError::Elsewhere),
            WriteError::Moving => Self::Unavailable(DeliverError::Moving),
            WriteError::NotOwner(err) => Self::Unavailable(DeliverError::NotOwner(err)),
            WriteError::Store(err) => err.into(),
        }
    }
}

/// This shard's fence: the epoch of the lease this node holds on it.
/// The fence of this actor's writes and pushes: the shard's lease, held and trusted, at the
/// epoch the actor's shard was started under. An actor started under another lease of the
/// shard (one lost, then taken again) writes and pushes nothing.
fn fence(state: &SubState) -> Result<Fence, NotOwner> {
    let fence = state.deps.ownership.fence(state.shard)?;
    if fence.epoch != state.epoch {
        return Err(NotOwner(state.shard));
    }
    Ok(fence)
}

/// Applies `change` to the copy and writes it (one fenced, version-checked store write):
/// the one path by which a registration changes. A copy found stale (a version conflict: the
/// actor started from an older read) is read again and `change` applied to it once more.
async fn commit<T>(
    state: &mut SubState,
    mut change: impl FnMut(&mut RegistrationRecord) -> T,
) -> Result<T, WriteError> {
    for _ in 0..2 {
        if state.stale {
            refresh(state).await?;
        }
        let stored = state.copy.clone().ok_or(WriteError::Absent)?;
        if stored.moving_to.is_some() {
            // Only the move itself (`handoff`) changes a frozen copy: by removing it.
            return Err(WriteError::Moving);
        }
        let mut record = RegistrationRecord::clone(&stored);
        let result = change(&mut record);
        if record == *stored {
            return Ok(result);
        }
        let write = state.deps.store.update(fence(state)?, &stored, &record);
        // In a notification's trace when it applies one; no trace of its own otherwise
        // (ractor runs every actor inside a span of its own, which is no trace).
        let applying = tracing::Span::current()
            .metadata()
            .is_some_and(|m| m.name() == APPLY_SPAN);
        let written = if applying {
            write.instrument(tracing::info_span!("store.write")).await
        } else {
            write.await
        };
        match written {
            Ok(written) => {
                remember(state, written);
                return Ok(result);
            }
            Err(StoreError::Conflict) => state.stale = true,
            Err(StoreError::NotFound) => {
                forget(state);
                return Err(WriteError::Absent);
            }
            Err(error @ StoreError::Fenced { .. }) => {
                // Another node owns the shard now and works from the store: this copy must
                // not push again.
                if let Some(copy) = state.copy.as_mut() {
                    Arc::make_mut(copy).progress.burst = None;
                }
                state.stale = true;
                return Err(error.into());
            }
            Err(other) => {
                // The write may have landed all the same (an answer lost, a claim step that
                // failed after it): read the copy again before the next one.
                state.stale = true;
                return Err(other.into());
            }
        }
    }
    Err(StoreError::Conflict.into())
}

/// Reads this shard's copy again.
async fn refresh(state: &mut SubState) -> Result<(), WriteError> {
    match state.deps.store.get_in(state.shard, &state.id).await? {
        Some(fresh) => remember(state, fresh),
        None => forget(state),
    }
    state.stale = false;
    Ok(())
}

/// Takes `record` as the stored copy, and publishes it if this actor is listed (a frozen
/// copy is taken out: readers find the copy that is live in the store).
fn remember(state: &mut SubState, record: RegistrationRecord) {
    let record = Arc::new(record);
    if record.moving_to.is_some() {
        state.deps.live.unlist(&state.id, state.actor);
    } else {
        state.deps.live.publish(state.actor, &record, false);
    }
    state.copy = Some(record);
}

/// The shard holds no copy any more: requests go elsewhere.
fn forget(state: &mut SubState) {
    state.copy = None;
    state.deps.live.unlist(&state.id, state.actor);
}
