//! `herald-loadtest register`: N `Register` calls over keep-alive HTTP/2 channels, either
//! closed-loop at a fixed concurrency (the throughput ceiling) or open-loop at a fixed
//! arrival rate (latency at a load), with random device tokens.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use herald_proto::v1::registrations_client::RegistrationsClient;
use herald_proto::v1::{Platform, RegisterRequest};
use tokio::sync::Mutex;
use tonic::transport::Channel;

use crate::report::{Summary, latency_histogram};

#[derive(Clone, Debug)]
pub struct RegisterLoad {
    pub endpoint: String,
    pub token: String,
    pub apns_app: String,
    /// How many registrations to create.
    pub count: u64,
    /// Requests in flight at once (closed loop), or the cap on them (open loop).
    pub concurrency: usize,
    /// Arrivals per second; `None`: closed loop.
    pub rate: Option<f64>,
    /// HTTP/2 connections to spread the calls over.
    pub connections: usize,
    /// Give up after this long.
    pub max_duration: Duration,
}

/// A small deterministic generator of device tokens (no cryptographic need here).
struct TokenGen(u64);

impl TokenGen {
    fn next_hex(&mut self) -> String {
        let mut out = String::with_capacity(64);
        for _ in 0..4 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            out.push_str(&format!(
                "{:016x}",
                self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
            ));
        }
        out
    }
}

pub async fn run(load: RegisterLoad) -> anyhow::Result<Summary> {
    let mut clients = Vec::new();
    for _ in 0..load.connections.max(1) {
        let channel = Channel::from_shared(load.endpoint.clone())?
            .connect()
            .await?;
        clients.push(RegistrationsClient::new(channel));
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64
        | 1;
    let tokens = Arc::new(std::sync::Mutex::new(TokenGen(seed)));
    let histogram = Arc::new(Mutex::new(latency_histogram()));
    let (ok, errors, next) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let started = Instant::now();
    let deadline = started + load.max_duration;
    let auth: tonic::metadata::MetadataValue<_> = format!("Bearer {}", load.token).parse()?;

    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..load.concurrency.max(1) {
        let mut client = clients[worker % clients.len()].clone();
        let (tokens, histogram, ok, errors, next) = (
            tokens.clone(),
            histogram.clone(),
            ok.clone(),
            errors.clone(),
            next.clone(),
        );
        let (auth, app, rate, count) = (auth.clone(), load.apns_app.clone(), load.rate, load.count);
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || Instant::now() >= deadline {
                    return;
                }
                // Open loop: request i is due at i/rate; latency counts from then.
                let due = match rate {
                    Some(rate) => started + Duration::from_secs_f64(i as f64 / rate),
                    None => Instant::now(),
                };
                tokio::time::sleep_until(due.into()).await;
                let device_token = tokens.lock().map(|mut g| g.next_hex()).unwrap_or_default();
                let mut request = tonic::Request::new(RegisterRequest {
                    device_token,
                    platform: Platform::Apns.into(),
                    app_id: app.clone(),
                    ..Default::default()
                });
                request.metadata_mut().insert("authorization", auth.clone());
                let result = client.register(request).await;
                let micros = due.elapsed().as_micros().max(1) as u64;
                match result {
                    Ok(_) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        let _ = histogram.lock().await.record(micros.min(60_000_000));
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let latency = Arc::try_unwrap(histogram)
        .map(Mutex::into_inner)
        .unwrap_or_else(|_| latency_histogram());
    Ok(Summary {
        ok: ok.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        latency,
    })
}
