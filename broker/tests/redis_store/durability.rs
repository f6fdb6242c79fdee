//! Restarts, outages, fencing, claims and what the nodes share through Redis.

use super::*;

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
    // The Redis client's own view: answers timed, and the failed calls counted.
    let count = |name: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(
        count("herald_redis_request_duration_seconds_count") > 0.0,
        "{metrics}"
    );
    assert!(count("herald_redis_errors_total") > 0.0, "{metrics}");
    node.stop().await;
}

#[tokio::test]
async fn a_write_with_an_old_epoch_is_refused_and_changes_nothing() {
    let redis = RedisServer::start();
    let store = store(&redis);
    let shard = ShardId::of_device_token(APNS_TOKEN);
    let current = registry(Arc::new(store.clone()), 7).await;
    let kept = current.register(new_registration()).await.unwrap().record;

    store.set_epoch(shard, Epoch(7)).await.unwrap();
    let stale = registry(Arc::new(store.clone()), 6).await;
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

#[tokio::test]
async fn a_stale_subscription_claim_is_taken_over() {
    let redis = RedisServer::start();
    let store = store(&redis);
    let registry = registry(Arc::new(store.clone()), 0).await;
    let on_sub_s = || NewRegistration {
        subscription_id: "SUB-S".into(),
        ..new_registration()
    };
    let first = registry.register(on_sub_s()).await.unwrap().record;
    // The owner disappears without releasing its claim (a crash mid-delete).
    drop_registration(&redis, &first.id).await;
    let second = registry.register(on_sub_s()).await.unwrap().record;
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
            cluster: false,
            tls: None,
        })
        .unwrap()
    };
    let node = |store: RedisStore| {
        let key = include_bytes!("../../../testdata/apns/test-key.p8");
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

    // Indexes kept small enough for listpacks.
    config("zset-max-listpack-entries", "16").await;
    only("zset-max-listpack-entries is 16").await;
    config("zset-max-listpack-entries", "128").await;
    config("hash-max-listpack-entries", "64").await;
    only("hash-max-listpack-entries is 64").await;
}

#[tokio::test]
async fn a_create_tried_again_after_its_answer_was_lost_keeps_the_registration_and_its_binding() {
    let redis = RedisServer::start();
    let store = store(&redis);
    let registry = registry(Arc::new(store.clone()), 0).await;
    let created = registry
        .register(NewRegistration {
            subscription_id: "SUB-RETRIED".into(),
            ..new_registration()
        })
        .await
        .unwrap()
        .record;
    let shard = created.device_token.shard();
    // The same create again (a forwarded Register whose answer was lost): it succeeds with
    // the registration as it is, and the subscription stays bound to it.
    let mut retried = created.clone();
    retried.version = 0;
    let again = store.create(fence(shard), &retried).await.unwrap();
    assert_eq!(again.id, created.id);
    let sub = created.subscription_id.clone().unwrap();
    assert_eq!(
        store.find_subscription(&sub).await.unwrap(),
        Some(created.id.clone())
    );
    // A different registration under the same id is still refused.
    let mut other = created.clone();
    other.callback_hash = herald_broker::domain::CallbackSecretHash([7; 32]);
    other.subscription_id = None;
    assert!(matches!(
        store.create(fence(shard), &other).await,
        Err(StoreError::Conflict)
    ));
}
