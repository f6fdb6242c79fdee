//! EWS test material: the shared fixtures in `testdata/`, the cast of `expected.json`
//! (alice, bob, carol, dave) registered on a node, and POSTs to their callback URLs.

use std::collections::BTreeMap;
use std::time::Duration;

use herald_gateway::testsuite::{RawResponse, post};
use herald_proto::v1::{Platform, RegisterRequest, Registration, UnregisterRequest};
use serde_json::Value;

use super::{TestNode, authed};
use crate::domain::{RegistrationId, RegistrationRecord};

/// Reads `testdata/{dir}/{name}`.
pub fn fixture(dir: &str, name: &str) -> Vec<u8> {
    let path = format!("{}/../testdata/{dir}/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `testdata/{dir}/expected.json`.
pub fn expected(dir: &str) -> Value {
    serde_json::from_slice(&fixture(dir, "expected.json")).expect("expected.json")
}

/// The path of a callback URL (`/ews/v1/{home}/{token}`).
pub fn callback_path(callback_url: &str) -> String {
    let at = callback_url.find("/ews/v1/").expect("a callback URL");
    callback_url[at..].to_owned()
}

/// One registered member of the cast.
#[derive(Clone, Debug)]
pub struct Member {
    pub subscription_id: String,
    pub inbox_folder_id: String,
    pub registration: Registration,
    pub path: String,
}

impl Member {
    pub fn id(&self) -> RegistrationId {
        RegistrationId::parse("registration_id", &self.registration.registration_id).expect("id")
    }
}

/// The cast of `testdata/ews/expected.json`, registered on a node.
#[derive(Debug)]
pub struct Cast {
    pub members: BTreeMap<String, Member>,
}

impl Cast {
    /// Registers every member; `bound` says whether the subscription id is given at
    /// registration (else it is bound on first sight).
    pub async fn register(node: &TestNode, bound: bool) -> Self {
        Self::register_as(node, bound, Platform::Apns).await
    }

    /// Registers every member as a phone of `platform` (APNs tokens are 64 hex digits, FCM
    /// tokens `fcm-token-<nn>-xxx…`).
    pub async fn register_as(node: &TestNode, bound: bool, platform: Platform) -> Self {
        let registry = expected("ews")["registry"].clone();
        let mut members = BTreeMap::new();
        let mut client = node.client().await;
        for (n, (alias, entry)) in registry.as_object().expect("registry").iter().enumerate() {
            let subscription_id = entry["subscription_id"].as_str().expect("sub").to_owned();
            let inbox_folder_id = entry["inbox_folder_id"].as_str().expect("inbox").to_owned();
            let (device_token, app_id) = match platform {
                Platform::Fcm => (
                    format!("fcm-token-{:02}-{}", n + 1, "x".repeat(32)),
                    super::ANDROID_APP,
                ),
                _ => (format!("{:02x}", n + 1).repeat(32), super::IOS_APP),
            };
            let request = RegisterRequest {
                device_token,
                platform: platform.into(),
                app_id: app_id.into(),
                inbox_folder_id: inbox_folder_id.clone(),
                subscription_id: if bound {
                    subscription_id.clone()
                } else {
                    String::new()
                },
                ..Default::default()
            };
            let registration = client
                .register(authed(request))
                .await
                .expect("register")
                .into_inner();
            let path = callback_path(&registration.callback_url);
            members.insert(
                alias.clone(),
                Member {
                    subscription_id,
                    inbox_folder_id,
                    registration,
                    path,
                },
            );
        }
        Self { members }
    }

    pub fn get(&self, alias: &str) -> &Member {
        self.members
            .get(alias)
            .unwrap_or_else(|| panic!("no {alias} in the cast"))
    }

    /// Unregisters every member, releasing their subscription ids.
    pub async fn unregister(self, node: &TestNode) {
        let mut client = node.client().await;
        for member in self.members.into_values() {
            let request = UnregisterRequest {
                registration_id: member.registration.registration_id,
            };
            client
                .unregister(authed(request))
                .await
                .expect("unregister");
        }
    }
}

impl TestNode {
    /// POSTs `body` as `text/xml` to `path` on the node's gateway.
    pub async fn post_ews(&self, path: &str, body: &[u8]) -> RawResponse {
        post(
            self.gateway_addr(),
            path,
            Some("text/xml; charset=utf-8"),
            body,
        )
        .await
    }

    /// The stored record of a registration.
    pub async fn record(&self, id: &RegistrationId) -> Option<RegistrationRecord> {
        self.store.get(id).await.expect("store read")
    }

    /// Waits until `member` has no burst waiting.
    pub async fn flushed(&self, member: &Member) {
        super::eventually(Duration::from_secs(10), || async {
            let record = self.record(&member.id()).await.expect("registered");
            record.progress.burst.is_none().then_some(())
        })
        .await;
    }

    /// Sends a sequence of `expected.json` as Exchange would: each file after the previous
    /// burst was flushed, except after a page that announces more. The device token of the
    /// sequence's member.
    pub async fn play(&self, cast: &Cast, sequence: &str) -> String {
        let sequence = &expected("ews")["sequences"][sequence];
        let files = expected("ews")["files"].clone();
        let mut device = None;
        for name in sequence["order"].as_array().expect("order") {
            let name = name.as_str().expect("file name");
            let parsed = &files[name]["parsed"];
            let alias = parsed["messages"][0]["notification"]["subscription"]
                .as_str()
                .expect("subscription alias");
            let member = cast.get(alias);
            device.get_or_insert_with(|| member.registration.device_token.clone());
            let answer = self.post_ews(&member.path, &fixture("ews", name)).await;
            assert_eq!(answer.status, 200, "{name}");
            if parsed["messages"][0]["notification"]["more_events"] != true {
                self.flushed(member).await;
            }
        }
        device.expect("a non-empty sequence")
    }
}

/// The badges `expected.json` says a sequence pushes.
pub fn expected_pushes(sequence: &str) -> Vec<u32> {
    expected("ews")["sequences"][sequence]["expected_pushes"]
        .as_array()
        .expect("expected_pushes")
        .iter()
        .map(|b| b.as_u64().expect("a badge") as u32)
        .collect()
}

/// A registration of an iPhone with `device_token` for the fixtures' alice (her
/// subscription and Inbox), as an API caller sends it.
pub fn as_alice(device_token: String) -> RegisterRequest {
    let alice = &expected("ews")["registry"]["alice"];
    RegisterRequest {
        device_token,
        platform: Platform::Apns.into(),
        app_id: super::IOS_APP.into(),
        inbox_folder_id: alice["inbox_folder_id"].as_str().expect("inbox").into(),
        subscription_id: alice["subscription_id"].as_str().expect("sub").into(),
        ..Default::default()
    }
}
