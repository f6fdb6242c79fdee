//! A model-based test of the write path: random interleavings of Exchange's notifications
//! (new mail, reads, heartbeats, redeliveries, gaps), device token changes within and across
//! shards, `BindSubscription`, `Unregister`, actor passivation and node restarts, played
//! against a real node — on a real Redis and on the in-memory store — and checked after
//! every step against a reference model (`reference.rs`):
//!
//! - every POST gets the model's answer, so a live registration is never told `Unsubscribe`;
//! - `ListDeviceRegistrations` of every device is the model's;
//! - once the bursts are flushed, every device's last push carries the model's badge.
//!
//! `HERALD_MODEL_CASES` sets the number of cases per store (default 24).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod exchange;
mod reference;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use herald_broker::config::Config;
use herald_broker::store::{MemoryStore, RegistrationStore};
use herald_broker::testsuite::{RedisServer, TestNode, authed, test_config};
use herald_cluster::ShardId;
use herald_proto::v1::{
    BindSubscriptionRequest, ListDeviceRegistrationsRequest, Platform, RegisterRequest,
    UnregisterRequest, UpdateDeviceTokenRequest,
};
use herald_workers::RecordingSender;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};

use exchange::Stream;
use reference::{DEVICES, Model, Op, REGISTRATIONS};

/// The device tokens: 0 and 1 in one shard, 2 and 3 each in another.
fn devices() -> Vec<String> {
    let token = |n: u64| format!("{n:064x}");
    let shard = |n: u64| ShardId::of_device_token(&token(n));
    let d0 = 1u64;
    let d1 = (2..).find(|n| shard(*n) == shard(d0)).unwrap();
    let d2 = (2..).find(|n| shard(*n) != shard(d0)).unwrap();
    let d3 = (2..)
        .find(|n| shard(*n) != shard(d0) && shard(*n) != shard(d2))
        .unwrap();
    [d0, d1, d2, d3].into_iter().map(token).collect()
}

/// What a case runs on.
enum Backend {
    Redis(String),
    Memory,
}

/// A node under test, and what survives its restarts.
struct World {
    config: Config,
    store: Arc<dyn RegistrationStore>,
    pushes: RecordingSender,
    node: Option<TestNode>,
    devices: Vec<String>,
    ids: Vec<String>,
    paths: Vec<String>,
    streams: Vec<Stream>,
    model: Model,
}

fn config(backend: &Backend, case: u64) -> Config {
    let mut config = match backend {
        Backend::Redis(url) => test_config(Some(url.clone())),
        Backend::Memory => test_config(None),
    };
    config.redis.key_prefix = format!("model{case}");
    config.coalesce.quiet = Duration::from_millis(20);
    config.coalesce.max_delay = Duration::from_millis(80);
    // One live actor per shard: the two registrations of device 0 evict each other.
    config.actors.max_live = usize::from(herald_cluster::SHARD_COUNT);
    config.actors.idle_timeout = Duration::from_millis(300);
    config
}

impl World {
    async fn start(backend: &Backend, case: u64) -> Self {
        let config = config(backend, case);
        let store: Arc<dyn RegistrationStore> = match backend {
            Backend::Memory => Arc::new(MemoryStore::new()),
            Backend::Redis(_) => herald_broker::node::build_store(&config).unwrap(),
        };
        let pushes = RecordingSender::new();
        let node = TestNode::on_store(
            &config,
            store.clone(),
            pushes.clone(),
            Arc::new(pushes.clone()),
        )
        .await;
        let mut world = Self {
            config,
            store,
            pushes,
            node: Some(node),
            devices: devices(),
            ids: Vec::new(),
            paths: Vec::new(),
            streams: (0..REGISTRATIONS).map(Stream::new).collect(),
            model: Model::new(),
        };
        world.register().await;
        world
    }

    fn node(&self) -> &TestNode {
        self.node.as_ref().unwrap()
    }

    async fn register(&mut self) {
        let mut client = self.node().client().await;
        for n in 0..REGISTRATIONS {
            let registration = &self.model.registrations[n];
            let stream = &self.streams[n];
            let created = client
                .register(authed(RegisterRequest {
                    device_token: self.devices[registration.device].clone(),
                    platform: Platform::Apns.into(),
                    app_id: herald_broker::testsuite::IOS_APP.into(),
                    inbox_folder_id: stream.inbox.clone(),
                    subscription_id: if registration.bound {
                        stream.subscription_id.clone()
                    } else {
                        String::new()
                    },
                    ..Default::default()
                }))
                .await
                .unwrap()
                .into_inner();
            self.paths.push(herald_broker::testsuite::callback_path(
                &created.callback_url,
            ));
            self.ids.push(created.registration_id);
        }
    }

    /// POSTs `body` for registration `who` and checks the answer against the model.
    async fn post(&mut self, who: usize, body: String) -> Result<(), TestCaseError> {
        let answer = self
            .node()
            .post_ews(&self.paths[who], body.as_bytes())
            .await;
        let status = answer.soap_status().map(|(_, s)| s);
        let exists = self.model.registrations[who].exists;
        let expected = if exists { "OK" } else { "Unsubscribe" };
        proptest::prop_assert_eq!(
            status.as_deref(),
            Some(expected),
            "registration {} (HTTP {}): {}",
            who,
            answer.status,
            answer.text()
        );
        if exists {
            self.model.registrations[who].bound = true;
        }
        Ok(())
    }

    async fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::NewMail { who, unread, skip } => {
                let body = self.streams[who].change(unread, true, skip);
                self.post(who, body).await?;
                self.count(who, unread);
            }
            Op::Read { who, unread } => {
                let body = self.streams[who].change(unread, false, 0);
                self.post(who, body).await?;
                self.count(who, unread);
            }
            Op::Heartbeat { who } => {
                let body = self.streams[who].heartbeat();
                self.post(who, body).await?;
            }
            Op::Redeliver { who } => {
                let body = match self.streams[who].last.clone() {
                    Some(last) => last,
                    None => self.streams[who].heartbeat(),
                };
                self.post(who, body).await?;
            }
            Op::SetToken { who, to } => self.set_token(who, to).await?,
            Op::Bind { who } => self.bind(who).await?,
            Op::Unregister { who } => {
                self.node()
                    .client()
                    .await
                    .unregister(authed(UnregisterRequest {
                        registration_id: self.ids[who].clone(),
                    }))
                    .await
                    .map_err(|s| TestCaseError::fail(format!("unregister {who}: {s:?}")))?;
                self.model.registrations[who].exists = false;
            }
            Op::Passivate => {
                self.node().node.subscriptions.passivate_all().await;
            }
            Op::Restart => {
                self.node.take().unwrap().stop().await;
                self.node = Some(
                    TestNode::on_store(
                        &self.config,
                        self.store.clone(),
                        self.pushes.clone(),
                        Arc::new(self.pushes.clone()),
                    )
                    .await,
                );
            }
            Op::Settle => self.check_badges().await?,
        }
        self.check_listings().await
    }

    fn count(&mut self, who: usize, unread: u32) {
        let registration = &mut self.model.registrations[who];
        if registration.exists {
            registration.unread = Some(unread);
        }
    }

    async fn set_token(&mut self, who: usize, to: usize) -> Result<(), TestCaseError> {
        let answer = self
            .node()
            .client()
            .await
            .update_device_token(authed(UpdateDeviceTokenRequest {
                registration_id: self.ids[who].clone(),
                device_token: self.devices[to].clone(),
            }))
            .await;
        let registration = &mut self.model.registrations[who];
        match answer {
            Ok(changed) if registration.exists => {
                proptest::prop_assert_eq!(&changed.into_inner().device_token, &self.devices[to]);
                registration.device = to;
            }
            Err(status) if !registration.exists => {
                proptest::prop_assert_eq!(status.code(), tonic::Code::NotFound);
            }
            other => proptest::prop_assert!(false, "token change of {}: {:?}", who, other),
        }
        Ok(())
    }

    async fn bind(&mut self, who: usize) -> Result<(), TestCaseError> {
        let answer = self
            .node()
            .client()
            .await
            .bind_subscription(authed(BindSubscriptionRequest {
                registration_id: self.ids[who].clone(),
                subscription_id: self.streams[who].subscription_id.clone(),
            }))
            .await;
        let registration = &mut self.model.registrations[who];
        match answer {
            Ok(_) if registration.exists => registration.bound = true,
            Err(status) if !registration.exists => {
                proptest::prop_assert_eq!(status.code(), tonic::Code::NotFound);
            }
            other => proptest::prop_assert!(false, "bind of {}: {:?}", who, other),
        }
        Ok(())
    }

    async fn check_listings(&self) -> Result<(), TestCaseError> {
        let mut client = self.node().client().await;
        for device in 0..DEVICES {
            let listed: BTreeSet<String> = client
                .list_device_registrations(authed(ListDeviceRegistrationsRequest {
                    device_token: self.devices[device].clone(),
                }))
                .await
                .map_err(|s| TestCaseError::fail(format!("{s:?}")))?
                .into_inner()
                .registrations
                .into_iter()
                .map(|r| r.registration_id)
                .collect();
            let expected: BTreeSet<String> = self
                .model
                .listed(device)
                .into_iter()
                .map(|n| self.ids[n].clone())
                .collect();
            proptest::prop_assert_eq!(listed, expected, "device {}", device);
        }
        Ok(())
    }

    /// The badge each device was pushed last.
    fn last_badges(&self) -> Vec<Option<u32>> {
        let sent = self.pushes.sent();
        self.devices
            .iter()
            .map(|token| {
                sent.iter()
                    .rev()
                    .find(|p| &p.device_token == token)
                    .map(|p| p.badge)
            })
            .collect()
    }

    /// Once every burst is flushed, each device with a known count shows the model's badge.
    /// The wait is generous: on a loaded machine a store read that times out delays an
    /// actor's start by its back-off (1 s, then 2 s, …); a burst never flushed still fails.
    async fn check_badges(&self) -> Result<(), TestCaseError> {
        let expected: Vec<Option<u32>> = (0..DEVICES).map(|d| self.model.badge(d)).collect();
        let settled = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let last = self.last_badges();
                let matches = expected
                    .iter()
                    .zip(&last)
                    .all(|(want, got)| want.is_none() || want == got);
                if matches && self.bursts_flushed().await {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        proptest::prop_assert!(
            settled.is_ok(),
            "devices' last badges {:?}, the model's {:?}; work left: {:?}",
            self.last_badges(),
            expected,
            self.work_left().await
        );
        Ok(())
    }

    /// Each registration's burst and move, as stored.
    async fn work_left(&self) -> Vec<String> {
        let mut left = Vec::new();
        for id in &self.ids {
            let id = herald_broker::domain::RegistrationId::parse("id", id).unwrap();
            if let Some(r) = self.store.get(&id).await.unwrap() {
                left.push(format!(
                    "{:?} {:?} burst {:?} moving {:?} live {}",
                    r.state,
                    r.device_token,
                    r.progress.burst,
                    r.moving_to,
                    self.node().node.subscriptions.live_record(&id).is_some()
                ));
            }
        }
        left
    }

    async fn bursts_flushed(&self) -> bool {
        for id in &self.ids {
            let id = herald_broker::domain::RegistrationId::parse("id", id).unwrap();
            if let Some(record) = self.store.get(&id).await.unwrap()
                && (record.progress.burst.is_some() || record.moving_to.is_some())
            {
                return false;
            }
        }
        true
    }

    async fn stop(mut self) {
        if let Some(node) = self.node.take() {
            node.stop().await;
        }
    }
}

// The count of interleavings played is this test's report (`--nocapture` shows it).
#[allow(clippy::print_stdout)]
fn run_cases(backend: Backend) {
    let cases = std::env::var("HERALD_MODEL_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(24);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    });
    let ops = proptest::collection::vec(reference::op(), 1..40);
    let (case, steps) = (AtomicU64::new(0), AtomicUsize::new(0));
    let result = runner.run(&ops, |ops| {
        let case = case.fetch_add(1, Ordering::Relaxed) + 1;
        steps.fetch_add(ops.len(), Ordering::Relaxed);
        runtime.block_on(async {
            let mut world = World::start(&backend, case).await;
            for op in &ops {
                world.apply(op).await?;
            }
            world.apply(&Op::Settle).await?;
            world.stop().await;
            Ok(())
        })
    });
    println!(
        "model: {} interleavings, {} steps",
        case.load(Ordering::Relaxed),
        steps.load(Ordering::Relaxed)
    );
    if let Err(error) = result {
        panic!("{error}");
    }
}

#[test]
fn the_write_path_follows_the_model_on_redis() {
    let redis = RedisServer::start();
    run_cases(Backend::Redis(redis.url()));
}

#[test]
fn the_write_path_follows_the_model_in_memory() {
    run_cases(Backend::Memory);
}

#[test]
fn the_model_devices_are_where_the_model_says() {
    let devices = devices();
    let shard = |n: usize| ShardId::of_device_token(&devices[n]);
    assert_eq!(shard(0), shard(1));
    assert_ne!(shard(0), shard(2));
    assert_ne!(shard(2), shard(3));
    assert_ne!(shard(0), shard(3));
}
