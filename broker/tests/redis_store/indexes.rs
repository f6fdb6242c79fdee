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
    // The node's own fence: this test writes beside the node's actors, as one of them.
    let fence = herald_cluster::Fencing::fence(node.node.ownership.as_ref(), shard).unwrap();
    assert!(node.store.pending_bursts(shard).await.unwrap().is_empty());

    record.progress.burst = Some(herald_broker::domain::Burst {
        first_at: herald_broker::domain::UnixMillis(1_000),
        last_at: herald_broker::domain::UnixMillis(1_500),
        new_mail: 1,
        events: 3,
        more_events: false,
        announce: false,
    });
    let stored = node.store.get(&id).await.unwrap().unwrap();
    let mut record = node.store.update(fence, &stored, &record).await.unwrap();
    assert_eq!(
        node.store.pending_bursts(shard).await.unwrap(),
        vec![id.clone()]
    );
    let other = ShardId::new((shard.number() + 1) % 1024).unwrap();
    assert!(node.store.pending_bursts(other).await.unwrap().is_empty());

    let stored = record.clone();
    record.progress.burst = None;
    let record = node.store.update(fence, &stored, &record).await.unwrap();
    assert!(node.store.pending_bursts(shard).await.unwrap().is_empty());

    let mut again = record.clone();
    again.progress.burst = Some(herald_broker::domain::Burst {
        first_at: herald_broker::domain::UnixMillis(2_000),
        last_at: herald_broker::domain::UnixMillis(2_000),
        new_mail: 0,
        events: 1,
        more_events: false,
        announce: false,
    });
    let again = node.store.update(fence, &record, &again).await.unwrap();
    node.store.delete(fence, &again).await.unwrap();
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
        .await
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
        announce: false,
    });
    let written = store.update(fence, &stored, &changed).await.unwrap();
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
    let recorded = store.update(fence, &written, &pushed).await.unwrap();
    assert_eq!(store.get(&created.id).await.unwrap().unwrap(), recorded);
    assert!(store.pending_bursts(shard).await.unwrap().is_empty());

    // The first copy is two versions old now.
    let mut late = written.clone();
    late.badge = 99;
    assert!(matches!(
        store.update(fence, &written, &late).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.get(&created.id).await.unwrap().unwrap(), recorded);

    // A write with an old epoch changes nothing.
    store.set_epoch(shard, Epoch(3)).await.unwrap();
    let mut fenced = recorded.clone();
    fenced.badge = 1;
    assert!(matches!(
        store.update(fence, &recorded, &fenced).await,
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

/// A frozen copy (a move under way) is work left in its shard — pending at once — out of the
/// silence index, and counted as `moving` rather than by its state.
#[tokio::test]
async fn a_copy_being_moved_out_is_pending_unwatched_and_counted_apart() {
    use herald_broker::domain::{DeviceToken, UnixMillis};

    let redis = RedisServer::start();
    let store = store(&redis);
    let shard = ShardId::of_device_token(APNS_TOKEN);
    let created = registry(Arc::new(store.clone()), 0)
        .await
        .register(new_registration())
        .await
        .unwrap()
        .record;
    let id = created.id.as_str();
    let seen = format!("herald:{{{shard}}}:seen:{}", &id[id.len() - 1..]);
    let pending = format!("herald:{{{shard}}}:pending");
    let mut conn = redis_conn(&redis).await;
    assert_eq!(
        zscore(&mut conn, &seen, id).await,
        Some(created.created_at.0)
    );

    let mut frozen = created.clone();
    frozen.moving_to = Some(DeviceToken::from_stored("00".repeat(32)));
    let frozen = store.update(fence(shard), &created, &frozen).await.unwrap();
    assert_eq!(zscore(&mut conn, &seen, id).await, None);
    assert_eq!(zscore(&mut conn, &pending, id).await, Some(0));
    assert_eq!(
        store.pending_bursts(shard).await.unwrap(),
        vec![created.id.clone()]
    );
    assert!(
        store
            .silent_since(shard, UnixMillis(u64::MAX), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let stats: std::collections::HashMap<String, i64> =
        redis::AsyncCommands::hgetall(&mut conn, format!("herald:{{{shard}}}:stats"))
            .await
            .unwrap();
    assert_eq!(stats.get("moving"), Some(&1));
    assert_eq!(stats.get("pending"), Some(&0));
    assert_eq!(store.count_by_state().await.unwrap().pending, 0);

    assert!(store.remove(fence(shard), &frozen).await.unwrap());
    assert_eq!(zscore(&mut conn, &pending, id).await, None);
    assert!(
        !store.remove(fence(shard), &frozen).await.unwrap(),
        "gone already"
    );
}
