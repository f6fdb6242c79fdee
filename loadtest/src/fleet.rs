//! The devices of a run, registered through the gRPC API: iPhones and Android phones over
//! several apps, some with two mailboxes (two registrations sharing one badge).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt as _;
use herald_proto::v1::registrations_client::RegistrationsClient;
use herald_proto::v1::{Platform, RegisterRequest};
use tonic::transport::Channel;

use crate::exchange::Mailbox;
use crate::scenario::Scenario;
use crate::targets::inbox_folder_id;

#[derive(Clone, Debug)]
pub struct Device {
    pub token: String,
    pub android: bool,
    pub app: String,
    /// Indices into [`Fleet::mailboxes`].
    pub mailboxes: Vec<usize>,
}

/// A registered mailbox: Exchange's view of it and the callback path it posts to.
#[derive(Clone, Debug)]
pub struct Registered {
    pub mailbox: Mailbox,
    pub path: String,
    pub device: usize,
}

#[derive(Debug, Default)]
pub struct Fleet {
    pub devices: Vec<Device>,
    pub mailboxes: Vec<Registered>,
}

/// Plans the devices of `scenario` (deterministic for a seed) and registers their mailboxes
/// through `grpc`, `concurrency` calls at a time, printing progress to `progress`.
pub async fn register(
    scenario: &Scenario,
    grpc: &str,
    token: &str,
    seed: u64,
    concurrency: usize,
    progress: &mut (impl std::io::Write + Send),
) -> anyhow::Result<Fleet> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let salt = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    let (ios_apps, android_apps) = (scenario.apps(false), scenario.apps(true));
    let mut fleet = Fleet::default();
    let mut requests = Vec::new();
    let mut owners = Vec::new();
    for d in 0..scenario.devices {
        let android = rng.f64() < scenario.android_share;
        let apps = if android { &android_apps } else { &ios_apps };
        let token = if android {
            format!("loadtest-fcm-{salt:016x}-{d:012}-{}", "x".repeat(24))
        } else {
            format!("{salt:016x}{d:048x}")
        };
        let count = if rng.f64() < scenario.two_mailbox_share {
            2
        } else {
            1
        };
        let mut device = Device {
            token: token.clone(),
            android,
            app: apps[d % apps.len()].clone(),
            mailboxes: Vec::new(),
        };
        for _ in 0..count {
            let m = requests.len();
            device.mailboxes.push(m);
            owners.push(d);
            requests.push(RegisterRequest {
                device_token: token.clone(),
                platform: if android {
                    Platform::Fcm
                } else {
                    Platform::Apns
                }
                .into(),
                app_id: device.app.clone(),
                inbox_folder_id: inbox_folder_id(m),
                subscription_id: format!(
                    "HABleG1ieDAxLmNvcnAuY29udG9zby5leGFtcGxlEAAAAJpyRUCk4gv0{salt:016x}{m:020}=="
                ),
                ..Default::default()
            });
        }
        fleet.devices.push(device);
    }
    let channel = Channel::from_shared(grpc.to_owned())?.connect().await?;
    let client = RegistrationsClient::new(channel);
    let auth: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse()?;
    let total = requests.len();
    let mut answers = futures_util::stream::iter(requests.into_iter().enumerate().map(|(m, r)| {
        let mut client = client.clone();
        let mut request = tonic::Request::new(r);
        request.metadata_mut().insert("authorization", auth.clone());
        async move { (m, client.register(request).await) }
    }))
    .buffered(concurrency.max(1));
    let started = Instant::now();
    let mut shown = Instant::now();
    while let Some((m, answer)) = answers.next().await {
        let registration = answer
            .map_err(|e| anyhow::anyhow!("registering mailbox {m}: {e}"))?
            .into_inner();
        let at = registration
            .callback_url
            .find("/ews/v1/")
            .ok_or_else(|| anyhow::anyhow!("unexpected callback URL shape"))?;
        let device = owners[m];
        fleet.mailboxes.push(Registered {
            mailbox: Mailbox::new(
                m,
                registration.subscription_id,
                registration.inbox_folder_id,
            ),
            path: registration.callback_url[at..].to_owned(),
            device,
        });
        let done = fleet.mailboxes.len();
        if shown.elapsed() >= Duration::from_millis(500) || done == total {
            shown = Instant::now();
            let width = 30;
            let filled = done * width / total.max(1);
            write!(
                progress,
                "\rregistering [{}{}] {done}/{total} ({:.0}/s)",
                "#".repeat(filled),
                ".".repeat(width - filled),
                done as f64 / started.elapsed().as_secs_f64().max(1e-3)
            )?;
            progress.flush()?;
        }
    }
    writeln!(progress)?;
    Ok(fleet)
}
