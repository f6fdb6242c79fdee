//! The mocks' TLS: a CA created at start (nothing secret is committed) and a server
//! certificate it signs for `127.0.0.1` and `localhost`. The node trusts the CA through an
//! app's `ca_file`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{RootCertStore, ServerConfig};

use super::MockError;

/// A CA and the server certificate it signed; it also issues client certificates (APNs
/// certificate auth) and remembers whose they are.
#[derive(Debug)]
pub struct MockTls {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
    clients: ClientCertificates,
}

/// The client certificates a [`MockTls`] issued: DER → the topic (bundle id) it is for.
pub(crate) type ClientCertificates = Arc<Mutex<HashMap<Vec<u8>, String>>>;

impl MockTls {
    pub fn generate() -> Result<Self, MockError> {
        let tls = |e: rcgen::Error| MockError::Tls(e.to_string());
        let ca_key = KeyPair::generate().map_err(tls)?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(tls)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "Herald mock push CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).map_err(tls)?;
        let issuer = Issuer::new(ca, ca_key);
        let server_key = KeyPair::generate().map_err(tls)?;
        let mut server =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .map_err(tls)?;
        server
            .distinguished_name
            .push(DnType::CommonName, "mock push provider");
        let server_cert = server.signed_by(&server_key, &issuer).map_err(tls)?;
        Ok(Self {
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().clone(),
            chain: vec![server_cert.der().clone(), ca_cert.der().clone()],
            key_der: server_key.serialize_der(),
            issuer,
            clients: ClientCertificates::default(),
        })
    }

    /// A push certificate for `topic` and its key, PEM (an app's `cert_file`), like the
    /// "Apple Push Services: <bundle id>" certificates Apple issues.
    pub fn client_identity(&self, topic: &str) -> Result<String, MockError> {
        let tls = |e: rcgen::Error| MockError::Tls(e.to_string());
        let key = KeyPair::generate().map_err(tls)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(tls)?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Apple Push Services: {topic}"));
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).map_err(tls)?;
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(cert.der().to_vec(), topic.to_owned());
        Ok(format!("{}{}", cert.pem(), key.serialize_pem()))
    }

    pub(crate) fn clients(&self) -> ClientCertificates {
        self.clients.clone()
    }

    /// Writes the CA certificate where a node's `ca_file` can name it.
    pub fn write_ca(&self, path: &Path) -> Result<(), MockError> {
        std::fs::write(path, &self.ca_pem).map_err(|e| MockError::Io(e.to_string()))
    }

    /// A server configuration offering `alpn` (most preferred first).
    pub(crate) fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, MockError> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| MockError::Tls(e.to_string()))?
                .with_client_cert_verifier(self.client_verifier()?)
                .with_single_cert(self.chain.clone(), key)
                .map_err(|e| MockError::Tls(e.to_string()))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// Client certificates are optional (token auth sends none) and, when sent, must come
    /// from this CA.
    fn client_verifier(&self) -> Result<Arc<dyn ClientCertVerifier>, MockError> {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.ca_der.clone())
            .map_err(|e| MockError::Tls(e.to_string()))?;
        WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| MockError::Tls(e.to_string()))
    }
}
