//! The shard indexes a write keeps: pending bursts, silence, state counts.

use super::*;

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
    let fence = fence(shard);
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

/// A subscription actor's write: only the changed fields travel, yet the stored record, the
/// state counts and the burst and silence indexes end up as a full write would leave them;
/// a copy that is no longer current is refused.
#[tokio::test]
async fn a_write_from_a_current_copy_changes_what_a_full_write_would() {
    use herald_broker::domain::{Burst, RegState, UnixMillis};

    let redis = RedisServer::start();
    let store = store(&redis);
    let shard = ShardId::of_device_token(APNS_TOKEN);
    let fence = fence(shard);
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
    let mut conn = redis_conn(&redis).await;
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
    let fence = fence(shard);
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
