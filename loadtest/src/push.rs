//! `herald-loadtest push`: a node's push sender (`herald_workers::Delivery`, the code a node
//! pushes with) against the bundled mock APNs and FCM in accept-all mode, over real HTTP/2
//! and TLS on 127.0.0.1: how many pushes per second one node can hand to the providers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use herald_workers::apns::InProcessShare;
use herald_workers::mock::{MockApnsOptions, MockFcmOptions, MockProviders};
use herald_workers::{
    Delivery, DeliveryMetrics, DeliverySettings, Provider, PushOutcome, PushRequest, PushSender,
};
use tokio::task::JoinSet;

use crate::report::{Summary, latency_histogram};

const IOS: &str = "com.example.mail";
const ANDROID: &str = "com.example.mail.android";

/// Which providers the pushes go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Providers {
    Apns,
    Fcm,
    /// Alternately.
    Both,
}

#[derive(Clone, Debug)]
pub struct PushLoad {
    pub providers: Providers,
    pub count: u64,
    /// Pushes in flight at once.
    pub concurrency: usize,
    /// Distinct device tokens.
    pub devices: u64,
    /// Validate every request like the real services (JWT signature per request) instead
    /// of accepting all.
    pub validate: bool,
    pub settings: DeliverySettings,
    pub max_duration: Duration,
}

/// Runs the load; the summary and what the mocks accepted (APNs, FCM).
pub async fn run(load: PushLoad) -> anyhow::Result<(Summary, (u64, u64))> {
    let dir = tempfile::tempdir().context("a temporary directory")?;
    let accept_all = !load.validate;
    let mocks = MockProviders::start(
        dir.path(),
        MockApnsOptions {
            accept_all,
            record: false,
            ..MockApnsOptions::default()
        },
        MockFcmOptions {
            accept_all,
            record: false,
            ..MockFcmOptions::default()
        },
    )
    .await
    .context("starting the mock providers")?;
    let apps = mocks.apps(&[IOS], &[ANDROID], "example-mail")?;
    let delivery = Arc::new(Delivery::new(
        &apps,
        &load.settings,
        Arc::new(InProcessShare::default()),
        DeliveryMetrics::default(),
    )?);
    // One push each way first: connections, TLS and credentials are set up before timing.
    for provider in [Provider::Apns, Provider::Fcm] {
        let warm = delivery.send(request(provider, 0, 0)).await;
        anyhow::ensure!(warm == PushOutcome::Delivered, "warm-up push: {warm:?}");
    }
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + load.max_duration;
    let mut workers = JoinSet::new();
    for _ in 0..load.concurrency.max(1) {
        let (delivery, next, load) = (delivery.clone(), next.clone(), load.clone());
        workers.spawn(async move {
            let mut latency = latency_histogram();
            let (mut ok, mut errors) = (0u64, 0u64);
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= load.count || Instant::now() >= deadline {
                    break;
                }
                let provider = match load.providers {
                    Providers::Apns => Provider::Apns,
                    Providers::Fcm => Provider::Fcm,
                    Providers::Both if n % 2 == 0 => Provider::Apns,
                    Providers::Both => Provider::Fcm,
                };
                let sent = Instant::now();
                let outcome = delivery
                    .send(request(provider, n % load.devices.max(1), n))
                    .await;
                let _ = latency.record(sent.elapsed().as_micros() as u64);
                match outcome {
                    PushOutcome::Delivered => ok += 1,
                    _ => errors += 1,
                }
            }
            (ok, errors, latency)
        });
    }
    let mut summary = Summary {
        ok: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latency: latency_histogram(),
    };
    while let Some(done) = workers.join_next().await {
        let (ok, errors, latency) = done?;
        summary.ok += ok;
        summary.errors += errors;
        summary.latency.add(&latency)?;
    }
    summary.elapsed = started.elapsed();
    let accepted = (mocks.apns.accepted(), mocks.fcm.accepted());
    Ok((summary, accepted))
}

fn request(provider: Provider, device: u64, n: u64) -> PushRequest {
    let (app_id, device_token) = match provider {
        Provider::Apns => (IOS, format!("{device:064x}")),
        Provider::Fcm => (ANDROID, format!("loadtest-fcm-token-{device:032}")),
    };
    PushRequest {
        provider,
        app_id: app_id.to_owned(),
        device_token,
        badge: (n % 100) as u32,
        new_mail: 1,
        collapse_id: format!("badge-{device}"),
        push_id: format!("00000000-0000-4000-8000-{:012x}", n & 0xffff_ffff_ffff),
        attempt: 0,
        send_before: None,
    }
}
