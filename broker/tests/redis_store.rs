//! What only the Redis store promises: data outlives the node, an outage is reported as
//! UNAVAILABLE (never half-written), and a write with a stale fencing epoch is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use herald_broker::domain::{Platform, RegistrationId};
use herald_broker::registry::{
    Fencing, KnownApp, NewRegistration, Registry, RegistryError, RegistrySettings,
};
use herald_broker::store::{RedisStore, RedisStoreConfig, RegistrationStore, StoreError};
use herald_broker::testsuite::{RedisServer, TestNode, authed, eventually, http_get, test_config};
use herald_cluster::{Epoch, Fence, ShardId};
use herald_proto::v1::{GetRegistrationRequest, Platform as ProtoPlatform, RegisterRequest};
use tonic::Code;

const APNS_TOKEN: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

fn register_request() -> RegisterRequest {
    RegisterRequest {
        device_token: APNS_TOKEN.into(),
        platform: ProtoPlatform::Apns.into(),
        app_id: "com.example.mail".into(),
        subscription_id: "SUB-1".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn registrations_survive_a_node_restart() {
    let redis = RedisServer::start();
    let config = test_config(Some(redis.url()));
    let first = TestNode::start(&config).await;
    let created = first
        .client()
        .await
        .register(authed(register_request()))
        .await
        .unwrap()
        .into_inner();
    first.stop().await;

    let second = TestNode::start(&config).await;
    let read = second
        .client()
        .await
        .get_registration(authed(GetRegistrationRequest {
            registration_id: created.registration_id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.subscription_id, "SUB-1");
    assert_eq!(read.device_token, APNS_TOKEN);
    let token = created.callback_url.rsplit('/').next().unwrap();
    assert!(
        second
            .node
            .registry
            .resolve_callback(token)
            .await
            .unwrap()
            .is_some()
    );
    second.stop().await;
}

#[tokio::test]
async fn redis_down_answers_unavailable_and_fails_readiness() {
    let mut redis = RedisServer::start();
    let node = TestNode::start(&test_config(Some(redis.url()))).await;
    let mut client = node.client().await;
    client.register(authed(register_request())).await.unwrap();
    let (status, _) = http_get(node.node.admin_addr, "/readyz").await;
    assert_eq!(status, 200);

    redis.kill();
    let status = client
        .register(authed(register_request()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("unavailable"),
        "{}",
        status.message()
    );
    let (status, body) = http_get(node.node.admin_addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("redis"), "{body}");

    let (_, metrics) = http_get(node.node.admin_addr, "/metrics").await;
    assert!(
        metrics.contains(r#"herald_grpc_requests_total{method="Register",code="UNAVAILABLE"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"herald_store_errors_total{operation="Register"} 1"#),
        "{metrics}"
    );
    node.stop().await;
}

/// Writes at a fixed epoch, like a node that has lost its lease without noticing.
#[derive(Debug)]
struct StaleFencing(Epoch);

impl Fencing for StaleFencing {
    fn fence(&self, shard: ShardId) -> Result<Fence, herald_broker::registry::NotOwner> {
        Ok(Fence {
            shard,
            epoch: self.0,
        })
    }
}

fn store(redis: &RedisServer) -> RedisStore {
    RedisStore::connect(&RedisStoreConfig {
        url: redis.url(),
        key_prefix: "herald".into(),
        response_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
    })
    .unwrap()
}

fn registry(store: Arc<dyn RegistrationStore>, epoch: u64) -> Registry {
    let settings = RegistrySettings {
        public_url: "https://push.example.test".into(),
        region: "us-east-1".into(),
        regions: vec!["us-east-1".into()],
        apps: vec![KnownApp {
            id: "com.example.mail".into(),
            platform: Platform::Apns,
        }],
    };
    Registry::new(store, Arc::new(StaleFencing(Epoch(epoch))), settings)
}

fn new_registration() -> NewRegistration {
    NewRegistration {
        device_token: APNS_TOKEN.into(),
        platform: Some(Platform::Apns),
        app_id: "com.example.mail".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_write_with_an_old_epoch_is_refused_and_changes_nothing() {
    let redis = RedisServer::start();
    let store = store(&redis);
    let shard = ShardId::of_device_token(APNS_TOKEN);
    let current = registry(Arc::new(store.clone()), 7);
    let kept = current.register(new_registration()).await.unwrap().record;

    store.set_epoch(shard, Epoch(7)).await.unwrap();
    let stale = registry(Arc::new(store.clone()), 6);
    let refused = stale.register(new_registration()).await.unwrap_err();
    assert!(
        matches!(
            refused,
            RegistryError::Store(StoreError::Fenced {
                current: Epoch(7),
                presented: Epoch(6),
                ..
            })
        ),
        "{refused:?}"
    );
    let refused = stale
        .bind_subscription(kept.id.as_str(), "SUB-X")
        .await
        .unwrap_err();
    assert!(
        matches!(refused, RegistryError::Store(StoreError::Fenced { .. })),
        "{refused:?}"
    );
    let refused = stale.unregister(kept.id.as_str()).await.unwrap_err();
    assert!(
        matches!(refused, RegistryError::Store(StoreError::Fenced { .. })),
        "{refused:?}"
    );
    assert_eq!(tonic::Status::from(refused).code(), Code::Unavailable);

    // Nothing the refused writes tried is visible, and the claimed subscription id is free.
    let listed = current.list_device(APNS_TOKEN).await.unwrap();
    assert_eq!(listed, vec![kept.clone()]);
    assert_eq!(
        current.get(kept.id.as_str()).await.unwrap().subscription_id,
        None
    );
    let bound = current
        .bind_subscription(kept.id.as_str(), "SUB-X")
        .await
        .unwrap();
    assert_eq!(bound.subscription_id.unwrap().as_str(), "SUB-X");
    assert_eq!(store.count_by_state().await.unwrap().pending, 1);
}

/// Deletes a registration's hash (and location entry, if it has one) behind the store's back,
/// leaving its device index entry and subscription claim: what a crash between the steps of
/// a delete leaves.
async fn drop_registration(redis: &RedisServer, id: &RegistrationId) {
    let shard = id.birth_shard().unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("DEL")
        .arg(format!("herald:{{{shard}}}:r:{id}"))
        .arg(format!("herald:loc:{id}"))
        .query_async(&mut conn)
        .await
        .unwrap();
}

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
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
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
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
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
async fn a_stale_subscription_claim_is_taken_over() {
    let redis = RedisServer::start();
    let store = store(&redis);
    let registry = registry(Arc::new(store.clone()), 0);
    let first = registry
        .register(NewRegistration {
            subscription_id: "SUB-S".into(),
            ..new_registration()
        })
        .await
        .unwrap()
        .record;
    // The owner disappears without releasing its claim (a crash mid-delete).
    drop_registration(&redis, &first.id).await;
    let second = registry
        .register(NewRegistration {
            subscription_id: "SUB-S".into(),
            ..new_registration()
        })
        .await
        .unwrap()
        .record;
    let owner = eventually(Duration::from_secs(2), || async {
        store
            .find_subscription(second.subscription_id.as_ref().unwrap())
            .await
            .unwrap()
    })
    .await;
    assert_eq!(owner, second.id);
}

#[tokio::test]
async fn registrations_with_a_pending_burst_are_indexed_by_shard() {
    let redis = RedisServer::start();
    let node = TestNode::start(&test_config(Some(redis.url()))).await;
    let created = node
        .client()
        .await
        .register(authed(register_request()))
        .await
        .unwrap()
        .into_inner();
    let id = RegistrationId::parse("id", &created.registration_id).unwrap();
    let mut record = node.store.get(&id).await.unwrap().unwrap();
    let shard = record.device_token.shard();
    let fence = Fence {
        shard,
        epoch: Epoch(0),
    };
    assert!(node.store.pending_bursts(shard).await.unwrap().is_empty());

    record.progress.burst = Some(herald_broker::domain::Burst {
        first_at: herald_broker::domain::UnixMillis(1_000),
        last_at: herald_broker::domain::UnixMillis(1_500),
        new_mail: 1,
        events: 3,
        more_events: false,
    });
    let mut record = node.store.update(fence, &record).await.unwrap();
    assert_eq!(
        node.store.pending_bursts(shard).await.unwrap(),
        vec![id.clone()]
    );
    let other = ShardId::new((shard.number() + 1) % 1024).unwrap();
    assert!(node.store.pending_bursts(other).await.unwrap().is_empty());

    record.progress.burst = None;
    let record = node.store.update(fence, &record).await.unwrap();
    assert!(node.store.pending_bursts(shard).await.unwrap().is_empty());

    let mut again = record.clone();
    again.progress.burst = Some(herald_broker::domain::Burst {
        first_at: herald_broker::domain::UnixMillis(2_000),
        last_at: herald_broker::domain::UnixMillis(2_000),
        new_mail: 0,
        events: 1,
        more_events: false,
    });
    node.store.update(fence, &again).await.unwrap();
    assert!(node.store.delete(fence, &id).await.unwrap());
    assert!(node.store.pending_bursts(shard).await.unwrap().is_empty());
    node.stop().await;
}

#[tokio::test]
async fn nodes_share_one_apns_provider_token_through_redis() {
    use herald_workers::apns::{
        ProviderTokens, REFRESH_AGE_SECS, SharedProviderTokens, TokenSigner,
    };

    let mut redis = RedisServer::start();
    let connect = || {
        RedisStore::connect(&RedisStoreConfig {
            url: redis.url(),
            key_prefix: "herald".into(),
            response_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_millis(500),
        })
        .unwrap()
    };
    let node = |store: RedisStore| {
        let key = include_bytes!("../../testdata/apns/test-key.p8");
        let signer = TokenSigner::from_p8("ABCDE12345", "KEY1234567", key).unwrap();
        SharedProviderTokens::new(ProviderTokens::new(signer), Arc::new(store))
    };
    let (a, b) = (node(connect()), node(connect()));
    let first = a.token(1_000).await.unwrap();
    assert_eq!(
        b.token(1_030).await.unwrap(),
        first,
        "b uses the token a published"
    );
    let later = 1_000 + REFRESH_AGE_SECS;
    let (from_a, from_b) = tokio::join!(a.token(later), b.token(later));
    let (from_a, from_b) = (from_a.unwrap(), from_b.unwrap());
    assert_eq!(from_a, from_b, "one replacement for both nodes");
    assert_ne!(from_a, first);
    // Without Redis a node still signs its pushes, with a token of its own.
    redis.kill();
    let alone = a.token(later + REFRESH_AGE_SECS).await.unwrap();
    assert_eq!(alone.iat, later + REFRESH_AGE_SECS);
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
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
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

/// A subscription actor's write: only the changed fields travel, yet the stored record, the
/// state counts and the burst and silence indexes end up as a full write would leave them;
/// a copy that is no longer current is refused.
#[tokio::test]
async fn a_write_from_a_current_copy_changes_what_a_full_write_would() {
    use herald_broker::domain::{Burst, RegState, UnixMillis};

    let redis = RedisServer::start();
    let store = store(&redis);
    let shard = ShardId::of_device_token(APNS_TOKEN);
    let fence = Fence {
        shard,
        epoch: Epoch(0),
    };
    let created = registry(Arc::new(store.clone()), 0)
        .register(new_registration())
        .await
        .unwrap()
        .record;
    let stored = store.get(&created.id).await.unwrap().unwrap();

    let mut changed = stored.clone();
    changed.state = RegState::Active;
    changed.last_notification_at = Some(UnixMillis(5_000));
    changed.last_watermark = Some("AQAAAJ6Xmtv4ya7Fg7VYBjxa5QEsCx0AAAAAAAE=".into());
    changed.progress.inbox_unread = Some(3);
    changed.progress.recent = vec![7, 8];
    changed.progress.burst = Some(Burst {
        first_at: UnixMillis(4_000),
        last_at: UnixMillis(5_000),
        new_mail: 1,
        events: 3,
        more_events: false,
    });
    let written = store.update_from(fence, &stored, &changed).await.unwrap();
    assert_eq!(written.version, stored.version + 1);
    assert_eq!(store.get(&created.id).await.unwrap().unwrap(), written);
    let counts = store.count_by_state().await.unwrap();
    assert_eq!((counts.pending, counts.active), (0, 1));
    assert_eq!(
        store.pending_bursts(shard).await.unwrap(),
        vec![created.id.clone()]
    );
    assert_eq!(
        store
            .silent_since(shard, UnixMillis(6_000), 10)
            .await
            .unwrap(),
        vec![created.id.clone()]
    );
    assert!(
        store
            .silent_since(shard, UnixMillis(5_000), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // The push is recorded: the burst goes, the badge and the outcome come.
    let mut pushed = written.clone();
    pushed.progress.burst = None;
    pushed.badge = 3;
    pushed.last_push_at = Some(UnixMillis(6_000));
    pushed.last_push_outcome = Some("delivered".into());
    let recorded = store.update_from(fence, &written, &pushed).await.unwrap();
    assert_eq!(store.get(&created.id).await.unwrap().unwrap(), recorded);
    assert!(store.pending_bursts(shard).await.unwrap().is_empty());

    // The first copy is two versions old now.
    let mut late = written.clone();
    late.badge = 99;
    assert!(matches!(
        store.update_from(fence, &written, &late).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.get(&created.id).await.unwrap().unwrap(), recorded);

    // A write with an old epoch changes nothing.
    store.set_epoch(shard, Epoch(3)).await.unwrap();
    let mut fenced = recorded.clone();
    fenced.badge = 1;
    assert!(matches!(
        store.update_from(fence, &recorded, &fenced).await,
        Err(StoreError::Fenced { .. })
    ));
    assert_eq!(store.get(&created.id).await.unwrap().unwrap(), recorded);
}

/// A node names the Redis settings that cost memory or registrations; a server set as
/// docs/configuration.md advises gets no advice.
#[tokio::test]
async fn the_store_advises_on_redis_settings_that_cost_memory_or_registrations() {
    let redis = RedisServer::start();
    let store = store(&redis);
    let config = |name: &str, value: &str| {
        let url = redis.url();
        let (name, value) = (name.to_owned(), value.to_owned());
        async move {
            let client = redis::Client::open(url).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let () = redis::cmd("CONFIG")
                .arg("SET")
                .arg(name)
                .arg(value)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    };

    // The advice is one line, naming the setting and its value.
    let only = async |expected: &str| {
        let advice = store.settings_advice().await.unwrap();
        assert_eq!(advice.len(), 1, "{advice:?}");
        assert!(advice[0].contains(expected), "{advice:?}");
    };

    // Redis's defaults: small listpacks, no memory limit (so nothing is evicted).
    only("hash-max-listpack-value is 64").await;

    config("hash-max-listpack-value", "256").await;
    config("maxmemory", "100mb").await;
    config("maxmemory-policy", "allkeys-lru").await;
    only("maxmemory-policy is allkeys-lru").await;

    config("maxmemory-policy", "noeviction").await;
    assert_eq!(store.settings_advice().await.unwrap(), Vec::<String>::new());
}

/// The score of `member` in the sorted set `key`.
async fn zscore(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
    member: &str,
) -> Option<u64> {
    redis::cmd("ZSCORE")
        .arg(key)
        .arg(member)
        .query_async(conn)
        .await
        .unwrap()
}

/// The silence index was one sorted set per shard before it was split: a registration an
/// earlier version left there is still found silent, and its next write moves it.
#[tokio::test]
async fn a_registration_in_the_unsplit_silence_index_is_found_and_moved() {
    use herald_broker::domain::UnixMillis;

    let redis = RedisServer::start();
    let store = store(&redis);
    let shard = ShardId::of_device_token(APNS_TOKEN);
    let created = registry(Arc::new(store.clone()), 0)
        .register(new_registration())
        .await
        .unwrap()
        .record;
    let id = created.id.as_str();
    let part = format!("herald:{{{shard}}}:seen:{}", &id[id.len() - 1..]);
    let unsplit = format!("herald:{{{shard}}}:seen");
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    assert_eq!(
        zscore(&mut conn, &part, id).await,
        Some(created.created_at.0)
    );
    assert_eq!(zscore(&mut conn, &unsplit, id).await, None);

    // As an earlier version would have left it.
    let () = redis::pipe()
        .zrem(&part, id)
        .ignore()
        .zadd(&unsplit, id, 1_000)
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();
    let silent = store
        .silent_since(shard, UnixMillis(2_000), 10)
        .await
        .unwrap();
    assert_eq!(silent, vec![created.id.clone()]);

    let mut heard = created.clone();
    heard.last_notification_at = Some(UnixMillis(5_000));
    let fence = Fence {
        shard,
        epoch: Epoch(0),
    };
    store.update_from(fence, &created, &heard).await.unwrap();
    assert_eq!(zscore(&mut conn, &unsplit, id).await, None);
    assert_eq!(zscore(&mut conn, &part, id).await, Some(5_000));
    assert!(
        store
            .silent_since(shard, UnixMillis(2_000), 10)
            .await
            .unwrap()
            .is_empty()
    );
}
