//! The fenced shard writes — a new registration (`create`), the fields its writer changed
//! (`patch`), the copy of a registration moving in (`adopt`), a copy's removal — each one Lua
//! script that checks the shard's epoch; and the location entry a move commits with.

use std::time::Duration;

use herald_cluster::{Fence, ShardId};

use super::scripts::Status;
use super::{RedisStore, codec, fenced_or_corrupt, located};
use crate::domain::{RegistrationId, RegistrationRecord, UnixMillis};
use crate::store::{Adopted, Location, StoreError};

/// How long a deleted registration's tombstone stays in its shard, saying it is gone: longer
/// than any unfinished move's other copy can wait for its shard's owner to drop it
/// (docs/subscriptions.md).
const TOMBSTONE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The stats field a copy counts under: its state, or `moving` while it is moved out.
fn stat(record: &RegistrationRecord) -> &'static str {
    if record.moving_to.is_some() {
        "moving"
    } else {
        record.state.as_str()
    }
}

fn score(at: Option<UnixMillis>) -> String {
    at.map(|t| t.0.to_string()).unwrap_or_default()
}

impl RedisStore {
    /// The keys every shard script starts with: epoch, registration, stats, pending set,
    /// seen set part.
    fn shard_keys(&self, inv: &mut redis::ScriptInvocation<'_>, record: &RegistrationRecord) {
        let shard = record.shard();
        inv.key(self.keys.epoch(shard))
            .key(self.keys.registration(shard, &record.id))
            .key(self.keys.stats(shard))
            .key(self.keys.pending(shard))
            .key(self.keys.seen(shard, &record.id));
    }

    /// Runs a shard script; `Exists` and `Conflict` are both a stale copy to the caller.
    async fn shard_write(
        &self,
        fence: Fence,
        inv: redis::ScriptInvocation<'_>,
    ) -> Result<Status, StoreError> {
        match self.run(inv).await? {
            status @ (Status::Ok | Status::Exists | Status::NotFound | Status::Gone) => Ok(status),
            Status::Conflict => Err(StoreError::Conflict),
            other => Err(fenced_or_corrupt(fence, other)),
        }
    }

    pub(super) async fn create_copy(
        &self,
        fence: Fence,
        record: &RegistrationRecord,
    ) -> Result<(), StoreError> {
        debug_assert_eq!(record.shard(), fence.shard);
        let (set, _) = codec::encode(record);
        let device = self.keys.device(fence.shard, &record.device_token);
        let mut inv = self.scripts.create.prepare_invoke();
        self.shard_keys(&mut inv, record);
        inv.key(device.part)
            .arg(fence.epoch.0)
            .arg(record.id.as_str())
            .arg(stat(record))
            .arg(score(record.pending_since()))
            .arg(score(record.last_heard()))
            .arg(device.field);
        for (name, value) in &set {
            inv.arg(*name).arg(value);
        }
        match self.shard_write(fence, inv).await? {
            Status::Ok => Ok(()),
            _ => Err(StoreError::Conflict),
        }
    }

    /// Writes the fields in which `record` differs from `stored`, which the hash holds if
    /// its version is still `stored.version`.
    pub(super) async fn patch(
        &self,
        fence: Fence,
        stored: &RegistrationRecord,
        record: &RegistrationRecord,
    ) -> Result<(), StoreError> {
        debug_assert_eq!((stored.shard(), record.shard()), (fence.shard, fence.shard));
        let (set, delete) = codec::encode_changes(stored, record);
        let changed = |score: fn(&RegistrationRecord) -> Option<UnixMillis>| match (
            score(stored),
            score(record),
        ) {
            (before, after) if before == after => "=".to_owned(),
            (_, after) => self::score(after),
        };
        let mut inv = self.scripts.patch.prepare_invoke();
        self.shard_keys(&mut inv, record);
        let (new_field, old_field) = if stored.device_token == record.device_token {
            (String::new(), String::new())
        } else {
            let (new, old) = (
                self.keys.device(fence.shard, &record.device_token),
                self.keys.device(fence.shard, &stored.device_token),
            );
            inv.key(new.part).key(old.part);
            (new.field, old.field)
        };
        inv.arg(fence.epoch.0)
            .arg(record.id.as_str())
            .arg(stored.version)
            .arg(stat(stored))
            .arg(stat(record))
            .arg(changed(RegistrationRecord::pending_since))
            .arg(changed(RegistrationRecord::last_heard))
            .arg(new_field)
            .arg(old_field)
            .arg(delete.len())
            .arg(&delete);
        for (name, value) in &set {
            inv.arg(*name).arg(value);
        }
        match self.shard_write(fence, inv).await? {
            Status::Ok => Ok(()),
            _ => Err(StoreError::NotFound),
        }
    }

    pub(super) async fn adopt_copy(
        &self,
        fence: Fence,
        existing: Option<&RegistrationRecord>,
        record: &RegistrationRecord,
    ) -> Result<Adopted, StoreError> {
        debug_assert_eq!(record.shard(), fence.shard);
        let (set, _) = codec::encode(record);
        let device = self.keys.device(fence.shard, &record.device_token);
        let mut inv = self.scripts.adopt.prepare_invoke();
        self.shard_keys(&mut inv, record);
        inv.key(device.part);
        let replaced = existing.map(|old| {
            let old_device = self.keys.device(fence.shard, &old.device_token);
            inv.key(old_device.part);
            (old.version.to_string(), stat(old), old_device.field)
        });
        let (read, old_stat, old_field) = replaced.unwrap_or_default();
        inv.arg(fence.epoch.0)
            .arg(record.id.as_str())
            .arg(read)
            .arg(record.version)
            .arg(old_stat)
            .arg(stat(record))
            .arg(score(record.pending_since()))
            .arg(score(record.last_heard()))
            .arg(device.field)
            .arg(old_field);
        for (name, value) in &set {
            inv.arg(*name).arg(value);
        }
        Ok(match self.shard_write(fence, inv).await? {
            Status::Ok => Adopted::Written(Box::new(record.clone())),
            Status::Gone => Adopted::Deleted,
            _ => Adopted::AlreadyThere,
        })
    }

    /// Drops the copy `stored` — leaving the registration's tombstone if `deleted` — in one
    /// script; `Ok(false)` if it was gone.
    pub(super) async fn remove_copy(
        &self,
        fence: Fence,
        stored: &RegistrationRecord,
        deleted: bool,
    ) -> Result<bool, StoreError> {
        debug_assert_eq!(stored.shard(), fence.shard);
        let device = self.keys.device(fence.shard, &stored.device_token);
        let mut inv = self.scripts.remove.prepare_invoke();
        self.shard_keys(&mut inv, stored);
        inv.key(device.part)
            .arg(fence.epoch.0)
            .arg(stored.id.as_str())
            .arg(stored.version)
            .arg(stat(stored))
            .arg(device.field)
            .arg(if deleted {
                TOMBSTONE_TTL.as_millis().to_string()
            } else {
                String::new()
            });
        Ok(matches!(self.shard_write(fence, inv).await?, Status::Ok))
    }

    /// Points `id`'s location at `shard` from `version` on, unless it points somewhere from
    /// a version as large.
    pub(super) async fn locate(
        &self,
        id: &RegistrationId,
        shard: ShardId,
        version: u64,
    ) -> Result<(), StoreError> {
        let mut inv = self.scripts.locate.key(self.keys.location(id));
        inv.arg(shard.number()).arg(version);
        match self.run(inv).await? {
            Status::Ok | Status::Older => Ok(()),
            other => Err(super::unexpected("location", other)),
        }
    }

    pub(super) async fn location_of(
        &self,
        id: &RegistrationId,
    ) -> Result<Option<Location>, StoreError> {
        let key = self.keys.location(id);
        let mut conn = self.conn.clone();
        let raw: Option<String> = redis::AsyncCommands::get(&mut conn, &key).await?;
        let Some(raw) = raw else {
            return Ok(None);
        };
        let version = raw
            .rsplit_once(' ')
            .and_then(|(_, v)| v.parse().ok())
            .ok_or_else(|| StoreError::Corrupt {
                key: key.clone(),
                reason: format!("bad location {raw:?}"),
            })?;
        Ok(Some(Location {
            shard: located(&key, id, Some(&raw))?,
            version,
        }))
    }
}
