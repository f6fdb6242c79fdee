//! Where the pushes of a run land: the mock APNs and FCM in this process, or a
//! `herald-mock-push` reached through its control API.

use std::sync::Arc;

use herald_workers::mock::{Fault, MockProviders, Reply, ShareRule};
use serde::Deserialize;

/// A push a mock accepted, reduced to what the checks need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub token: String,
    pub badge: u32,
    pub at_ms: u64,
}

#[derive(Clone, Debug)]
pub enum PushSink {
    InProcess(Arc<MockProviders>),
    Control { url: String, http: reqwest::Client },
}

#[derive(Deserialize)]
struct ApnsRecord {
    device_token: String,
    badge: Option<u32>,
    at_ms: u64,
}

#[derive(Deserialize)]
struct FcmRecord {
    token: String,
    data: std::collections::BTreeMap<String, String>,
    at_ms: u64,
}

#[derive(Deserialize)]
struct Stats {
    apns: Counts,
    fcm: Counts,
}

#[derive(Deserialize)]
struct Counts {
    accepted: u64,
}

fn brownout_rule(share: f64) -> ShareRule {
    ShareRule {
        share,
        fault: Fault::Reply(Reply::new(503, "ServiceUnavailable")),
    }
}

impl PushSink {
    pub fn control(url: &str) -> Self {
        herald_workers::install_crypto_provider();
        Self::Control {
            url: url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// Pushes accepted so far, both providers.
    pub async fn accepted(&self) -> anyhow::Result<u64> {
        match self {
            Self::InProcess(p) => Ok(p.apns.accepted() + p.fcm.accepted()),
            Self::Control { url, http } => {
                let stats: Stats = http
                    .get(format!("{url}/stats"))
                    .send()
                    .await?
                    .json()
                    .await?;
                Ok(stats.apns.accepted + stats.fcm.accepted)
            }
        }
    }

    /// Every push the mocks accepted with a badge.
    pub async fn received(&self) -> anyhow::Result<Vec<Received>> {
        let (apns, fcm): (Vec<ApnsRecord>, Vec<FcmRecord>) = match self {
            Self::InProcess(p) => (
                p.apns
                    .pushes()
                    .into_iter()
                    .map(|p| ApnsRecord {
                        device_token: p.device_token,
                        badge: p.badge,
                        at_ms: p.at_ms,
                    })
                    .collect(),
                p.fcm
                    .pushes()
                    .into_iter()
                    .map(|p| FcmRecord {
                        token: p.token,
                        data: p.data,
                        at_ms: p.at_ms,
                    })
                    .collect(),
            ),
            Self::Control { url, http } => (
                http.get(format!("{url}/apns/pushes"))
                    .send()
                    .await?
                    .json()
                    .await?,
                http.get(format!("{url}/fcm/pushes"))
                    .send()
                    .await?
                    .json()
                    .await?,
            ),
        };
        let mut received: Vec<Received> = apns
            .into_iter()
            .filter_map(|p| {
                Some(Received {
                    badge: p.badge?,
                    token: p.device_token,
                    at_ms: p.at_ms,
                })
            })
            .chain(fcm.into_iter().filter_map(|p| {
                Some(Received {
                    badge: p.data.get("badge")?.parse().ok()?,
                    token: p.token,
                    at_ms: p.at_ms,
                })
            }))
            .collect();
        received.sort_by_key(|r| r.at_ms);
        Ok(received)
    }

    /// The mock APNs answers 503 to `share` of the pushes until [`Self::clear`].
    pub async fn brownout(&self, share: f64) -> anyhow::Result<()> {
        match self {
            Self::InProcess(p) => p.apns.script().for_share(brownout_rule(share)),
            Self::Control { url, http } => {
                http.post(format!("{url}/apns/script/share"))
                    .json(&brownout_rule(share))
                    .send()
                    .await?
                    .error_for_status()?;
            }
        }
        Ok(())
    }

    pub async fn clear(&self) -> anyhow::Result<()> {
        match self {
            Self::InProcess(p) => {
                p.apns.script().clear();
                p.fcm.script().clear();
            }
            Self::Control { url, http } => {
                http.post(format!("{url}/script/clear"))
                    .send()
                    .await?
                    .error_for_status()?;
            }
        }
        Ok(())
    }
}
