//! What only the Redis store promises: data outlives the node, an outage is reported as
//! UNAVAILABLE (never half-written), a write with a stale fencing epoch is refused, and what
//! a registration leaves in Redis is what the key schema says.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod durability;
mod indexes;
mod layout;

use std::sync::Arc;
use std::time::Duration;

use herald_broker::domain::{Platform, RegistrationId};
use herald_broker::registry::{NewRegistration, Registry, RegistryError};
use herald_broker::store::{RedisStore, RedisStoreConfig, RegistrationStore, StoreError};
use herald_broker::testsuite::{
    RedisServer, TestNode, authed, eventually, http_get, registry_on, test_config,
};
use herald_cluster::{Epoch, Fence, Ownership, ShardId};
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

fn store(redis: &RedisServer) -> RedisStore {
    RedisStore::connect(&RedisStoreConfig {
        url: redis.url(),
        key_prefix: "herald".into(),
        response_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        cluster: false,
        tls: None,
    })
    .unwrap()
}

/// A registry whose writes (through its own subscription actors) carry `epoch` — like a
/// node that has lost its leases without noticing, when the store holds a newer one.
async fn registry(store: Arc<dyn RegistrationStore>, epoch: u64) -> Registry {
    registry_on(store, Arc::new(Ownership::every_shard(Epoch(epoch))))
        .await
        .0
}

fn new_registration() -> NewRegistration {
    NewRegistration {
        device_token: APNS_TOKEN.into(),
        platform: Some(Platform::Apns),
        app_id: "com.example.mail".into(),
        ..Default::default()
    }
}

/// Deletes a registration's hash (and location entry, if it has one) behind the store's back,
/// leaving its device index entry and subscription binding: what nothing in Herald does, but
/// a reader must survive.
async fn drop_registration(redis: &RedisServer, id: &RegistrationId) {
    let shard = id.birth_shard().unwrap();
    let mut conn = redis_conn(redis).await;
    let _: i64 = redis::cmd("DEL")
        .arg(format!("herald:{{{shard}}}:r:{id}"))
        .arg(format!("herald:loc:{id}"))
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// A connection of its own to `redis`, for what the store's API does not show.
async fn redis_conn(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis.url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

/// The fence of `shard` at epoch 0, which a fresh Redis accepts.
fn fence(shard: ShardId) -> Fence {
    Fence {
        shard,
        epoch: Epoch(0),
    }
}
