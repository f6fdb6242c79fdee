//! The embedded store: everything in one process, behind one lock. Not durable — a restart
//! forgets every registration — so the node says so when it starts on it. It keeps the
//! same model as Redis: a copy of a registration per shard it is in, a location for moved
//! ones, per-shard fencing epochs.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use herald_cluster::{Epoch, Fence, ShardId};

use herald_workers::apns::{InProcessShare, TokenShare};

use super::{Adopted, FEEDBACK_KEPT, Location, RegistrationStore, StateCounts, StoreError};
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
    /// Each shard's copies.
    copies: HashMap<(ShardId, RegistrationId), RegistrationRecord>,
    /// Where a moved registration lives, and the version it moved at.
    locations: HashMap<RegistrationId, Location>,
    /// The device index: registrations by device token (of copies in the token's shard).
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
    #[cfg(any(test, feature = "testsuite"))]
    pub fn set_epoch(&self, shard: ShardId, epoch: Epoch) {
        self.lock().epochs.insert(shard, epoch);
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

    /// Where `id` lives: its location, else the shard its id was born in.
    fn located(&self, id: &RegistrationId) -> Option<ShardId> {
        match self.locations.get(id) {
            Some(location) => location.shard,
            None => id.birth_shard(),
        }
    }

    fn live(&self, id: &RegistrationId) -> Option<&RegistrationRecord> {
        self.copies.get(&(self.located(id)?, id.clone()))
    }

    fn check_subscription(&self, record: &RegistrationRecord) -> Result<(), StoreError> {
        match record
            .subscription_id
            .as_ref()
            .and_then(|s| self.subscriptions.get(s))
        {
            Some(owner) if *owner != record.id && self.holds(owner, record) => {
                Err(StoreError::SubscriptionTaken(owner.clone()))
            }
            _ => Ok(()),
        }
    }

    /// Whether `owner` (bound to `record`'s subscription) still exists and holds it.
    fn holds(&self, owner: &RegistrationId, record: &RegistrationRecord) -> bool {
        self.live(owner)
            .is_some_and(|r| r.subscription_id == record.subscription_id)
    }

    /// The copy of `record.id` in `shard`, checked to be at `version`.
    fn current(
        &self,
        shard: ShardId,
        id: &RegistrationId,
        version: u64,
    ) -> Result<&RegistrationRecord, StoreError> {
        match self.copies.get(&(shard, id.clone())) {
            None => Err(StoreError::NotFound),
            Some(stored) if stored.version != version => Err(StoreError::Conflict),
            Some(stored) => Ok(stored),
        }
    }

    fn put(&mut self, record: RegistrationRecord) {
        self.devices
            .entry(record.device_token.clone())
            .or_default()
            .insert(record.id.clone());
        self.copies
            .insert((record.shard(), record.id.clone()), record);
    }

    fn drop_copy(&mut self, shard: ShardId, id: &RegistrationId) -> Option<RegistrationRecord> {
        let old = self.copies.remove(&(shard, id.clone()))?;
        if let Some(ids) = self.devices.get_mut(&old.device_token) {
            ids.remove(id);
            if ids.is_empty() {
                self.devices.remove(&old.device_token);
            }
        }
        Some(old)
    }

    fn bind(&mut self, before: Option<&SubscriptionId>, record: &RegistrationRecord) {
        if before == record.subscription_id.as_ref() {
            return;
        }
        if let Some(old) = before
            && self.subscriptions.get(old) == Some(&record.id)
        {
            self.subscriptions.remove(old);
        }
        if let Some(sub) = &record.subscription_id {
            self.subscriptions.insert(sub.clone(), record.id.clone());
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
        Ok(self.lock().live(id).cloned())
    }

    async fn get_in(
        &self,
        shard: ShardId,
        id: &RegistrationId,
    ) -> Result<Option<RegistrationRecord>, StoreError> {
        Ok(self.lock().copies.get(&(shard, id.clone())).cloned())
    }

    async fn list_device(
        &self,
        device_token: &DeviceToken,
    ) -> Result<Vec<RegistrationRecord>, StoreError> {
        let inner = self.lock();
        let ids = inner.devices.get(device_token).into_iter().flatten();
        Ok(ids
            .filter(|id| inner.located(id) == Some(device_token.shard()))
            .filter_map(|id| inner.copies.get(&(device_token.shard(), id.clone())))
            .cloned()
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
        if inner.copies.contains_key(&(fence.shard, record.id.clone())) {
            return Err(StoreError::Conflict);
        }
        let created = RegistrationRecord {
            version: 1,
            ..record.clone()
        };
        if record.id.birth_shard() != Some(fence.shard) {
            inner.locations.insert(
                record.id.clone(),
                Location {
                    shard: Some(fence.shard),
                    version: created.version,
                },
            );
        }
        inner.bind(None, &created);
        inner.put(created.clone());
        Ok(created)
    }

    async fn update(
        &self,
        fence: Fence,
        stored: &RegistrationRecord,
        record: &RegistrationRecord,
    ) -> Result<RegistrationRecord, StoreError> {
        let mut inner = self.lock();
        inner.check_fence(fence)?;
        let before = inner
            .current(fence.shard, &record.id, stored.version)?
            .subscription_id
            .clone();
        inner.check_subscription(record)?;
        inner.drop_copy(fence.shard, &record.id);
        let written = RegistrationRecord {
            version: stored.version + 1,
            ..record.clone()
        };
        inner.bind(before.as_ref(), &written);
        inner.put(written.clone());
        Ok(written)
    }

    async fn adopt(
        &self,
        fence: Fence,
        existing: Option<&RegistrationRecord>,
        record: &RegistrationRecord,
    ) -> Result<Adopted, StoreError> {
        let mut inner = self.lock();
        inner.check_fence(fence)?;
        let found = inner.copies.get(&(fence.shard, record.id.clone()));
        if found.map(|r| r.version) != existing.map(|r| r.version) {
            return Err(StoreError::Conflict);
        }
        if found.is_some_and(|r| r.version >= record.version) {
            return Ok(Adopted::AlreadyThere);
        }
        inner.drop_copy(fence.shard, &record.id);
        inner.put(record.clone());
        Ok(Adopted::Written(Box::new(record.clone())))
    }

    async fn set_location(
        &self,
        id: &RegistrationId,
        shard: ShardId,
        version: u64,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let newer = inner
            .locations
            .get(id)
            .is_some_and(|l| l.version >= version);
        if !newer {
            inner.locations.insert(
                id.clone(),
                Location {
                    shard: Some(shard),
                    version,
                },
            );
        }
        Ok(())
    }

    async fn location(&self, id: &RegistrationId) -> Result<Option<Location>, StoreError> {
        Ok(self.lock().locations.get(id).copied())
    }

    async fn remove(&self, fence: Fence, stored: &RegistrationRecord) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        inner.check_fence(fence)?;
        match inner.current(fence.shard, &stored.id, stored.version) {
            Err(StoreError::NotFound) => return Ok(false),
            other => other?,
        };
        inner.drop_copy(fence.shard, &stored.id);
        Ok(true)
    }

    async fn delete(&self, fence: Fence, stored: &RegistrationRecord) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.check_fence(fence)?;
        inner.current(fence.shard, &stored.id, stored.version)?;
        inner.drop_copy(fence.shard, &stored.id);
        // Say the registration is gone for as long as a copy of it is left in another shard
        // (an unfinished move's): see `RegistrationStore::delete`.
        if inner.copies.keys().any(|(_, id)| *id == stored.id) {
            inner.locations.insert(
                stored.id.clone(),
                Location {
                    shard: None,
                    version: stored.version + 1,
                },
            );
        } else {
            inner.locations.remove(&stored.id);
        }
        if let Some(sub) = &stored.subscription_id
            && inner.subscriptions.get(sub) == Some(&stored.id)
        {
            inner.subscriptions.remove(sub);
        }
        Ok(())
    }

    async fn count_by_state_in(&self, shards: &[ShardId]) -> Result<StateCounts, StoreError> {
        let mut counts = StateCounts::default();
        for ((shard, _), record) in &self.lock().copies {
            if record.moving_to.is_none() && *shard == record.shard() && shards.contains(shard) {
                counts.add(record.state, 1);
            }
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
            .copies
            .iter()
            .filter(|((at, _), r)| *at == shard && r.last_heard().is_some_and(|t| t < before))
            .take(limit)
            .map(|((_, id), _)| id.clone())
            .collect())
    }

    async fn pending_bursts(&self, shard: ShardId) -> Result<Vec<RegistrationId>, StoreError> {
        Ok(self
            .lock()
            .copies
            .iter()
            .filter(|((at, _), r)| *at == shard && r.pending_since().is_some())
            .map(|((_, id), _)| id.clone())
            .collect())
    }
}
