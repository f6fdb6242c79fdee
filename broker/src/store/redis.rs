//! The production store: one Redis (primary of the home region) reached through a
//! reconnecting, multiplexed connection with timeouts. Key schema in `keys.rs`; the atomic,
//! fenced shard writes and the location commit in `writes.rs` (their Lua in `scripts.rs`);
//! subscription claims in `claims.rs`.

mod claims;
mod cluster_tables;
mod codec;
mod compact;
mod conn;
mod keys;
mod replication;
mod scripts;
mod settings;
mod token_share;
mod writes;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use herald_cluster::{Epoch, Fence, ShardId};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use self::conn::{Conn, client};
pub use self::conn::{REDIS, RedisLabels, RedisMetrics};
pub use self::replication::{CopyAdmin, Replication};
use redis::{AsyncCommands as _, Script};

use self::keys::Keys;
use self::scripts::Status;
use super::{Adopted, FEEDBACK_KEPT, Location, RegistrationStore, StateCounts, StoreError};
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
    /// `url` is a node of a Redis Cluster (the others are discovered from it).
    pub cluster: bool,
    /// The CA and client certificate of a `rediss://` URL, when not the system's roots
    /// alone.
    pub tls: Option<redis::TlsCertificates>,
}

/// The Redis-backed [`RegistrationStore`].
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    keys: Keys,
    scripts: std::sync::Arc<Scripts>,
    cluster_scripts: std::sync::Arc<cluster_tables::ClusterScripts>,
}

struct Scripts {
    create: Script,
    patch: Script,
    adopt: Script,
    remove: Script,
    locate: Script,
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

impl RedisStore {
    /// The registrations of a device, but `except`: one round trip for the device index
    /// entry, a second (pipelined) only if another registration is in it.
    async fn device_records(
        &self,
        device_token: &DeviceToken,
        except: Option<&RegistrationId>,
    ) -> Result<Vec<RegistrationRecord>, StoreError> {
        let shard = device_token.shard();
        let mut conn = self.conn.clone();
        let device = self.keys.device(shard, device_token);
        let entry: Option<String> = conn.hget(device.part, &device.field).await?;
        let mut ids: Vec<RegistrationId> = Vec::new();
        for member in entry
            .iter()
            .flat_map(|ids| ids.split(' '))
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
        let mut commands = Vec::with_capacity(ids.len() * 2);
        for id in &ids {
            commands.push(redis::Cmd::get(self.keys.location(id)));
            commands.push(redis::Cmd::hgetall(self.keys.registration(shard, id)));
        }
        let answers = self.conn.in_order(commands).await?;
        let mut records = Vec::with_capacity(ids.len());
        for (id, pair) in ids.iter().zip(answers.chunks(2)) {
            let [location, fields] = pair else {
                break;
            };
            let location: Option<String> = redis::from_redis_value_ref(location)?;
            let fields: HashMap<String, String> = redis::from_redis_value_ref(fields)?;
            // A copy counts where the registration lives: a copy left by a move that is not
            // finished yet (the old one, or the new one before the commit) is not listed.
            let key = self.keys.registration(shard, id);
            if located(&key, id, location.as_deref())? == Some(shard)
                && let Some(record) = codec::decode(&key, id, fields)?
            {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// A store that connects lazily: the node starts even while Redis is down, and answers
    /// `UNAVAILABLE` (and fails `/readyz`) until it is back.
    pub fn connect(config: &RedisStoreConfig) -> Result<Self, StoreError> {
        let conn = if config.cluster {
            let mut builder = redis::cluster::ClusterClient::builder([config.url.as_str()])
                .connection_timeout(config.connect_timeout)
                .response_timeout(config.response_timeout)
                .retries(2);
            if let Some(certs) = &config.tls {
                builder = builder.certs(certs.clone());
            }
            let client = builder.build()?;
            Conn::Cluster(
                client.get_pending_async_connection_with_config(
                    redis::cluster::ClusterConfig::new()
                        .set_connection_timeout(config.connect_timeout)
                        .set_response_timeout(config.response_timeout),
                ),
            )
        } else {
            let client = client(config.url.as_str(), config.tls.as_ref())?;
            let manager_config = ConnectionManagerConfig::new()
                .set_response_timeout(Some(config.response_timeout))
                .set_connection_timeout(Some(config.connect_timeout))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_millis(500));
            Conn::Single(ConnectionManager::new_lazy_with_config(
                client,
                manager_config,
            )?)
        };
        Ok(Self {
            conn,
            keys: Keys::new(&config.key_prefix),
            scripts: std::sync::Arc::new(Scripts {
                create: scripts::create(),
                patch: scripts::patch(),
                adopt: scripts::adopt(),
                remove: scripts::remove(),
                locate: scripts::locate(),
                claim: scripts::claim(),
                persist_claim: scripts::persist_claim(),
                release_claim: scripts::release_claim(),
                offer_token: scripts::offer_token(),
            }),
            cluster_scripts: std::sync::Arc::new(cluster_tables::ClusterScripts::new()),
        })
    }

    /// Records a shard's epoch, as a lease acquisition does.
    #[cfg(any(test, feature = "testsuite"))]
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
}

/// `record` as the fields of its stored hash: how the Peer calls carry records between
/// nodes (one encoding of a record, whatever carries it).
pub fn record_fields(record: &RegistrationRecord) -> HashMap<String, String> {
    let (set, _) = codec::encode(record);
    let mut fields: HashMap<String, String> =
        set.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    fields.insert(codec::VERSION.to_owned(), record.version.to_string());
    fields
}

/// The record [`record_fields`] wrote.
pub fn record_from_fields(
    id: &RegistrationId,
    fields: HashMap<String, String>,
) -> Result<RegistrationRecord, StoreError> {
    codec::decode("a peer's record", id, fields)?.ok_or_else(|| StoreError::Corrupt {
        key: "a peer's record".into(),
        reason: "no fields".into(),
    })
}

/// How many times `get` follows a location that changed under it.
const GET_ATTEMPTS: usize = 4;

/// Where registration `id` lives, given its location entry `<shard> <version>` (read for
/// `key`): the entry's shard when there is one (a moved registration), else the id's birth
/// shard.
fn located(
    key: &str,
    id: &RegistrationId,
    location: Option<&str>,
) -> Result<Option<ShardId>, StoreError> {
    let Some(location) = location else {
        return Ok(id.birth_shard());
    };
    location
        .split_once(' ')
        .and_then(|(shard, _)| shard.parse().ok())
        .and_then(ShardId::new)
        .map(Some)
        .ok_or_else(|| StoreError::Corrupt {
            key: key.to_owned(),
            reason: format!("bad location {location:?}"),
        })
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

    fn cluster_tables(self: std::sync::Arc<Self>) -> Option<super::ClusterTables> {
        Some((self.clone(), self))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    async fn settings_advice(&self) -> Result<Vec<String>, StoreError> {
        settings::advice(&mut self.conn.clone()).await
    }

    async fn partition_advice(&self) -> Result<Option<String>, StoreError> {
        match &self.conn {
            Conn::Cluster(_) => Ok(None),
            Conn::Single(manager) => settings::partition_advice(&mut manager.clone()).await,
        }
    }

    async fn home_generations(&self, homes: &[String]) -> Result<Vec<u64>, StoreError> {
        let commands = homes
            .iter()
            .map(|home| redis::Cmd::get(self.keys.home_generation(home)))
            .collect();
        let values: Vec<Option<String>> = self.conn.each(commands).await?;
        Ok(values
            .into_iter()
            .map(|v| v.and_then(|v| v.parse().ok()).unwrap_or(0))
            .collect())
    }

    async fn is_primary(&self) -> Result<bool, StoreError> {
        match &self.conn {
            // Cross-region replication is of one server; a Redis Cluster is its region's.
            Conn::Cluster(_) => Ok(true),
            Conn::Single(manager) => {
                let role: Vec<redis::Value> =
                    redis::cmd("ROLE").query_async(&mut manager.clone()).await?;
                Ok(
                    matches!(role.first(), Some(redis::Value::BulkString(kind)) if kind == b"master"),
                )
            }
        }
    }

    async fn get(&self, id: &RegistrationId) -> Result<Option<RegistrationRecord>, StoreError> {
        let mut conn = self.conn.clone();
        let location_key = self.keys.location(id);
        // One round trip for a registration in its birth shard: its location entry (absent
        // unless it moved) and its hash there, pipelined.
        let (mut location, mut birth_read) = match id.birth_shard() {
            Some(birth) => {
                let key = self.keys.registration(birth, id);
                let answers = self
                    .conn
                    .in_order(vec![
                        redis::Cmd::get(&location_key),
                        redis::Cmd::hgetall(&key),
                    ])
                    .await?;
                let (location, fields): (Option<String>, HashMap<String, String>) =
                    redis::from_redis_value(redis::Value::Array(answers))?;
                (location, Some((birth, key, fields)))
            }
            None => (conn.get(&location_key).await?, None),
        };
        // A move commits between two of these reads when it points the location elsewhere
        // and drops the old copy: a copy missing where the location pointed is looked for
        // again where it points now, so a registration that exists is always found.
        for _ in 0..GET_ATTEMPTS {
            let Some(shard) = located(&location_key, id, location.as_deref())? else {
                return Ok(None);
            };
            let (key, fields) = match birth_read.take() {
                Some((birth, key, fields)) if birth == shard => (key, fields),
                _ => {
                    let key = self.keys.registration(shard, id);
                    let fields: HashMap<String, String> = conn.hgetall(&key).await?;
                    (key, fields)
                }
            };
            if codec::is_tombstone(&fields) {
                // Deleted: its tombstone says so, wherever another copy may be.
                return Ok(None);
            }
            if let Some(found) = codec::decode(&key, id, fields)? {
                return Ok(Some(found));
            }
            let again: Option<String> = conn.get(&location_key).await?;
            if again == location {
                return match location {
                    // Never moved, and not in its birth shard: it does not exist.
                    None => Ok(None),
                    Some(location) => Err(StoreError::Corrupt {
                        key: location_key,
                        reason: format!(
                            "the location {location:?} names a shard without the registration"
                        ),
                    }),
                };
            }
            location = again;
        }
        Err(StoreError::Unavailable(
            "the registration kept moving while it was read".into(),
        ))
    }

    async fn get_in(
        &self,
        shard: ShardId,
        id: &RegistrationId,
    ) -> Result<Option<RegistrationRecord>, StoreError> {
        self.read(shard, id).await
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
        let created = RegistrationRecord {
            version: 1,
            ..record.clone()
        };
        self.with_claim(&created, None, async {
            let written = match self.create_copy(fence, &created).await {
                Ok(_) => created.clone(),
                // A create tried again after its first answer was lost (a forwarded
                // `Register` whose peer's answer did not arrive): the copy is this one.
                Err(StoreError::Conflict) => match self.read(fence.shard, &created.id).await? {
                    Some(existing) if existing.callback_hash == created.callback_hash => existing,
                    _ => return Err(StoreError::Conflict),
                },
                Err(error) => return Err(error),
            };
            // An id names the shard it is created in; one that does not (a test's, say)
            // exists once its location says where.
            if created.id.birth_shard() != Some(fence.shard) {
                self.locate(&created.id, fence.shard, created.version)
                    .await?;
            }
            Ok(written)
        })
        .await
    }

    async fn update(
        &self,
        fence: Fence,
        stored: &RegistrationRecord,
        record: &RegistrationRecord,
    ) -> Result<RegistrationRecord, StoreError> {
        self.with_claim(
            record,
            stored.subscription_id.as_ref(),
            self.patch(fence, stored, record),
        )
        .await?;
        Ok(RegistrationRecord {
            version: stored.version + 1,
            ..record.clone()
        })
    }

    async fn adopt(
        &self,
        fence: Fence,
        existing: Option<&RegistrationRecord>,
        record: &RegistrationRecord,
    ) -> Result<Adopted, StoreError> {
        self.adopt_copy(fence, existing, record).await
    }

    async fn set_location(
        &self,
        id: &RegistrationId,
        shard: ShardId,
        version: u64,
    ) -> Result<(), StoreError> {
        self.locate(id, shard, version).await
    }

    async fn location(&self, id: &RegistrationId) -> Result<Option<Location>, StoreError> {
        self.location_of(id).await
    }

    async fn remove(&self, fence: Fence, stored: &RegistrationRecord) -> Result<bool, StoreError> {
        self.remove_copy(fence, stored, false).await
    }

    async fn delete(&self, fence: Fence, stored: &RegistrationRecord) -> Result<(), StoreError> {
        // One script: the copy becomes the registration's tombstone, so no reader finds it
        // from then on, nor can a move's other copy bring it back. A binding left behind if
        // the release below fails is taken over by the next claim (its owner is gone).
        if !self.remove_copy(fence, stored, true).await? {
            return Err(StoreError::NotFound);
        }
        if let Some(sub) = &stored.subscription_id {
            self.release_claim(sub, &stored.id).await?;
        }
        Ok(())
    }

    async fn count_by_state_in(&self, shards: &[ShardId]) -> Result<StateCounts, StoreError> {
        if shards.is_empty() {
            return Ok(StateCounts::default());
        }
        let answers: Vec<HashMap<String, i64>> = self
            .conn
            .each(
                shards
                    .iter()
                    .map(|&shard| redis::Cmd::hgetall(self.keys.stats(shard)))
                    .collect(),
            )
            .await?;
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
