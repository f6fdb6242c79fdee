//! The Redis key schema. A shard's keys share the hash tag `{s<n>}`, so each shard's
//! atomic writes touch one Redis Cluster slot:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{prefix}:{s<n>}:epoch` | string | the shard's fencing epoch (absent = 0), incremented by every lease acquisition |
//! | `{prefix}:{s<n>}:lease` | string | `<holder> <epoch>`: the node (id/incarnation) serving the shard and the epoch it acquired it at; expires unless renewed |
//! | `{prefix}:{s<n>}:r:<registration id>` | hash | one registration's copy (fields in `codec.rs`); for a week after the registration is deleted, its tombstone (`v`, `gone`) |
//! | `{prefix}:{s<n>}:devices:<x>` | hash | the registrations of the shard's device tokens whose digest starts with hex digit `<x>`: the digest (base64url) as field, the registration ids separated by spaces as value |
//! | `{prefix}:{s<n>}:stats` | hash | the shard's copies by state (`moving` for a copy being moved out) |
//! | `{prefix}:{s<n>}:pending` | sorted set | copies with work left in the shard — a burst not yet flushed (by its first event time, ms) or a move to finish (0) |
//! | `{prefix}:{s<n>}:seen:<x>` | sorted set | pending and active registrations whose id ends in hex digit `<x>`, by when Exchange was last heard for them (ms) |
//! | `{prefix}:loc:<registration id>` | string | `<shard> <version>`: the shard a moved registration lives in, from its copy at that version on; absent for a registration that never left the shard its id names (kept after a delete: the copy there is a tombstone) |
//! | `{prefix}:subs:{<b>}` | hash | bound subscription ids whose digest starts with the four hex digits `<b>`: the rest of the digest (base64url) as field, the registration as value |
//! | `{prefix}:claim:{<b>}:<rest of digest>` | string | a registration's pending claim on a subscription id, expiring unless the registration write confirms it |
//! | `{prefix}:apns-token:<team>:<key id>` | string | the APNs provider token the nodes share: `<iat> <jwt>` |
//! | `{prefix}:home-generation:<home>` | string | the generation (the raised epoch) of home `<home>`'s last promotion, written by `herald region promote` into the promoted copy and into the promoting region's own home; a primary of a home whose generation is below another copy's is stale and not served |
//! | `{prefix}:members` | hash | the cluster's member rows: node id → `<heartbeat ms> <ready> <draining> <shards> <actors> <region> <address>` |
//! | `{prefix}:feedback` | stream | dead-token events for internal services (docs/feedback.md) |
//!
//! A device index entry lives in one of sixteen hashes per shard rather than a hash of its
//! own: a top-level key costs ~120 bytes of Redis before its value, a field of a small hash
//! ~55 (docs/performance.md). Sixteen parts keep each one a listpack (under
//! `hash-max-listpack-entries`, 128) up to ~2 M devices per region. A device with more than
//! seven registrations (an entry over `hash-max-listpack-value`, 256 bytes) turns its part
//! into a hashtable: ~50 bytes more for each device in that part, and nothing lost.
//!
//! Bound subscription ids are bucketed the same way, 65,536 buckets per region: at 1 M
//! bindings a bucket holds ~15. A pending claim stays a key of its own because it must
//! expire by itself (a hash field has no expiry before Redis 7.4); it shares its bucket's hash
//! tag, so the scripts that confirm or release it touch one Redis Cluster slot.
//!
//! The silence index is split sixteen ways by the id's last hex digit so that each part stays
//! under Redis's `zset-max-listpack-entries` (128) up to ~2 M registrations per region: a
//! listpack entry costs ~50 bytes, a skiplist entry ~140 (docs/performance.md).
//!
//! A registration lives in the shard its `loc` entry names or, without one, in the birth
//! shard its id names (`RegistrationId::birth_shard`), and exists when that shard's `r:`
//! hash holds it. So creating a registration is one atomic script, and only moved
//! registrations pay for a `loc` key. A move commits by pointing `loc` at the new shard with
//! the version of the copy written there; `loc` only ever moves to a larger version, so a
//! late or repeated commit cannot send readers back to an older copy. The steps of a move
//! are in docs/subscriptions.md: a crash between two of them leaves the old copy frozen and
//! in its shard's pending index, where the shard's next owner finishes the move.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
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
    lease: String,
    stats: String,
    pending: String,
    devices: [String; PARTS],
    seen: [String; PARTS],
}

/// How many parts a shard's device index and silence index are each split into: one per
/// hex digit.
const PARTS: usize = 16;

/// Where a subscription id's binding lives.
pub(super) struct SubscriptionKeys {
    /// The bucket of bound subscription ids that holds it.
    pub(super) bucket: String,
    /// Its field in the bucket: the rest of its digest, base64url.
    pub(super) field: String,
    /// Its pending claim.
    pub(super) claim: String,
}

/// Where a device token's registrations are indexed.
pub(super) struct DeviceKeys<'a> {
    /// The part of the shard's device index that holds the token.
    pub(super) part: &'a str,
    /// The token's field in it: its digest in base64url.
    pub(super) field: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            shards: ShardId::all()
                .map(|shard| ShardKeys {
                    epoch: format!("{prefix}:{{{shard}}}:epoch"),
                    lease: format!("{prefix}:{{{shard}}}:lease"),
                    stats: format!("{prefix}:{{{shard}}}:stats"),
                    pending: format!("{prefix}:{{{shard}}}:pending"),
                    devices: std::array::from_fn(|part| {
                        format!("{prefix}:{{{shard}}}:devices:{part:x}")
                    }),
                    seen: std::array::from_fn(|part| format!("{prefix}:{{{shard}}}:seen:{part:x}")),
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

    pub(super) fn lease(&self, shard: ShardId) -> &str {
        &self.shard(shard).lease
    }

    pub(super) fn members(&self) -> String {
        format!("{}:members", self.prefix)
    }

    /// The generation of home `home`'s primary last promoted, as this copy knows it.
    pub(super) fn home_generation(&self, home: &str) -> String {
        format!("{}:home-generation:{home}", self.prefix)
    }

    pub(super) fn registration(&self, shard: ShardId, id: &RegistrationId) -> String {
        format!("{}:{{{shard}}}:r:{id}", self.prefix)
    }

    pub(super) fn device(&self, shard: ShardId, token: &DeviceToken) -> DeviceKeys<'_> {
        let digest = &Sha256::digest(token.as_str().as_bytes())[..16];
        DeviceKeys {
            part: &self.shard(shard).devices[usize::from(digest[0] >> 4)],
            field: URL_SAFE_NO_PAD.encode(digest),
        }
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

    /// Every part of the shard's silence index.
    pub(super) fn seen_all(&self, shard: ShardId) -> impl Iterator<Item = &str> {
        self.shard(shard).seen.iter().map(String::as_str)
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

    pub(super) fn subscription(&self, sub: &SubscriptionId) -> SubscriptionKeys {
        let digest = sub.digest();
        let (bucket, rest) = digest.split_at(2);
        let (bucket, field) = (hex::encode(bucket), URL_SAFE_NO_PAD.encode(rest));
        SubscriptionKeys {
            bucket: format!("{}:subs:{{{bucket}}}", self.prefix),
            claim: format!("{}:claim:{{{bucket}}}:{field}", self.prefix),
            field,
        }
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
        let device = keys.device(shard, &token);
        for key in [
            keys.epoch(shard).to_owned(),
            keys.registration(shard, &id),
            device.part.to_owned(),
            keys.stats(shard).to_owned(),
            keys.pending(shard).to_owned(),
            keys.seen(shard, &id).to_owned(),
        ] {
            assert!(key.starts_with("herald:{s17}:"), "{key}");
        }
        assert!(!device.field.contains(token.as_str()));
    }

    #[test]
    fn a_subscriptions_bucket_and_claim_share_a_hash_tag_from_its_digest() {
        let keys = Keys::new("herald");
        let sub = SubscriptionId::from_stored("AAMkAGI2TG93AAA=".into());
        let digest = hex::encode(sub.digest());
        let found = keys.subscription(&sub);
        let tag = format!("{{{}}}", &digest[..4]);
        assert_eq!(found.bucket, format!("herald:subs:{tag}"));
        assert_eq!(found.claim, format!("herald:claim:{tag}:{}", found.field));
        let rest = URL_SAFE_NO_PAD.decode(&found.field).unwrap();
        assert_eq!(hex::encode(rest), digest[4..]);
    }

    #[test]
    fn a_device_is_indexed_in_the_part_its_digests_first_hex_digit_names() {
        let keys = Keys::new("herald");
        let shard = ShardId::new(5).unwrap();
        for n in 0..64 {
            let token = DeviceToken::parse(Platform::Fcm, &format!("{n:0>40}")).unwrap();
            let device = keys.device(shard, &token);
            let digest = hex::encode(&Sha256::digest(token.as_str().as_bytes())[..16]);
            assert_eq!(
                device.part,
                format!("herald:{{s5}}:devices:{}", &digest[..1])
            );
            assert_eq!(
                URL_SAFE_NO_PAD.decode(&device.field).unwrap(),
                hex::decode(&digest).unwrap()
            );
            assert_eq!(device.field.len(), 22);
        }
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
        assert_eq!(all.len(), 16);
        assert_eq!(all.last(), Some(&"herald:{s3}:seen:f"));
    }
}
