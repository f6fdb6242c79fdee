//! The production store: one Redis (primary of the home region) reached through a
//! reconnecting, multiplexed connection with timeouts. Key schema in `keys.rs`; the atomic,
//! fenced shard writes in `scripts.rs`.

mod codec;
mod keys;
mod scripts;
mod token_share;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use herald_cluster::{Epoch, Fence, ShardId};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands as _, Script};

use self::keys::Keys;
use self::scripts::Status;
use super::{FEEDBACK_KEPT, RegistrationStore, StateCounts, StoreError};
use crate::domain::{
    DeadToken, DeviceToken, RegState, RegistrationId, RegistrationRecord, SubscriptionId,
    UnixMillis,
};

/// How long a subscription claim stays pending before the registration write confirms it.
const CLAIM_TTL: Duration = Duration::from_secs(30);

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
    offer_token: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// What a shard write does with an existing hash.
#[derive(Clone, Copy)]
enum PutMode {
    Create,
    Update,
    Upsert,
}

impl RedisStore {
    /// The registrations of a device, but `except`: one round trip for the device set, a
    /// second (pipelined) only if another registration is in it.
    async fn device_records(
        &self,
        device_token: &DeviceToken,
        except: Option<&RegistrationId>,
    ) -> Result<Vec<RegistrationRecord>, StoreError> {
        let shard = device_token.shard();
        let mut conn = self.conn.clone();
        let members: Vec<String> = conn.smembers(self.keys.device(shard, device_token)).await?;
        let ids: Vec<RegistrationId> = members
            .iter()
            .filter(|m| except.is_none_or(|e| e.as_str() != m.as_str()))
            .filter_map(|m| RegistrationId::parse("member", m).ok())
            .collect();
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
            if location.and_then(ShardId::new) == Some(shard)
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

    async fn put(
        &self,
        fence: Fence,
        record: &RegistrationRecord,
        mode: PutMode,
    ) -> Result<(), StoreError> {
        debug_assert_eq!(record.device_token.shard(), fence.shard);
        let (set, delete) = codec::encode(record);
        let mode_name = match mode {
            PutMode::Create => "create",
            PutMode::Update => "update",
            PutMode::Upsert => "upsert",
        };
        let mut inv = self.scripts.put.prepare_invoke();
        self.shard_keys(&mut inv, record, false);
        inv.arg(fence.epoch.0)
            .arg(mode_name)
            .arg(record.version)
            .arg(record.id.as_str())
            .arg(record.state.as_str())
            .arg(
                record
                    .progress
                    .burst
                    .map(|b| b.first_at.0.to_string())
                    .unwrap_or_default(),
            )
            .arg(
                record
                    .last_heard()
                    .map(|t| t.0.to_string())
                    .unwrap_or_default(),
            );
        self.write(fence, inv, &set, &delete).await
    }

    /// Runs a shard write whose last arguments are the fields: the number of fields to
    /// delete, their names, then the field/value pairs to set.
    async fn write(
        &self,
        fence: Fence,
        mut inv: redis::ScriptInvocation<'_>,
        set: &[(&str, String)],
        delete: &[&str],
    ) -> Result<(), StoreError> {
        inv.arg(delete.len()).arg(delete);
        for (name, value) in set {
            inv.arg(*name).arg(value);
        }
        match self.run(inv).await? {
            Status::Ok => Ok(()),
            Status::Exists | Status::Conflict => Err(StoreError::Conflict),
            Status::NotFound => Err(StoreError::NotFound),
            other => Err(fenced_or_corrupt(fence, other)),
        }
    }

    /// The keys of the shard scripts that write `record`: epoch, registration, device set
    /// (unless `patch`: a patch never changes it), stats, pending set, seen set.
    fn shard_keys(
        &self,
        inv: &mut redis::ScriptInvocation<'_>,
        record: &RegistrationRecord,
        patch: bool,
    ) {
        let shard = record.device_token.shard();
        inv.key(self.keys.epoch(shard))
            .key(self.keys.registration(shard, &record.id));
        if !patch {
            inv.key(self.keys.device(shard, &record.device_token));
        }
        inv.key(self.keys.stats(shard))
            .key(self.keys.pending(shard))
            .key(self.keys.seen(shard));
    }

    /// Writes the fields in which `record` differs from `stored`, which the hash holds if
    /// its version is still `stored.version`.
    async fn patch(
        &self,
        fence: Fence,
        stored: &RegistrationRecord,
        record: &RegistrationRecord,
    ) -> Result<(), StoreError> {
        debug_assert_eq!(record.device_token.shard(), fence.shard);
        let (set, delete) = codec::encode_changes(stored, record);
        let score = |score: fn(&RegistrationRecord) -> Option<UnixMillis>| match (
            score(stored),
            score(record),
        ) {
            (before, after) if before == after => "=".to_owned(),
            (_, Some(at)) => at.0.to_string(),
            (_, None) => String::new(),
        };
        let mut inv = self.scripts.patch.prepare_invoke();
        self.shard_keys(&mut inv, record, true);
        inv.arg(fence.epoch.0)
            .arg(record.version)
            .arg(record.id.as_str())
            .arg(stored.state.as_str())
            .arg(record.state.as_str())
            .arg(score(|r| r.progress.burst.map(|b| b.first_at)))
            .arg(score(RegistrationRecord::last_heard));
        self.write(fence, inv, &set, &delete).await
    }

    async fn remove(
        &self,
        fence: Fence,
        record: &RegistrationRecord,
        version: Option<u64>,
    ) -> Result<bool, StoreError> {
        debug_assert_eq!(record.device_token.shard(), fence.shard);
        let mut inv = self.scripts.remove.prepare_invoke();
        self.shard_keys(&mut inv, record, false);
        inv.arg(fence.epoch.0)
            .arg(record.id.as_str())
            .arg(version.map(|v| v.to_string()).unwrap_or_default());
        match self.run(inv).await? {
            Status::Ok => Ok(true),
            Status::NotFound => Ok(false),
            Status::Conflict => Err(StoreError::Conflict),
            other => Err(fenced_or_corrupt(fence, other)),
        }
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

    async fn location(&self, id: &RegistrationId) -> Result<Option<ShardId>, StoreError> {
        let mut conn = self.conn.clone();
        let raw: Option<u16> = conn.get(self.keys.location(id)).await?;
        Ok(raw.and_then(ShardId::new))
    }

    /// Claims `sub` for `id` (pending), replacing a claim whose owner no longer holds it.
    async fn claim(&self, sub: &SubscriptionId, id: &RegistrationId) -> Result<(), StoreError> {
        let key = self.keys.subscription(sub);
        let mut stale_owner = String::new();
        for _ in 0..3 {
            let mut inv = self.scripts.claim.key(&key);
            inv.arg(id.as_str())
                .arg(CLAIM_TTL.as_millis() as u64)
                .arg(&stale_owner);
            match self.run(inv).await? {
                Status::Ok => return Ok(()),
                Status::Pending(owner) => return Err(taken(&key, &owner)?),
                Status::Owned(owner) => {
                    let owner_id = owner_id(&key, &owner)?;
                    if self.holds(&owner_id, sub).await? {
                        return Err(StoreError::SubscriptionTaken(owner_id));
                    }
                    stale_owner = owner;
                }
                other => return Err(unexpected(&key, other)),
            }
        }
        Err(StoreError::Conflict)
    }

    /// Whether registration `id` exists and is bound to `sub`.
    async fn holds(&self, id: &RegistrationId, sub: &SubscriptionId) -> Result<bool, StoreError> {
        Ok(self
            .get(id)
            .await?
            .is_some_and(|r| r.subscription_id.as_ref() == Some(sub)))
    }

    async fn settle_claim(
        &self,
        script: &Script,
        sub: &SubscriptionId,
        id: &RegistrationId,
    ) -> Result<(), StoreError> {
        let mut inv = script.key(self.keys.subscription(sub));
        inv.arg(id.as_str());
        self.run(inv).await.map(drop)
    }

    /// Releases a claim after a failed write. The claim expires by itself if this fails too,
    /// so the error is only logged.
    async fn abandon_claim(&self, sub: &SubscriptionId, id: &RegistrationId) {
        if let Err(err) = self
            .settle_claim(&self.scripts.release_claim, sub, id)
            .await
        {
            tracing::warn!(error = %err, "could not release a pending subscription claim; it will expire");
        }
    }

    /// Claims the subscription `record` newly binds (if any), runs `write`, then confirms
    /// the claim and releases the one `previous` held, or gives the new claim up on failure.
    async fn with_claim<T>(
        &self,
        record: &RegistrationRecord,
        previous: Option<&SubscriptionId>,
        write: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let new_sub = record
            .subscription_id
            .as_ref()
            .filter(|s| Some(*s) != previous);
        if let Some(sub) = new_sub {
            self.claim(sub, &record.id).await?;
        }
        let result = write.await;
        match (&result, new_sub) {
            (Err(_), Some(sub)) => self.abandon_claim(sub, &record.id).await,
            (Ok(_), Some(sub)) => {
                self.settle_claim(&self.scripts.persist_claim, sub, &record.id)
                    .await?
            }
            _ => {}
        }
        if result.is_ok()
            && let Some(old) = previous.filter(|old| record.subscription_id.as_ref() != Some(*old))
        {
            self.settle_claim(&self.scripts.release_claim, old, &record.id)
                .await?;
        }
        result
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

fn owner_id(key: &str, owner: &str) -> Result<RegistrationId, StoreError> {
    RegistrationId::parse("owner", owner).map_err(|_| StoreError::Corrupt {
        key: key.to_owned(),
        reason: "bad owner id".into(),
    })
}

fn taken(key: &str, owner: &str) -> Result<StoreError, StoreError> {
    owner_id(key, owner).map(StoreError::SubscriptionTaken)
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

    async fn get(&self, id: &RegistrationId) -> Result<Option<RegistrationRecord>, StoreError> {
        match self.location(id).await? {
            Some(shard) => self.read(shard, id).await,
            None => Ok(None),
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
        let key = self.keys.subscription(sub);
        let mut conn = self.conn.clone();
        let Some(owner) = conn.get::<_, Option<String>>(&key).await? else {
            return Ok(None);
        };
        let owner = owner_id(&key, &owner)?;
        Ok(self.holds(&owner, sub).await?.then_some(owner))
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
            self.put(fence, &record, PutMode::Create).await?;
            let mut conn = self.conn.clone();
            // The commit point: from here on the registration exists.
            let () = conn
                .set(self.keys.location(&record.id), fence.shard.number())
                .await?;
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
                let mut conn = self.conn.clone();
                let () = conn
                    .set(self.keys.location(&record.id), to.shard.number())
                    .await?;
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
        let mut conn = self.conn.clone();
        let _: i64 = conn.del(self.keys.location(id)).await?;
        if let Some(sub) = &record.subscription_id {
            self.settle_claim(&self.scripts.release_claim, sub, id)
                .await?;
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
        let mut conn = self.conn.clone();
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.keys.seen(shard))
            .arg("-inf")
            .arg(format!("({}", before.0))
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut conn)
            .await?;
        Ok(ids
            .iter()
            .filter_map(|raw| RegistrationId::parse("seen", raw).ok())
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
