//! Mock APNs and FCM servers (feature `mock`): real HTTP/2 over TLS with a CA made at start,
//! validating like the real services, recording what they accepted, scriptable to answer
//! any provider error, to delay or to drop connections, and with an accept-all mode for load
//! tests. Tests, `herald demo` and `herald-loadtest` run them in-process; the
//! `herald-mock-push` binary runs them on their own with an HTTP control API.

mod apns;
pub mod control;
mod fcm;
mod providers;
mod record;
mod script;
mod serve;
mod tls;

pub use apns::{ApnsPush, MockApns, MockApnsOptions, TrustedKey};
pub use fcm::{FcmPush, MockFcm, MockFcmOptions, TEST_SERVICE_ACCOUNT_KEY};
pub use providers::MockProviders;
pub use script::{Fault, Reply, Script, ShareRule, TokenRule};
pub use tls::MockTls;

/// The throwaway APNs signing key the mocks trust by default (committed test data).
pub const TEST_APNS_KEY: &str = include_str!("../../testdata/apns/test-key.p8");
pub const TEST_APNS_PUBLIC_KEY: &str = include_str!("../../testdata/apns/test-key.pub.pem");
pub const TEST_TEAM_ID: &str = "HERALDTEAM";
pub const TEST_KEY_ID: &str = "HERALDKEY1";

/// The test key as a [`TrustedKey`].
pub fn test_key() -> TrustedKey {
    TrustedKey {
        key_id: TEST_KEY_ID.to_owned(),
        team_id: TEST_TEAM_ID.to_owned(),
        public_pem: TEST_APNS_PUBLIC_KEY.as_bytes().to_vec(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MockError {
    #[error("mock TLS: {0}")]
    Tls(String),
    #[error("mock: {0}")]
    Io(String),
    #[error("mock key: {0}")]
    Key(String),
}
