//! The Redis key schema. A shard's keys share the hash tag `{s<n>}`, so each shard's
//! atomic writes touch one Redis Cluster slot:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{prefix}:{s<n>}:epoch` | string | the shard's fencing epoch (absent = 0) |
//! | `{prefix}:{s<n>}:r:<registration id>` | hash | one registration (fields in `codec.rs`) |
//! | `{prefix}:{s<n>}:d:<device digest>` | hash | a device token's registrations: their ids as fields, empty values (a small hash is a listpack in Redis; a set of strings is a hashtable before 7.2) |
//! | `{prefix}:{s<n>}:stats` | hash | registrations by state in the shard |
//! | `{prefix}:{s<n>}:pending` | sorted set | registrations with a burst not yet flushed, by its first event time (ms) |
//! | `{prefix}:{s<n>}:seen:<x>` | sorted set | pending and active registrations whose id ends in hex digit `<x>`, by when Exchange was last heard for them (ms) |
//! | `{prefix}:{s<n>}:seen` | sorted set | the same, as written before the index was split; emptied as its registrations are written |
//! | `{prefix}:loc:<registration id>` | string | the shard a registration lives in, when that is not the shard its id names (it moved, or its id predates birth shards) |
//! | `{prefix}:sub:<subscription digest>` | string | the registration a subscription id is bound to |
//! | `{prefix}:apns-token:<team>:<key id>` | string | the APNs provider token the nodes share: `<iat> <jwt>` |
//! | `{prefix}:feedback` | stream | dead-token events for internal services (docs/feedback.md) |
//!
//! The silence index is split sixteen ways by the id's last hex digit so that each part stays
//! under Redis's `zset-max-listpack-entries` (128) up to ~2 M registrations per region: a
//! listpack entry costs ~50 bytes, a skiplist entry ~140 (docs/performance.md).
//!
//! A registration lives in the shard its `loc` entry names or, without one, in the birth
//! shard its id names (`RegistrationId::birth_shard`), and exists when that shard's `r:`
//! hash holds it. So creating a registration in its birth shard is one atomic script, and a
//! move commits by pointing `loc` at the new shard (or deleting it when the new shard is the
//! birth shard); only moved registrations pay for a `loc` key. A crash between the steps of a
//! multi-key change leaves at most an orphan that no reader can see.

use herald_cluster::ShardId;
use sha2::{Digest, Sha256};

use crate::domain::{DeviceToken, RegistrationId, SubscriptionId};

#[derive(Clone, Debug)]
pub(super) struct Keys {
    prefix: String,
    /// Each shard's fixed keys, built once: the hot path writes them on every call.
    shards: std::sync::Arc<[ShardKeys]>,
}

#[derive(Debug)]
struct ShardKeys {
    epoch: String,
    stats: String,
    pending: String,
    seen: [String; SEEN_PARTS],
    /// The unsplit silence index of earlier versions.
    seen_unsplit: String,
}

/// How many parts a shard's silence index is split into: one per hex digit.
const SEEN_PARTS: usize = 16;

impl Keys {
    pub(super) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            shards: ShardId::all()
                .map(|shard| ShardKeys {
                    epoch: format!("{prefix}:{{{shard}}}:epoch"),
                    stats: format!("{prefix}:{{{shard}}}:stats"),
                    pending: format!("{prefix}:{{{shard}}}:pending"),
                    seen: std::array::from_fn(|part| format!("{prefix}:{{{shard}}}:seen:{part:x}")),
                    seen_unsplit: format!("{prefix}:{{{shard}}}:seen"),
                })
                .collect(),
        }
    }

    fn shard(&self, shard: ShardId) -> &ShardKeys {
        &self.shards[usize::from(shard.number())]
    }

    pub(super) fn epoch(&self, shard: ShardId) -> &str {
        &self.shard(shard).epoch
    }

    pub(super) fn registration(&self, shard: ShardId, id: &RegistrationId) -> String {
        format!("{}:{{{shard}}}:r:{id}", self.prefix)
    }

    pub(super) fn device(&self, shard: ShardId, token: &DeviceToken) -> String {
        let digest = hex::encode(&Sha256::digest(token.as_str().as_bytes())[..16]);
        format!("{}:{{{shard}}}:d:{digest}", self.prefix)
    }

    pub(super) fn stats(&self, shard: ShardId) -> &str {
        &self.shard(shard).stats
    }

    pub(super) fn pending(&self, shard: ShardId) -> &str {
        &self.shard(shard).pending
    }

    /// The part of the shard's silence index that holds `id`.
    pub(super) fn seen(&self, shard: ShardId, id: &RegistrationId) -> &str {
        let last = id.as_str().as_bytes().last().copied().unwrap_or(b'0');
        let part = char::from(last).to_digit(16).unwrap_or(0) as usize;
        &self.shard(shard).seen[part]
    }

    /// The silence index of earlier versions, which writes empty.
    pub(super) fn seen_unsplit(&self, shard: ShardId) -> &str {
        &self.shard(shard).seen_unsplit
    }

    /// Every part of the shard's silence index, the unsplit one last.
    pub(super) fn seen_all(&self, shard: ShardId) -> impl Iterator<Item = &str> {
        let keys = self.shard(shard);
        keys.seen
            .iter()
            .chain(std::iter::once(&keys.seen_unsplit))
            .map(String::as_str)
    }

    pub(super) fn location(&self, id: &RegistrationId) -> String {
        format!("{}:loc:{id}", self.prefix)
    }

    pub(super) fn feedback(&self) -> String {
        format!("{}:feedback", self.prefix)
    }

    pub(super) fn apns_token(&self, share_key: &str) -> String {
        format!("{}:apns-token:{share_key}", self.prefix)
    }

    pub(super) fn subscription(&self, sub: &SubscriptionId) -> String {
        format!("{}:sub:{}", self.prefix, sub.digest_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Platform;

    #[test]
    fn a_shards_keys_share_one_hash_tag() {
        let keys = Keys::new("herald");
        let shard = ShardId::new(17).unwrap();
        let token = DeviceToken::parse(Platform::Fcm, &"x".repeat(40)).unwrap();
        let id = RegistrationId::from_bytes([0xab; 16]);
        for key in [
            keys.epoch(shard).to_owned(),
            keys.registration(shard, &id),
            keys.device(shard, &token),
            keys.stats(shard).to_owned(),
            keys.pending(shard).to_owned(),
            keys.seen(shard, &id).to_owned(),
            keys.seen_unsplit(shard).to_owned(),
        ] {
            assert!(key.starts_with("herald:{s17}:"), "{key}");
        }
        assert!(!keys.device(shard, &token).contains(token.as_str()));
    }

    #[test]
    fn the_silence_index_is_split_by_the_ids_last_hex_digit() {
        let keys = Keys::new("herald");
        let shard = ShardId::new(3).unwrap();
        let id = |last: u8| {
            let mut bytes = [0x10; 16];
            bytes[15] = last;
            RegistrationId::from_bytes(bytes)
        };
        assert_eq!(keys.seen(shard, &id(0x00)), "herald:{s3}:seen:0");
        assert_eq!(keys.seen(shard, &id(0x2b)), "herald:{s3}:seen:b");
        assert_eq!(keys.seen(shard, &id(0xff)), "herald:{s3}:seen:f");
        let all: Vec<&str> = keys.seen_all(shard).collect();
        assert_eq!(all.len(), 17);
        assert_eq!(all.last(), Some(&"herald:{s3}:seen"));
    }
}
