//! Both mocks at once, with the files a node needs to use them: the CA to trust, the APNs
//! signing key, and a service-account file whose tokens come from the mock FCM.

use std::path::{Path, PathBuf};

use super::{
    MockApns, MockApnsOptions, MockError, MockFcm, MockFcmOptions, MockTls, TEST_APNS_KEY,
    TEST_KEY_ID, TEST_TEAM_ID, test_key,
};
use crate::{ApnsAppConfig, AppConfig, FcmAppConfig};

/// A running mock APNs and mock FCM sharing one CA.
#[derive(Debug)]
pub struct MockProviders {
    pub apns: MockApns,
    pub fcm: MockFcm,
    ca_file: PathBuf,
    key_file: PathBuf,
    dir: PathBuf,
    tls: MockTls,
}

impl MockProviders {
    /// Starts both on free ports of 127.0.0.1, writing their files into `dir`.
    pub async fn start(
        dir: &Path,
        apns: MockApnsOptions,
        fcm: MockFcmOptions,
    ) -> Result<Self, MockError> {
        let tls = MockTls::generate()?;
        let mut apns = apns;
        if apns.keys.is_empty() {
            apns.keys.push(test_key());
        }
        let io = |e: std::io::Error| MockError::Io(e.to_string());
        std::fs::create_dir_all(dir).map_err(io)?;
        // The printed configuration names these files from anywhere.
        let dir = &std::fs::canonicalize(dir).map_err(io)?;
        let ca_file = dir.join("mock-ca.pem");
        tls.write_ca(&ca_file)?;
        let key_file = dir.join("apns-test-key.p8");
        std::fs::write(&key_file, TEST_APNS_KEY).map_err(io)?;
        Ok(Self {
            apns: MockApns::start(apns, &tls).await?,
            fcm: MockFcm::start(fcm, &tls).await?,
            ca_file,
            key_file,
            dir: dir.to_owned(),
            tls,
        })
    }

    /// An APNs app (bundle id `id`) pointed at the mock, signing with the test key.
    pub fn apns_app(&self, id: &str) -> ApnsAppConfig {
        ApnsAppConfig {
            id: id.to_owned(),
            team_id: TEST_TEAM_ID.to_owned(),
            key_id: TEST_KEY_ID.to_owned(),
            key_file: self.key_file.clone(),
            cert_file: PathBuf::new(),
            base_url: self.apns.url(),
            ca_file: self.ca_file.clone(),
        }
    }

    /// An APNs app (bundle id `id`) using certificate auth: a push certificate the mock's CA
    /// issued for `topic` (normally `id`) is written next to the CA.
    pub fn apns_certificate_app(&self, id: &str, topic: &str) -> Result<ApnsAppConfig, MockError> {
        let file = self.dir.join(format!("apns-cert-{topic}.pem"));
        std::fs::write(&file, self.tls.client_identity(topic)?)
            .map_err(|e| MockError::Io(e.to_string()))?;
        Ok(ApnsAppConfig {
            id: id.to_owned(),
            team_id: String::new(),
            key_id: String::new(),
            key_file: PathBuf::new(),
            cert_file: file,
            base_url: self.apns.url(),
            ca_file: self.ca_file.clone(),
        })
    }

    /// The `[[apps]]` of a node that pushes here: APNs apps `ios` (token auth with the test
    /// key) and FCM apps `android` of Firebase project `project`.
    pub fn apps(
        &self,
        ios: &[impl AsRef<str>],
        android: &[impl AsRef<str>],
        project: &str,
    ) -> Result<Vec<AppConfig>, MockError> {
        let mut apps: Vec<AppConfig> = ios
            .iter()
            .map(|id| AppConfig::Apns(self.apns_app(id.as_ref())))
            .collect();
        for id in android {
            apps.push(AppConfig::Fcm(self.fcm_app(id.as_ref(), project)?));
        }
        Ok(apps)
    }

    /// `apps` as the `[[apps]]` TOML of a node's configuration.
    pub fn apps_toml(apps: &[AppConfig]) -> Result<String, MockError> {
        #[derive(serde::Serialize)]
        struct Apps<'a> {
            apps: &'a [AppConfig],
        }
        toml::to_string(&Apps { apps }).map_err(|e| MockError::Io(e.to_string()))
    }

    /// An FCM app of Firebase project `project` pointed at the mock; its service-account
    /// file is written next to the CA.
    pub fn fcm_app(&self, id: &str, project: &str) -> Result<FcmAppConfig, MockError> {
        let file = self.dir.join(format!("fcm-{project}.json"));
        std::fs::write(&file, self.fcm.service_account_json(project))
            .map_err(|e| MockError::Io(e.to_string()))?;
        Ok(FcmAppConfig {
            id: id.to_owned(),
            project_id: project.to_owned(),
            service_account_file: file,
            base_url: self.fcm.url(),
            ca_file: self.ca_file.clone(),
        })
    }
}
