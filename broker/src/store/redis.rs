//! The production store: one Redis (primary of the home region) reached through a
//! reconnecting, multiplexed connection with timeouts. Key schema in `keys.rs`; the atomic,
//! fenced shard writes in `writes.rs` (their Lua in `scripts.rs`); subscription claims in
//! `claims.rs`.

mod claims;
mod codec;
mod compact;
mod keys;
mod scripts;
mod settings;
mod token_share;
mod writes;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use herald_cluster::{Epoch, Fence, ShardId};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands as _, Script};

use self::keys::Keys;
use self::scripts::Status;
use self::writes::PutMode;
use super::{FEEDBACK_KEPT, RegistrationStore, StateCounts, StoreError};
use crate::domain::{
    DeadToken, DeviceToken, RegState, RegistrationId, RegistrationRecord, SubscriptionId,
    UnixMillis,
};

/// How to reach Redis.
#[derive(Clone, Debug)]
pub struct RedisStoreConfig {
    pub url: String,
    /// Prefix of every key, so several deployments (or tests) can share a server.
    pub key_prefix: String,
    /// Longest wait for one answer.
    pub response_timeout: Duration,
    /// Longest wait to (re)connect.
    pub connect_timeout: Duration,
}

/// The Redis-backed [`RegistrationStore`].
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    keys: Keys,
    scripts: std::sync::Arc<Scripts>,
}

struct Scripts {
    put: Script,
    patch: Script,
    remove: Script,
    claim: Script,
    persist_claim: Script,
    release_claim: Script,
    release_unsplit_claim: Script,
    offer_token: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// The registrations of a device, but `except`: one round trip for the device index (its
    /// entry, and the device's own hash if an earlier version wrote one), a second
    /// (pipelined) only if another registration is in it.
    async fn device_records(
        &self,
        device_token: &DeviceToken,
        except: Option<&RegistrationId>,
    ) -> Result<Vec<RegistrationRecord>, StoreError> {
        let shard = device_token.shard();
        let mut conn = self.conn.clone();
        let device = self.keys.device(shard, device_token);
        let (entry, unsplit): (Option<String>, Vec<String>) = redis::pipe()
            .hget(device.part, &device.field)
            .hkeys(&device.unsplit)
            .query_async(&mut conn)
            .await?;
        let mut ids: Vec<RegistrationId> = Vec::new();
        for member in entry
            .iter()
            .flat_map(|ids| ids.split(' '))
            .chain(unsplit.iter().map(String::as_str))
            .filter(|m| except.is_none_or(|e| e.as_str() != *m))
        {
            if let Ok(id) = RegistrationId::parse("member", member)
                && !ids.contains(&id)
            {
                ids.push(id);
            }
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.get(self.keys.location(id))
                .hgetall(self.keys.registration(shard, id));
        }
        let answers: Vec<(Option<u16>, HashMap<String, String>)> =
            pipe.query_async(&mut conn).await?;
        let mut records = Vec::with_capacity(ids.len());
        for (id, (location, fields)) in ids.iter().zip(answers) {
            // Only registrations whose location is this shard exist; others are orphans of
            // an interrupted move or delete.
            if located(id, location) == Some(shard)
                && let Some(record) = codec::decode(&self.keys.registration(shard, id), id, fields)?
            {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// A store that connects lazily: the node starts even while Redis is down, and answers
    /// `UNAVAILABLE` (and fails `/readyz`) until it is back.
    pub fn connect(config: &RedisStoreConfig) -> Result<Self, StoreError> {
        let client = redis::Client::open(config.url.as_str())?;
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.response_timeout))
            .set_connection_timeout(Some(config.connect_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, manager_config)?;
        Ok(Self {
            conn,
            keys: Keys::new(&config.key_prefix),
            scripts: std::sync::Arc::new(Scripts {
                put: scripts::put(),
                patch: scripts::patch(),
                remove: scripts::remove(),
                claim: scripts::claim(),
                persist_claim: scripts::persist_claim(),
                release_claim: scripts::release_claim(),
                release_unsplit_claim: scripts::release_unsplit_claim(),
                offer_token: scripts::offer_token(),
            }),
        })
    }

    /// Records a shard's epoch, as a lease acquisition does.
    pub async fn set_epoch(&self, shard: ShardId, epoch: Epoch) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let () = conn.set(self.keys.epoch(shard), epoch.0).await?;
        Ok(())
    }

    async fn run(&self, invocation: redis::ScriptInvocation<'_>) -> Result<Status, StoreError> {
        let mut conn = self.conn.clone();
        let raw: String = invocation.invoke_async(&mut conn).await?;
        Status::parse(&raw).ok_or_else(|| StoreError::Corrupt {
            key: "script".into(),
            reason: format!("unexpected script answer {raw:?}"),
        })
    }

    async fn read(
        &self,
        shard: ShardId,
        id: &RegistrationId,
    ) -> Result<Option<RegistrationRecord>, StoreError> {
        let key = self.keys.registration(shard, id);
        let mut conn = self.conn.clone();
        let fields: HashMap<String, String> = conn.hgetall(&key).await?;
        codec::decode(&key, id, fields)
    }

    /// Points a moved registration's location entry at `shard` (the commit point of a
    /// move): removes the entry when `shard` is the id's birth shard.
    async fn set_location(&self, id: &RegistrationId, shard: ShardId) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        if id.birth_shard() == Some(shard) {
            let _: i64 = conn.del(self.keys.location(id)).await?;
        } else {
            let () = conn.set(self.keys.location(id), shard.number()).await?;
        }
        Ok(())
    }

    /// Drops a deleted registration's location entry, unless a copy of it is left in its
    /// birth shard (an interrupted move's orphan), which the entry keeps hidden.
    async fn drop_location(&self, id: &RegistrationId, shard: ShardId) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        if let Some(birth) = id.birth_shard().filter(|birth| *birth != shard)
            && conn.exists(self.keys.registration(birth, id)).await?
        {
            tracing::warn!(
                %id,
                "a deleted registration left a copy in its birth shard; its location entry stays to hide it"
            );
            return Ok(());
        }
        let _: i64 = conn.del(self.keys.location(id)).await?;
        Ok(())
    }
}

/// Where registration `id` lives, given its location entry: the entry when there is one (a
/// moved registration, or one whose id names no birth shard), else the id's birth shard.
fn located(id: &RegistrationId, location: Option<u16>) -> Option<ShardId> {
    match location {
        Some(number) => ShardId::new(number),
        None => id.birth_shard(),
    }
}

fn fenced_or_corrupt(fence: Fence, status: Status) -> StoreError {
    match status {
        Status::Fenced(current) => StoreError::Fenced {
            shard: fence.shard,
            current: Epoch(current),
            presented: fence.epoch,
        },
        other => unexpected("shard script", other),
    }
}

fn unexpected(key: &str, status: Status) -> StoreError {
    StoreError::Corrupt {
        key: key.to_owned(),
        reason: format!("unexpected script answer {status:?}"),
    }
}

#[async_trait]
impl RegistrationStore for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn publish_feedback(&self, event: &DeadToken) -> Result<(), StoreError> {
        let mut add = redis::cmd("XADD");
        add.arg(self.keys.feedback())
            .arg("MAXLEN")
            .arg("~")
            .arg(FEEDBACK_KEPT)
            .arg("*");
        for (field, value) in event.fields() {
            add.arg(field).arg(value);
        }
        let mut conn = self.conn.clone();
        let _: String = add.query_async(&mut conn).await?;
        Ok(())
    }

    fn token_share(
        self: std::sync::Arc<Self>,
    ) -> std::sync::Arc<dyn herald_workers::apns::TokenShare> {
        self
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    async fn settings_advice(&self) -> Result<Vec<String>, StoreError> {
        settings::advice(&mut self.conn.clone()).await
    }

    async fn get(&self, id: &RegistrationId) -> Result<Option<RegistrationRecord>, StoreError> {
        let mut conn = self.conn.clone();
        // One round trip for a registration in its birth shard: its location entry (absent
        // unless it moved) and its hash there, pipelined.
        let (location, read) = match id.birth_shard() {
            Some(birth) => {
                let key = self.keys.registration(birth, id);
                let (location, fields): (Option<u16>, HashMap<String, String>) = redis::pipe()
                    .get(self.keys.location(id))
                    .hgetall(&key)
                    .query_async(&mut conn)
                    .await?;
                (location, Some((birth, key, fields)))
            }
            None => (conn.get(self.keys.location(id)).await?, None),
        };
        match (located(id, location), read) {
            (None, _) => Ok(None),
            (Some(shard), Some((birth, key, fields))) if shard == birth => {
                codec::decode(&key, id, fields)
            }
            (Some(shard), _) => self.read(shard, id).await,
        }
    }

    async fn list_device(
        &self,
        device_token: &DeviceToken,
    ) -> Result<Vec<RegistrationRecord>, StoreError> {
        self.device_records(device_token, None).await
    }

    async fn list_device_except(
        &self,
        device_token: &DeviceToken,
        except: &RegistrationId,
    ) -> Result<Vec<RegistrationRecord>, StoreError> {
        self.device_records(device_token, Some(except)).await
    }

    async fn find_subscription(
        &self,
        sub: &SubscriptionId,
    ) -> Result<Option<RegistrationId>, StoreError> {
        self.subscription_owner(sub).await
    }

    async fn create(
        &self,
        fence: Fence,
        record: &RegistrationRecord,
    ) -> Result<RegistrationRecord, StoreError> {
        let record = RegistrationRecord {
            version: 0,
            ..record.clone()
        };
        self.with_claim(&record, None, async {
            // The commit point for an id born in this shard: from here on it exists. An id
            // born elsewhere (or before birth shards) exists once its location entry is set.
            self.put(fence, &record, PutMode::Create).await?;
            if record.id.birth_shard() != Some(fence.shard) {
                self.set_location(&record.id, fence.shard).await?;
            }
            Ok(())
        })
        .await?;
        Ok(RegistrationRecord {
            version: 1,
            ..record
        })
    }

    async fn update(
        &self,
        fence: Fence,
        record: &RegistrationRecord,
    ) -> Result<RegistrationRecord, StoreError> {
        let stored = self
            .read(fence.shard, &record.id)
            .await?
            .ok_or(StoreError::NotFound)?;
        if stored.version != record.version {
            return Err(StoreError::Conflict);
        }
        self.with_claim(
            record,
            stored.subscription_id.as_ref(),
            self.put(fence, record, PutMode::Update),
        )
        .await?;
        Ok(RegistrationRecord {
            version: record.version + 1,
            ..record.clone()
        })
    }

    async fn update_from(
        &self,
        fence: Fence,
        stored: &RegistrationRecord,
        record: &RegistrationRecord,
    ) -> Result<RegistrationRecord, StoreError> {
        if (&stored.id, stored.version, &stored.device_token)
            != (&record.id, record.version, &record.device_token)
        {
            return self.update(fence, record).await;
        }
        self.with_claim(
            record,
            stored.subscription_id.as_ref(),
            self.patch(fence, stored, record),
        )
        .await?;
        Ok(RegistrationRecord {
            version: record.version + 1,
            ..record.clone()
        })
    }

    async fn relocate(
        &self,
        from: Fence,
        to: Fence,
        record: &RegistrationRecord,
    ) -> Result<RegistrationRecord, StoreError> {
        let stored = self
            .read(from.shard, &record.id)
            .await?
            .ok_or(StoreError::NotFound)?;
        if stored.version != record.version {
            return Err(StoreError::Conflict);
        }
        let moved = self
            .with_claim(record, stored.subscription_id.as_ref(), async {
                // Freeze the old copy (a version bump makes concurrent writers conflict), write
                // the new one, switch the location, then drop the old copy.
                let frozen = RegistrationRecord {
                    version: stored.version,
                    ..stored.clone()
                };
                self.put(from, &frozen, PutMode::Update).await?;
                let moved = RegistrationRecord {
                    version: stored.version + 1,
                    ..record.clone()
                };
                self.put(to, &moved, PutMode::Upsert).await?;
                self.set_location(&record.id, to.shard).await?;
                Ok(moved)
            })
            .await?;
        if let Err(err) = self.remove(from, &stored, None).await {
            // The copy left behind is an orphan no reader sees.
            tracing::warn!(error = %err, "could not remove the old copy of a moved registration");
        }
        Ok(RegistrationRecord {
            version: moved.version + 1,
            ..moved
        })
    }

    async fn delete(&self, fence: Fence, id: &RegistrationId) -> Result<bool, StoreError> {
        let Some(record) = self.read(fence.shard, id).await? else {
            return Ok(false);
        };
        let existed = self.remove(fence, &record, None).await?;
        self.drop_location(id, fence.shard).await?;
        if let Some(sub) = &record.subscription_id {
            self.release_claim(sub, id).await?;
        }
        Ok(existed)
    }

    async fn count_by_state(&self) -> Result<StateCounts, StoreError> {
        let mut pipe = redis::pipe();
        for shard in ShardId::all() {
            pipe.hgetall(self.keys.stats(shard));
        }
        let mut conn = self.conn.clone();
        let answers: Vec<HashMap<String, i64>> = pipe.query_async(&mut conn).await?;
        let mut counts = StateCounts::default();
        for (state, n) in answers.iter().flatten() {
            if let Some(state) = RegState::parse(state) {
                counts.add(state, *n);
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
        let mut pipe = redis::pipe();
        for key in self.keys.seen_all(shard) {
            pipe.cmd("ZRANGE")
                .arg(key)
                .arg("-inf")
                .arg(format!("({}", before.0))
                .arg("BYSCORE")
                .arg("LIMIT")
                .arg(0)
                .arg(limit);
        }
        let mut conn = self.conn.clone();
        let parts: Vec<Vec<String>> = pipe.query_async(&mut conn).await?;
        Ok(parts
            .iter()
            .flatten()
            .filter_map(|raw| RegistrationId::parse("seen", raw).ok())
            .take(limit)
            .collect())
    }

    async fn pending_bursts(&self, shard: ShardId) -> Result<Vec<RegistrationId>, StoreError> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> = conn.zrange(self.keys.pending(shard), 0, -1).await?;
        Ok(ids
            .iter()
            .filter_map(|raw| RegistrationId::parse("pending", raw).ok())
            .collect())
    }
}
