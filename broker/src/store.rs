//! Where registrations live. [`RegistrationStore`] is the port; [`RedisStore`] is the
//! production implementation and [`MemoryStore`] the embedded, non-durable one for
//! `herald serve` without Redis and for `herald demo`.
//!
//! Every write that changes a registration carries the shard's [`Fence`]; the store
//! refuses a write whose epoch is older than the one recorded for the shard, so a node that
//! lost a shard cannot overwrite its new owner's state. Each write is atomic: a failed write
//! changes nothing a reader can see.
//!
//! A registration's copy lives in the shard of its device token. A new device token of
//! another shard moves it: the old copy is frozen (`moving_to`), the new shard adopts a copy,
//! the location switches (the commit point), and the old copy goes — so a reader always finds
//! the registration, old copy or new (docs/subscriptions.md).

mod error;
mod memory;
mod redis;

use std::sync::Arc;

use async_trait::async_trait;
use herald_cluster::{Fence, ShardId};
use herald_workers::apns::TokenShare;

use crate::domain::{
    DeadToken, DeviceToken, RegState, RegistrationId, RegistrationRecord, SubscriptionId,
    UnixMillis,
};

pub use error::StoreError;
pub use memory::MemoryStore;
pub use redis::{
    CopyAdmin, REDIS, RedisLabels, RedisMetrics, RedisStore, RedisStoreConfig, Replication,
    record_fields, record_from_fields,
};

/// How many registrations are in each state, summed over every shard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateCounts {
    pub pending: i64,
    pub active: i64,
    pub stale: i64,
    pub dead: i64,
}

impl StateCounts {
    pub fn get(&self, state: RegState) -> i64 {
        match state {
            RegState::Pending => self.pending,
            RegState::Active => self.active,
            RegState::Stale => self.stale,
            RegState::Dead => self.dead,
        }
    }

    pub(crate) fn add(&mut self, state: RegState, n: i64) {
        match state {
            RegState::Pending => self.pending += n,
            RegState::Active => self.active += n,
            RegState::Stale => self.stale += n,
            RegState::Dead => self.dead += n,
        }
    }
}

/// Where a moved registration lives: what [`RegistrationStore::set_location`] recorded last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// `None`: the registration was deleted (the in-memory store says so here).
    pub shard: Option<ShardId>,
    /// The version of the copy it lives in from (or was deleted at).
    pub version: u64,
}

/// What [`RegistrationStore::adopt`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Adopted {
    /// The copy is written: the registration lives in this shard from the next
    /// [`RegistrationStore::set_location`] on.
    Written(Box<RegistrationRecord>),
    /// The shard already holds this copy or a newer one (an adoption retried).
    AlreadyThere,
    /// The shard holds the registration's tombstone: it was deleted.
    Deleted,
}

/// The registration store. Each registration has one writer, its subscription actor (see
/// `crate::subscription`), so the version checks of the writes below are a safety net that
/// catches a stale copy, not a concurrency mechanism.
#[async_trait]
pub trait RegistrationStore: Send + Sync + std::fmt::Debug + 'static {
    /// A short name for logs and the readiness answer ("redis", "memory").
    fn kind(&self) -> &'static str;

    /// Whether the store answers now.
    async fn ping(&self) -> Result<(), StoreError>;

    /// What the store's server should change for Herald to keep its promises (memory per
    /// registration, no eviction): one line each, for the operator.
    async fn settings_advice(&self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    /// What this copy of a home should change to stop taking writes when cut off from the
    /// other regions (see `docs/operations.md`); `None` when nothing.
    async fn partition_advice(&self) -> Result<Option<String>, StoreError> {
        Ok(None)
    }

    /// The generation of each home of `homes` as this copy knows it (0: never promoted);
    /// see `herald region promote`.
    async fn home_generations(&self, homes: &[String]) -> Result<Vec<u64>, StoreError> {
        Ok(vec![0; homes.len()])
    }

    /// Whether this copy of the home takes writes: a primary, or a store that has no
    /// replication of its own. A replica of another region's primary does not.
    async fn is_primary(&self) -> Result<bool, StoreError> {
        Ok(true)
    }

    /// The registration with this id, if it exists: its copy in the shard it lives in. A
    /// registration that exists is always found, even while it moves (then the copy found
    /// may be the frozen one, with `moving_to` set); `None` means it does not exist.
    async fn get(&self, id: &RegistrationId) -> Result<Option<RegistrationRecord>, StoreError>;

    /// The copy of registration `id` kept in `shard`, whether or not the registration lives
    /// there (what a subscription actor of that shard starts from).
    async fn get_in(
        &self,
        shard: ShardId,
        id: &RegistrationId,
    ) -> Result<Option<RegistrationRecord>, StoreError>;

    /// Every registration of one device token.
    async fn list_device(
        &self,
        device_token: &DeviceToken,
    ) -> Result<Vec<RegistrationRecord>, StoreError>;

    /// The registrations of `device_token` other than `except` (a flush knows its own
    /// record; most devices have no other, and then no record is read at all).
    async fn list_device_except(
        &self,
        device_token: &DeviceToken,
        except: &RegistrationId,
    ) -> Result<Vec<RegistrationRecord>, StoreError> {
        let mut records = self.list_device(device_token).await?;
        records.retain(|r| &r.id != except);
        Ok(records)
    }

    /// The registration a subscription id is bound to, if any.
    async fn find_subscription(
        &self,
        subscription_id: &SubscriptionId,
    ) -> Result<Option<RegistrationId>, StoreError>;

    /// Stores a new registration in its device token's shard (version 0 → 1). Fails with
    /// `SubscriptionTaken` if its subscription id is bound to another registration.
    async fn create(
        &self,
        fence: Fence,
        record: &RegistrationRecord,
    ) -> Result<RegistrationRecord, StoreError>;

    /// Replaces `stored` — the copy as its writer last read or wrote it — with `record`, in
    /// the same shard (a new device token of the same shard moves the device index entry);
    /// returns `record` at the next version. Fails with `Conflict` if the copy's version is
    /// not `stored.version`, `NotFound` if the shard holds no copy, `SubscriptionTaken` if
    /// `record` binds a subscription id bound elsewhere.
    async fn update(
        &self,
        fence: Fence,
        stored: &RegistrationRecord,
        record: &RegistrationRecord,
    ) -> Result<RegistrationRecord, StoreError>;

    /// Writes `record` — a registration moving in from another shard, at its version — into
    /// `fence.shard`, replacing `existing` (what the adopting writer read there: `None`, or
    /// an older copy left by an earlier move). The registration does not live here until
    /// [`set_location`](Self::set_location) says so.
    async fn adopt(
        &self,
        fence: Fence,
        existing: Option<&RegistrationRecord>,
        record: &RegistrationRecord,
    ) -> Result<Adopted, StoreError>;

    /// Records that registration `id` lives in `shard` from its copy at `version` on — the
    /// commit point of a move. Never goes back: a location recorded for a larger version
    /// stays (a late or repeated call changes nothing).
    async fn set_location(
        &self,
        id: &RegistrationId,
        shard: ShardId,
        version: u64,
    ) -> Result<(), StoreError>;

    /// What the last commit of a move recorded; `None` for a registration that never moved,
    /// or does not exist.
    async fn location(&self, id: &RegistrationId) -> Result<Option<Location>, StoreError>;

    /// Drops the copy `stored` from its shard (the old copy of a completed move). `Ok(false)`
    /// if it was gone already.
    async fn remove(&self, fence: Fence, stored: &RegistrationRecord) -> Result<bool, StoreError>;

    /// Deletes registration `stored` (unregistered): its copy, replaced by a tombstone kept a
    /// while to say the registration is gone, and its subscription binding.
    async fn delete(&self, fence: Fence, stored: &RegistrationRecord) -> Result<(), StoreError>;

    /// Registrations by state over the whole store.
    async fn count_by_state_in(&self, shards: &[ShardId]) -> Result<StateCounts, StoreError>;

    /// Registrations by state in the whole store.
    async fn count_by_state(&self) -> Result<StateCounts, StoreError> {
        let shards: Vec<ShardId> = ShardId::all().collect();
        self.count_by_state_in(&shards).await
    }

    /// The registrations of `shard` with work left there — a burst accepted and not yet
    /// flushed, or a move to finish — what a node must finish when it takes the shard over
    /// (after a crash, say).
    async fn pending_bursts(&self, shard: ShardId) -> Result<Vec<RegistrationId>, StoreError>;

    /// Up to `limit` pending or active registrations of `shard` not heard from since before
    /// `before` (see [`RegistrationRecord::last_heard`]).
    async fn silent_since(
        &self,
        shard: ShardId,
        before: UnixMillis,
        limit: usize,
    ) -> Result<Vec<RegistrationId>, StoreError>;

    /// Publishes that a push provider declared a registration's token dead (the feedback
    /// stream; the newest [`FEEDBACK_KEPT`] events are kept).
    async fn publish_feedback(&self, event: &DeadToken) -> Result<(), StoreError>;

    /// Where the nodes sharing this store share their APNs provider tokens.
    fn token_share(self: Arc<Self>) -> Arc<dyn TokenShare>;

    /// The member and lease tables of the nodes sharing this store; `None` for a store only
    /// one node can use (in memory), whose node holds every shard.
    fn cluster_tables(self: Arc<Self>) -> Option<ClusterTables> {
        None
    }
}

/// Where a cluster's nodes find each other and hold their shards.
pub type ClusterTables = (
    Arc<dyn herald_cluster::MemberTable>,
    Arc<dyn herald_cluster::LeaseTable>,
);

/// How many feedback events a store keeps (Redis: approximately).
pub const FEEDBACK_KEPT: usize = 100_000;
