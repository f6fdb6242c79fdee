//! The keys a registration leaves: location entries, device indexes, interrupted writes.

use redis::AsyncCommands as _;
use sha2::{Digest as _, Sha256};

use super::*;

#[tokio::test]
async fn an_interrupted_registration_leaves_nothing_visible() {
    let redis = RedisServer::start();
    let store = store(&redis);
    let registry = registry(Arc::new(store.clone()), 0).await;
    let created = registry.register(new_registration()).await.unwrap().record;
    // Simulate a crash part-way through a delete: the hash is gone, its index entries not.
    drop_registration(&redis, &created.id).await;
    assert!(store.get(&created.id).await.unwrap().is_none());
    assert!(registry.list_device(APNS_TOKEN).await.unwrap().is_empty());
    assert!(matches!(
        registry.get(created.id.as_str()).await,
        Err(RegistryError::NotFound)
    ));
    let unknown = RegistrationId::from_bytes([0; 16]);
    assert!(store.get(&unknown).await.unwrap().is_none());
}

/// Every key in `redis` that names `id`.
async fn keys_naming(redis: &RedisServer, id: &RegistrationId) -> Vec<String> {
    let mut keys = keys_matching(redis, &format!("*{id}*")).await;
    keys.sort();
    keys
}

/// The location entry of `id`: `<shard> <version>`, and its time to live in ms (-1: none).
async fn location(redis: &RedisServer, id: &RegistrationId) -> (Option<String>, i64) {
    let mut conn = redis_conn(redis).await;
    let key = format!("herald:loc:{id}");
    redis::pipe()
        .get(&key)
        .pttl(&key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn only_a_moved_registration_has_a_location_entry_and_it_only_moves_forward() {
    const OTHER_TOKEN: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let redis = RedisServer::start();
    let store = store(&redis);
    let registry = registry(Arc::new(store.clone()), 0).await;
    let birth = ShardId::of_device_token(APNS_TOKEN);
    let other = ShardId::of_device_token(OTHER_TOKEN);
    assert_ne!(birth, other);
    let created = registry.register(new_registration()).await.unwrap().record;
    let id = created.id.clone();
    assert_eq!(id.birth_shard(), Some(birth));
    let hash = |shard: ShardId| format!("herald:{{{shard}}}:r:{id}");
    let loc = format!("herald:loc:{id}");
    assert_eq!(keys_naming(&redis, &id).await, vec![hash(birth)]);

    // Away from its birth shard, a location entry says where it went, from which version.
    let moved = registry
        .update_device_token(id.as_str(), OTHER_TOKEN)
        .await
        .unwrap();
    assert_eq!(moved.device_token.as_str(), OTHER_TOKEN);
    assert_eq!(
        keys_naming(&redis, &id).await,
        vec![loc.clone(), hash(other)]
    );
    let (entry, ttl) = location(&redis, &id).await;
    assert_eq!(
        entry.as_deref(),
        Some(format!("{} {}", other.number(), moved.version).as_str())
    );
    assert_eq!(ttl, -1);
    assert_eq!(store.get(&id).await.unwrap().unwrap(), moved);
    assert!(registry.list_device(APNS_TOKEN).await.unwrap().is_empty());

    // Back home, the entry stays (pointing home): a location never goes back to an older
    // version, however late a repeated commit comes.
    let home = registry
        .update_device_token(id.as_str(), APNS_TOKEN)
        .await
        .unwrap();
    assert!(home.version > moved.version);
    assert_eq!(
        keys_naming(&redis, &id).await,
        vec![loc.clone(), hash(birth)]
    );
    store.set_location(&id, other, moved.version).await.unwrap();
    assert_eq!(store.get(&id).await.unwrap().unwrap(), home);
    assert_eq!(
        registry.list_device(APNS_TOKEN).await.unwrap(),
        vec![home.clone()]
    );
    assert!(registry.list_device(OTHER_TOKEN).await.unwrap().is_empty());

    // A copy left in another shard (what a crash before a move's clean-up leaves) is hidden
    // by the location entry, and stays hidden once the registration is deleted: the entry
    // then says so, for a week.
    let mut conn = redis_conn(&redis).await;
    let (part, field) = {
        let parts = keys_matching(&redis, &format!("herald:{{{birth}}}:devices:*")).await;
        let mut conn = redis_conn(&redis).await;
        let entries: Vec<(String, String)> = conn.hgetall(&parts[0]).await.unwrap();
        (parts[0].clone(), entries[0].0.clone())
    };
    let dumped: Vec<u8> = redis::cmd("DUMP")
        .arg(hash(birth))
        .query_async(&mut conn)
        .await
        .unwrap();
    registry
        .update_device_token(id.as_str(), OTHER_TOKEN)
        .await
        .unwrap();
    let () = redis::cmd("RESTORE")
        .arg(hash(birth))
        .arg(0)
        .arg(dumped)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: i64 = conn.hset(&part, &field, id.as_str()).await.unwrap();
    assert_eq!(
        store.get(&id).await.unwrap().unwrap().device_token.as_str(),
        OTHER_TOKEN
    );
    assert!(registry.list_device(APNS_TOKEN).await.unwrap().is_empty());
    registry.unregister(id.as_str()).await.unwrap();
    let mut expected = vec![loc.clone(), hash(birth), hash(other)];
    expected.sort();
    assert_eq!(keys_naming(&redis, &id).await, expected);
    let mut conn = redis_conn(&redis).await;
    let tombstone: Vec<(String, String)> = conn.hgetall(hash(other)).await.unwrap();
    assert!(tombstone.iter().any(|(f, _)| f == "gone"), "{tombstone:?}");
    let ttl: i64 = conn.pttl(hash(other)).await.unwrap();
    assert!(ttl > 6 * 24 * 3_600_000, "{ttl}");
    assert!(store.get(&id).await.unwrap().is_none());
    assert!(registry.list_device(APNS_TOKEN).await.unwrap().is_empty());
    assert!(registry.list_device(OTHER_TOKEN).await.unwrap().is_empty());

    // A registration that never moved leaves only its week-long tombstone behind.
    let second = registry.register(new_registration()).await.unwrap().record;
    registry.unregister(second.id.as_str()).await.unwrap();
    let second_hash = format!("herald:{{{birth}}}:r:{}", second.id);
    assert_eq!(
        keys_naming(&redis, &second.id).await,
        vec![second_hash.clone()]
    );
    let ttl: i64 = conn.pttl(&second_hash).await.unwrap();
    assert!(ttl > 0, "{ttl}");
    assert!(store.get(&second.id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_flush_reads_only_the_other_registrations_of_its_device() {
    let redis = RedisServer::start();
    let store = store(&redis);
    let registry = registry(Arc::new(store.clone()), 0).await;
    let first = registry.register(new_registration()).await.unwrap().record;
    let token = first.device_token.clone();
    assert!(
        store
            .list_device_except(&token, &first.id)
            .await
            .unwrap()
            .is_empty(),
        "alone on its device: nothing else to read"
    );
    let second = registry.register(new_registration()).await.unwrap().record;
    let others = store.list_device_except(&token, &first.id).await.unwrap();
    assert_eq!(others, vec![second.clone()]);
    let all = store.list_device(&token).await.unwrap();
    assert_eq!(all.len(), 2);

    // The device's entry in its shard's device index loses an unregistered registration.
    let shard = ShardId::of_device_token(APNS_TOKEN);
    let (_, (_, ids)) = device_index(&redis, shard).await;
    assert_eq!(ids, format!("{} {}", first.id, second.id));
    registry.unregister(second.id.as_str()).await.unwrap();
    let (_, (_, ids)) = device_index(&redis, shard).await;
    assert_eq!(ids, first.id.to_string());
    registry.unregister(first.id.as_str()).await.unwrap();
    let parts = keys_matching(&redis, &format!("herald:{{{shard}}}:devices:*")).await;
    assert!(parts.is_empty(), "an emptied part is deleted: {parts:?}");
}

async fn keys_matching(redis: &RedisServer, pattern: &str) -> Vec<String> {
    let mut conn = redis_conn(redis).await;
    redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// The one device index part of `shard` and its one entry (this file's tests index one
/// device per shard).
async fn device_index(redis: &RedisServer, shard: ShardId) -> (String, (String, String)) {
    let parts = keys_matching(redis, &format!("herald:{{{shard}}}:devices:*")).await;
    assert_eq!(parts.len(), 1, "{parts:?}");
    let mut conn = redis_conn(redis).await;
    let entries: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(&parts[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = entries.into_iter().next().unwrap();
    (parts.into_iter().next().unwrap(), entry)
}

/// A subscription id's bucket and its field there.
fn subscription_keys(sub: &str) -> (String, String) {
    use base64::Engine as _;
    let digest = &Sha256::digest(sub.as_bytes())[..16];
    let hex = hex::encode(digest);
    (
        format!("herald:subs:{{{}}}", &hex[..4]),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[2..]),
    )
}

#[tokio::test]
async fn a_bound_subscription_id_is_a_field_of_its_bucket() {
    let redis = RedisServer::start();
    let store = store(&redis);
    let registry = registry(Arc::new(store.clone()), 0).await;
    let on_sub = NewRegistration {
        subscription_id: "SUB-B".into(),
        ..new_registration()
    };
    let created = registry.register(on_sub.clone()).await.unwrap().record;
    let (bucket, field) = subscription_keys("SUB-B");
    let mut conn = redis_conn(&redis).await;
    let bound: Vec<(String, String)> = conn.hgetall(&bucket).await.unwrap();
    assert_eq!(bound, vec![(field, created.id.to_string())]);
    assert!(keys_matching(&redis, "herald:claim:*").await.is_empty());
    let sub = created.subscription_id.clone().unwrap();
    assert_eq!(
        store.find_subscription(&sub).await.unwrap(),
        Some(created.id.clone())
    );
    assert!(matches!(
        registry.register(on_sub).await,
        Err(RegistryError::AlreadyExists(_))
    ));
    registry.unregister(created.id.as_str()).await.unwrap();
    assert!(keys_matching(&redis, &bucket).await.is_empty());
    assert_eq!(store.find_subscription(&sub).await.unwrap(), None);
}

#[tokio::test]
async fn a_device_with_many_registrations_keeps_every_one_in_its_index_entry() {
    let redis = RedisServer::start();
    let store = store(&redis);
    let registry = registry(Arc::new(store.clone()), 0).await;
    // Ten ids are longer than a listpack value may be (256 bytes): the part turns into a
    // hashtable and loses nothing.
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(
            registry
                .register(new_registration())
                .await
                .unwrap()
                .record
                .id,
        );
    }
    async fn listed(registry: &Registry) -> Vec<RegistrationId> {
        let mut listed: Vec<RegistrationId> = registry
            .list_device(APNS_TOKEN)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        listed.sort();
        listed
    }
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(listed(&registry).await, expected);
    for gone in [&ids[0], &ids[5], &ids[9]] {
        registry.unregister(gone.as_str()).await.unwrap();
        expected.retain(|id| id != gone);
    }
    assert_eq!(listed(&registry).await, expected);
    let (_, (_, entry)) = device_index(&redis, ShardId::of_device_token(APNS_TOKEN)).await;
    assert_eq!(entry.split(' ').count(), 7, "{entry}");
}
