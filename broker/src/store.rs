//! Where registrations live. [`RegistrationStore`] is the port; [`RedisStore`] is the
//! production implementation and [`MemoryStore`] the embedded, non-durable one for
//! `herald serve` without Redis and for `herald demo`.
//!
//! Every write that changes a registration carries the shard's [`Fence`]; the store
//! refuses a write whose epoch is older than the one recorded for the shard, so a node that
//! lost a shard cannot overwrite its new owner's state. Each write is atomic: a failed write
//! changes nothing a reader can see.

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
pub use redis::{RedisStore, RedisStoreConfig};

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

/// The registration store.
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

    /// The registration with this id, if it exists.
    async fn get(&self, id: &RegistrationId) -> Result<Option<RegistrationRecord>, StoreError>;

    /// Every registration of one device token.
    async fn list_device(
        &self,
        device_token: &DeviceToken,
    ) -> Result<Vec<RegistrationRecord>, StoreError>;

    /// The registration a subscription id is bound to, if any.
    async fn find_subscription(
        &self,
        subscription_id: &SubscriptionId,
    ) -> Result<Option<RegistrationId>, StoreError>;

    /// Stores a new registration (version 0 → 1). Fails with `SubscriptionTaken` if its
    /// subscription id is bound to another registration.
    async fn create(
        &self,
        fence: Fence,
        record: &RegistrationRecord,
    ) -> Result<RegistrationRecord, StoreError>;

    /// Replaces a registration whose stored version is `record.version`; returns it with the
    /// next version. Fails with `Conflict` if someone wrote it in between, `NotFound` if it
    /// is gone, `SubscriptionTaken` if it binds a subscription id bound elsewhere.
    async fn update(
        &self,
        fence: Fence,
        record: &RegistrationRecord,
    ) -> Result<RegistrationRecord, StoreError>;

    /// [`update`](Self::update) for a caller that holds the stored record, `stored` (a
    /// subscription actor's cache): the version check alone proves the copy current, so the
    /// store need not read it again and writes only what changed.
    async fn update_from(
        &self,
        fence: Fence,
        stored: &RegistrationRecord,
        record: &RegistrationRecord,
    ) -> Result<RegistrationRecord, StoreError> {
        debug_assert_eq!(stored.version, record.version);
        self.update(fence, record).await
    }

    /// Moves a registration to the shard of its new device token: `record` carries the new
    /// token and the version read; `from` fences the old shard and `to` the new one.
    async fn relocate(
        &self,
        from: Fence,
        to: Fence,
        record: &RegistrationRecord,
    ) -> Result<RegistrationRecord, StoreError>;

    /// Deletes a registration and releases its subscription id. `Ok(false)` if it did not
    /// exist.
    async fn delete(&self, fence: Fence, id: &RegistrationId) -> Result<bool, StoreError>;

    /// Registrations by state over the whole store.
    async fn count_by_state(&self) -> Result<StateCounts, StoreError>;

    /// The registrations of `shard` with a burst accepted and not yet flushed: the work a
    /// node must finish when it takes the shard over (after a crash, say).
    async fn pending_bursts(&self, shard: ShardId) -> Result<Vec<RegistrationId>, StoreError>;

    /// Up to `limit` pending or active registrations of `shard` not heard from since before
    /// `before` (see [`RegistrationRecord::last_heard`]).
    async fn silent_since(
        &self,
        shard: ShardId,
        before: UnixMillis,
        limit: usize,
    ) -> Result<Vec<RegistrationId>, StoreError>;

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

    /// Publishes that a push provider declared a registration's token dead (the feedback
    /// stream; the newest [`FEEDBACK_KEPT`] events are kept).
    async fn publish_feedback(&self, event: &DeadToken) -> Result<(), StoreError>;

    /// Where the nodes sharing this store share their APNs provider tokens.
    fn token_share(self: Arc<Self>) -> Arc<dyn TokenShare>;
}

/// How many feedback events a store keeps (Redis: approximately).
pub const FEEDBACK_KEPT: usize = 100_000;
