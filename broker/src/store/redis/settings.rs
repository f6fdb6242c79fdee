//! The Redis settings Herald relies on (docs/configuration.md), read once the server
//! answers, so a node tells its operator what a deployment got wrong instead of silently
//! costing memory or losing registrations.

use std::collections::HashMap;

use redis::aio::ConnectionLike;

use crate::store::StoreError;

/// A listpack-encoded registration hash must hold EWS subscription and Inbox ids (~100
/// bytes) and FCM tokens (~160 bytes).
const LISTPACK_VALUE_ADVISED: u64 = 256;

/// The bucketed indexes (device index parts, subscription buckets, silence index parts) are
/// sized to stay listpacks under Redis's default of 128 entries.
const LISTPACK_ENTRIES_ADVISED: u64 = 128;

/// One line per setting that should change; empty when every one is as advised.
pub(super) async fn advice(conn: &mut impl ConnectionLike) -> Result<Vec<String>, StoreError> {
    let settings: HashMap<String, String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("hash-max-listpack-value")
        .arg("hash-max-listpack-entries")
        .arg("zset-max-listpack-entries")
        .arg("maxmemory")
        .arg("maxmemory-policy")
        .query_async(conn)
        .await?;
    let setting = |name: &str| settings.get(name).map(String::as_str);
    let below = |name: &str, advised: u64| {
        setting(name).filter(|value| value.parse::<u64>().is_ok_and(|v| v < advised))
    };
    let mut advice = Vec::new();
    if let Some(value) = below("hash-max-listpack-value", LISTPACK_VALUE_ADVISED) {
        advice.push(format!(
            "Redis hash-max-listpack-value is {value}: registration hashes holding EWS ids \
             and FCM tokens are stored as hashtables, about 1 KB more each; set it to \
             {LISTPACK_VALUE_ADVISED}"
        ));
    }
    for name in ["hash-max-listpack-entries", "zset-max-listpack-entries"] {
        if let Some(value) = below(name, LISTPACK_ENTRIES_ADVISED) {
            advice.push(format!(
                "Redis {name} is {value}: the shards' indexes and the subscription buckets \
                 are stored as hashtables and skiplists, 50-100 bytes more per registration; \
                 set it to {LISTPACK_ENTRIES_ADVISED} (Redis's default) or more"
            ));
        }
    }
    let limited = setting("maxmemory").is_some_and(|v| v != "0");
    if let Some(policy) = setting("maxmemory-policy")
        && limited
        && policy != "noeviction"
    {
        advice.push(format!(
            "Redis maxmemory-policy is {policy}: when Redis is full it evicts keys, and an \
             evicted registration is lost; set it to noeviction"
        ));
    }
    Ok(advice)
}

/// Where a copy of a home falls short of partition safety: a primary that keeps writing
/// with no replica in reach lets a region cut off from the others write (and push) on while
/// its home is promoted elsewhere. `None` when `min-replicas-to-write` is set.
pub(super) async fn partition_advice(
    conn: &mut impl ConnectionLike,
) -> Result<Option<String>, StoreError> {
    let settings: HashMap<String, String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("min-replicas-to-write")
        .arg("min-replicas-max-lag")
        .query_async(conn)
        .await?;
    let to_write = settings
        .get("min-replicas-to-write")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    Ok((to_write == 0).then(|| {
        "Redis min-replicas-to-write is 0: cut off from the other regions, this copy would \
         go on taking writes (and its nodes pushing) while the home is promoted elsewhere; \
         set min-replicas-to-write 1 and min-replicas-max-lag 10 on every copy of every home"
            .to_owned()
    }))
}
