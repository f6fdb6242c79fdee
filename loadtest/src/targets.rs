//! Where EWS load goes: callback paths with the subscription each one's notifications name —
//! synthetic ones for a gateway that accepts any token, or real ones registered through the
//! gRPC API.

use herald_proto::v1::registrations_client::RegistrationsClient;
use herald_proto::v1::{Platform, RegisterRequest};
use tonic::transport::Channel;

/// A callback path and the subscription its notifications name.
#[derive(Clone, Debug)]
pub struct Target {
    pub path: String,
    pub subscription_id: String,
    pub inbox_folder_id: String,
}

/// Synthetic targets for a gateway that accepts any token (the null-sink gateway).
pub fn anonymous_targets(count: usize) -> Vec<Target> {
    (0..count.max(1))
        .map(|i| Target {
            path: format!("/ews/v1/us-east-1/loadtest-token-{i:08}"),
            subscription_id: subscription_id(i),
            inbox_folder_id: inbox_folder_id(i),
        })
        .collect()
}

/// A subscription id shaped like Exchange's (base64, ~80 characters), unique per index.
pub fn subscription_id(i: usize) -> String {
    format!("HABleG1ieDAxLmNvcnAuY29udG9zby5leGFtcGxlEAAAAJpyRUCk4gv0pegv{i:020}==")
}

/// An Inbox folder id, unique per index.
pub fn inbox_folder_id(i: usize) -> String {
    format!(
        "AQMkAGSBBojhCVaWA3el3gSl931pHuG3mdcrDjgbBnxjJGaPn2RPcQAuAAADy0xoW79O2nawdiH5G3pIAj{i:020}=="
    )
}

/// Registers `count` APNs registrations with their subscription and Inbox ids, `concurrency`
/// at a time, and returns their callback paths.
pub async fn register_targets(
    endpoint: &str,
    token: &str,
    apns_app: &str,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Target>> {
    let channel = Channel::from_shared(endpoint.to_owned())?.connect().await?;
    let client = RegistrationsClient::new(channel);
    let auth: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse()?;
    let salt = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    let mut targets = Vec::with_capacity(count);
    let indices: Vec<usize> = (0..count).collect();
    for chunk in indices.chunks(concurrency.max(1)) {
        let calls = chunk.iter().map(|&i| {
            let mut client = client.clone();
            let mut request = tonic::Request::new(RegisterRequest {
                device_token: format!("{:016x}{:048x}", salt, i),
                platform: Platform::Apns.into(),
                app_id: apns_app.to_owned(),
                inbox_folder_id: inbox_folder_id(i),
                // Unique per run, so a rerun against the same store binds fresh ids.
                subscription_id: format!(
                    "HABleG1ieDAxLmNvcnAuY29udG9zby5leGFtcGxlEAAAAJpyRUCk4gv0{salt:016x}{i:020}=="
                ),
                ..Default::default()
            });
            request.metadata_mut().insert("authorization", auth.clone());
            async move { client.register(request).await }
        });
        for answer in futures_util::future::join_all(calls).await {
            let registration = answer?.into_inner();
            let at = registration
                .callback_url
                .find("/ews/v1/")
                .ok_or_else(|| anyhow::anyhow!("unexpected callback URL shape"))?;
            targets.push(Target {
                path: registration.callback_url[at..].to_owned(),
                subscription_id: registration.subscription_id,
                inbox_folder_id: registration.inbox_folder_id,
            });
        }
    }
    Ok(targets)
}
