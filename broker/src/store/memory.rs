//! The embedded store: everything in one process, behind one lock. Not durable — a restart
//! forgets every registration — so the node says so when it starts on it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use herald_cluster::{Epoch, Fence, ShardId};

use herald_workers::apns::{InProcessShare, TokenShare};

use super::{FEEDBACK_KEPT, RegistrationStore, StateCounts, StoreError};
use crate::domain::{
    DeadToken, DeviceToken, RegistrationId, RegistrationRecord, SubscriptionId, UnixMillis,
};

#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    tokens: Arc<InProcessShare>,
}

#[derive(Debug, Default)]
struct Inner {
    records: HashMap<RegistrationId, RegistrationRecord>,
    devices: HashMap<DeviceToken, BTreeSet<RegistrationId>>,
    subscriptions: HashMap<SubscriptionId, RegistrationId>,
    epochs: HashMap<ShardId, Epoch>,
    feedback: VecDeque<DeadToken>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a shard's current epoch, as a lease acquisition would.
    pub fn set_epoch(&self, shard: ShardId, epoch: Epoch) {
        self.lock().epochs.insert(shard, epoch);
    }

    /// The feedback events published so far, oldest first.
    pub fn feedback(&self) -> Vec<DeadToken> {
        self.lock().feedback.iter().cloned().collect()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied write: every write
        // below checks first and mutates last. So a poisoned lock is still consistent.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Inner {
    fn check_fence(&self, fence: Fence) -> Result<(), StoreError> {
        let current = self.epochs.get(&fence.shard).copied().unwrap_or_default();
        if current > fence.epoch {
            return Err(StoreError::Fenced {
                shard: fence.shard,
                current,
                presented: fence.epoch,
            });
        }
        Ok(())
    }

    fn check_subscription(&self, record: &RegistrationRecord) -> Result<(), StoreError> {
        match record
            .subscription_id
            .as_ref()
            .and_then(|s| self.subscriptions.get(s))
        {
            Some(owner) if *owner != record.id => Err(StoreError::SubscriptionTaken(owner.clone())),
            _ => Ok(()),
        }
    }

    fn insert(&mut self, mut record: RegistrationRecord) -> RegistrationRecord {
        record.version += 1;
        if let Some(sub) = &record.subscription_id {
            self.subscriptions.insert(sub.clone(), record.id.clone());
        }
        self.devices
            .entry(record.device_token.clone())
            .or_default()
            .insert(record.id.clone());
        self.records.insert(record.id.clone(), record.clone());
        record
    }

    fn remove(&mut self, id: &RegistrationId) -> Option<RegistrationRecord> {
        let old = self.records.remove(id)?;
        if let Some(sub) = &old.subscription_id {
            self.subscriptions.remove(sub);
        }
        if let Some(ids) = self.devices.get_mut(&old.device_token) {
            ids.remove(id);
            if ids.is_empty() {
                self.devices.remove(&old.device_token);
            }
        }
        Some(old)
    }

    fn check_current(&self, record: &RegistrationRecord) -> Result<(), StoreError> {
        match self.records.get(&record.id) {
            None => Err(StoreError::NotFound),
            Some(stored) if stored.version != record.version => Err(StoreError::Conflict),
            Some(_) => Ok(()),
        }
    }
}

#[async_trait]
impl RegistrationStore for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn publish_feedback(&self, event: &DeadToken) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.feedback.len() == FEEDBACK_KEPT {
            inner.feedback.pop_front();
        }
        inner.feedback.push_back(event.clone());
        Ok(())
    }

    fn token_share(self: Arc<Self>) -> Arc<dyn TokenShare> {
        self.tokens.clone()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn get(&self, id: &RegistrationId) -> Result<Option<RegistrationRecord>, StoreError> {
        Ok(self.lock().records.get(id).cloned())
    }

    async fn list_device(
        &self,
        device_token: &DeviceToken,
    ) -> Result<Vec<RegistrationRecord>, StoreError> {
        let inner = self.lock();
        let ids = inner.devices.get(device_token).into_iter().flatten();
        Ok(ids
            .filter_map(|id| inner.records.get(id).cloned())
            .collect())
    }

    async fn find_subscription(
        &self,
        subscription_id: &SubscriptionId,
    ) -> Result<Option<RegistrationId>, StoreError> {
        Ok(self.lock().subscriptions.get(subscription_id).cloned())
    }

    async fn create(
        &self,
        fence: Fence,
        record: &RegistrationRecord,
    ) -> Result<RegistrationRecord, StoreError> {
        let mut inner = self.lock();
        inner.check_fence(fence)?;
        inner.check_subscription(record)?;
        if inner.records.contains_key(&record.id) {
            return Err(StoreError::Conflict);
        }
        Ok(inner.insert(RegistrationRecord {
            version: 0,
            ..record.clone()
        }))
    }

    async fn update(
        &self,
        fence: Fence,
        record: &RegistrationRecord,
    ) -> Result<RegistrationRecord, StoreError> {
        let mut inner = self.lock();
        inner.check_fence(fence)?;
        inner.check_current(record)?;
        inner.check_subscription(record)?;
        inner.remove(&record.id);
        Ok(inner.insert(record.clone()))
    }

    async fn relocate(
        &self,
        from: Fence,
        to: Fence,
        record: &RegistrationRecord,
    ) -> Result<RegistrationRecord, StoreError> {
        let mut inner = self.lock();
        inner.check_fence(from)?;
        inner.check_fence(to)?;
        inner.check_current(record)?;
        inner.check_subscription(record)?;
        inner.remove(&record.id);
        Ok(inner.insert(record.clone()))
    }

    async fn delete(&self, fence: Fence, id: &RegistrationId) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        inner.check_fence(fence)?;
        Ok(inner.remove(id).is_some())
    }

    async fn count_by_state(&self) -> Result<StateCounts, StoreError> {
        let mut counts = StateCounts::default();
        for record in self.lock().records.values() {
            counts.add(record.state, 1);
        }
        Ok(counts)
    }

    async fn silent_since(
        &self,
        shard: ShardId,
        before: UnixMillis,
        limit: usize,
    ) -> Result<Vec<RegistrationId>, StoreError> {
        Ok(self
            .lock()
            .records
            .values()
            .filter(|r| {
                r.device_token.shard() == shard && r.last_heard().is_some_and(|t| t < before)
            })
            .take(limit)
            .map(|r| r.id.clone())
            .collect())
    }

    async fn pending_bursts(&self, shard: ShardId) -> Result<Vec<RegistrationId>, StoreError> {
        Ok(self
            .lock()
            .records
            .values()
            .filter(|r| r.progress.burst.is_some() && r.device_token.shard() == shard)
            .map(|r| r.id.clone())
            .collect())
    }
}
