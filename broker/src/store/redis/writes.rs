//! The fenced shard writes: a whole registration (`put`), the fields a subscription actor
//! changed (`patch`), and a removal — each one Lua script that checks the shard's epoch.

use herald_cluster::Fence;

use super::scripts::Status;
use super::{RedisStore, codec, fenced_or_corrupt};
use crate::domain::{RegistrationRecord, UnixMillis};
use crate::store::StoreError;

/// What a shard write does with an existing hash.
#[derive(Clone, Copy)]
pub(super) enum PutMode {
    Create,
    Update,
    Upsert,
}

impl RedisStore {
    pub(super) async fn put(
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
        let device_field = self.shard_keys(&mut inv, record, false);
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
            )
            .arg(device_field);
        self.write(fence, inv, &set, &delete).await
    }

    /// Runs a shard write whose last arguments are the fields: the number of fields to
    /// delete, their names, then the field/value pairs to set.
    pub(super) async fn write(
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

    /// The keys of the shard scripts that write `record`: epoch, registration, device index
    /// part, stats, pending set, the seen set's part, the unsplit seen set of earlier
    /// versions, the device's own hash of earlier versions (unless `patch`, the device index
    /// keys: a patch never changes it). Answers the device's field in its index part.
    pub(super) fn shard_keys(
        &self,
        inv: &mut redis::ScriptInvocation<'_>,
        record: &RegistrationRecord,
        patch: bool,
    ) -> String {
        let shard = record.device_token.shard();
        let device = (!patch).then(|| self.keys.device(shard, &record.device_token));
        inv.key(self.keys.epoch(shard))
            .key(self.keys.registration(shard, &record.id));
        if let Some(device) = &device {
            inv.key(device.part);
        }
        inv.key(self.keys.stats(shard))
            .key(self.keys.pending(shard))
            .key(self.keys.seen(shard, &record.id))
            .key(self.keys.seen_unsplit(shard));
        device.map_or_else(String::new, |device| {
            inv.key(device.unsplit);
            device.field
        })
    }

    /// Writes the fields in which `record` differs from `stored`, which the hash holds if
    /// its version is still `stored.version`.
    pub(super) async fn patch(
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

    pub(super) async fn remove(
        &self,
        fence: Fence,
        record: &RegistrationRecord,
        version: Option<u64>,
    ) -> Result<bool, StoreError> {
        debug_assert_eq!(record.device_token.shard(), fence.shard);
        let mut inv = self.scripts.remove.prepare_invoke();
        let device_field = self.shard_keys(&mut inv, record, false);
        inv.arg(fence.epoch.0)
            .arg(record.id.as_str())
            .arg(version.map(|v| v.to_string()).unwrap_or_default())
            .arg(device_field);
        match self.run(inv).await? {
            Status::Ok => Ok(true),
            Status::NotFound => Ok(false),
            Status::Conflict => Err(StoreError::Conflict),
            other => Err(fenced_or_corrupt(fence, other)),
        }
    }
}
