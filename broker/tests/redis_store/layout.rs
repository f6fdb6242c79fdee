//! The keys a registration leaves: location entries, device indexes, interrupted writes.

use super::*;

#[tokio::test]
async fn an_interrupted_registration_leaves_nothing_visible() {
    let redis = RedisServer::start();
    let store = store(&redis);
    let registry = registry(Arc::new(store.clone()), 0);
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
    let mut conn = redis_conn(redis).await;
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("*{id}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.sort();
    keys
}

#[tokio::test]
async fn only_a_moved_registration_has_a_location_entry() {
    const OTHER_TOKEN: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let redis = RedisServer::start();
    let store = store(&redis);
    let registry = registry(Arc::new(store.clone()), 0);
    let birth = ShardId::of_device_token(APNS_TOKEN);
    let other = ShardId::of_device_token(OTHER_TOKEN);
    assert_ne!(birth, other);
    let created = registry.register(new_registration()).await.unwrap().record;
    let id = created.id.clone();
    assert_eq!(id.birth_shard(), Some(birth));
    let location = format!("herald:loc:{id}");
    let hash = |shard: ShardId| format!("herald:{{{shard}}}:r:{id}");
    assert_eq!(keys_naming(&redis, &id).await, vec![hash(birth)]);

    // Away from its birth shard, a location entry says where it went.
    registry
        .update_device_token(id.as_str(), OTHER_TOKEN)
        .await
        .unwrap();
    assert_eq!(
        keys_naming(&redis, &id).await,
        vec![location.clone(), hash(other)]
    );
    assert_eq!(
        store.get(&id).await.unwrap().unwrap().device_token.as_str(),
        OTHER_TOKEN
    );
    assert!(registry.list_device(APNS_TOKEN).await.unwrap().is_empty());

    // Back home, the entry goes.
    registry
        .update_device_token(id.as_str(), APNS_TOKEN)
        .await
        .unwrap();
    assert_eq!(keys_naming(&redis, &id).await, vec![hash(birth)]);
    assert_eq!(registry.list_device(APNS_TOKEN).await.unwrap().len(), 1);
    assert!(registry.list_device(OTHER_TOKEN).await.unwrap().is_empty());

    // A move whose clean-up failed leaves a copy in the birth shard (and its device index):
    // the location entry hides it, and keeps hiding it after the registration is deleted.
    let mut conn = redis_conn(&redis).await;
    let dumped: Vec<u8> = redis::cmd("DUMP")
        .arg(hash(birth))
        .query_async(&mut conn)
        .await
        .unwrap();
    let index: Vec<String> = redis::cmd("KEYS")
        .arg(format!("herald:{{{birth}}}:d:*"))
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
    let _: i64 = redis::cmd("HSET")
        .arg(&index[0])
        .arg(id.as_str())
        .arg("")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        store.get(&id).await.unwrap().unwrap().device_token.as_str(),
        OTHER_TOKEN
    );
    assert!(registry.list_device(APNS_TOKEN).await.unwrap().is_empty());
    registry.unregister(id.as_str()).await.unwrap();
    assert_eq!(keys_naming(&redis, &id).await, vec![location, hash(birth)]);
    assert!(store.get(&id).await.unwrap().is_none());
    assert!(registry.list_device(APNS_TOKEN).await.unwrap().is_empty());
    assert!(registry.list_device(OTHER_TOKEN).await.unwrap().is_empty());

    // Without an orphan, a deleted moved registration leaves no key behind.
    let second = registry.register(new_registration()).await.unwrap().record;
    registry
        .update_device_token(second.id.as_str(), OTHER_TOKEN)
        .await
        .unwrap();
    registry.unregister(second.id.as_str()).await.unwrap();
    assert!(keys_naming(&redis, &second.id).await.is_empty());
}

#[tokio::test]
async fn a_flush_reads_only_the_other_registrations_of_its_device() {
    let redis = RedisServer::start();
    let store = store(&redis);
    let registry = registry(Arc::new(store.clone()), 0);
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

    // The device index (one small hash per device) loses an unregistered registration.
    registry.unregister(second.id.as_str()).await.unwrap();
    let mut conn = redis_conn(&redis).await;
    let mut strings = async |command: &str, arg: &str| -> Vec<String> {
        redis::cmd(command)
            .arg(arg)
            .query_async(&mut conn)
            .await
            .unwrap()
    };
    let keys = strings("KEYS", "herald:*:d:*").await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let members = strings("HKEYS", &keys[0]).await;
    assert_eq!(members, vec![first.id.to_string()]);
}
