//! TLS on real sockets, with certificates made for the test: a cluster of two nodes whose
//! gateway serves HTTPS, whose gRPC requires a client certificate of the cluster's CA
//! (mutual TLS; the nodes call each other with theirs), and whose Redis is reached over
//! `rediss://` with that CA and a client certificate. A notification that arrives at the
//! node not holding its shard is forwarded over mutual TLS and pushed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use herald_broker::config::{Config, GrpcTlsConfig};
use herald_broker::store::CopyAdmin;
use herald_broker::testsuite::{
    RedisServer, TestNode, as_alice, authed, callback_path, eventually, fixture, split_between,
    test_config, token_held_by,
};
use herald_gateway::testsuite::{RawResponse, exchange, post_request};
use herald_gateway::tls::TlsFiles;
use herald_proto::v1::registrations_client::RegistrationsClient;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::pem::PemObject as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// A CA and the certificates it issues, as PEM files in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
    ca: PathBuf,
}

impl Pki {
    fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, cert.pem()).unwrap();
        Self {
            issuer: Issuer::new(params, key),
            dir,
            ca,
        }
    }

    /// A certificate for `name` on loopback, good for servers and clients alike.
    fn issue(&self, name: &str) -> TlsFiles {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let files = TlsFiles {
            cert_file: self.dir.path().join(format!("{name}.crt")),
            key_file: self.dir.path().join(format!("{name}.key")),
        };
        std::fs::write(&files.cert_file, cert.pem()).unwrap();
        std::fs::write(&files.key_file, key.serialize_pem()).unwrap();
        files
    }

    fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(&self.ca).unwrap()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Redis server that takes TLS connections with client certificates of `pki` on one
/// port (its plain port is there for the test harness alone).
fn redis_over_tls(pki: &Pki) -> (RedisServer, u16) {
    let server = pki.issue("redis");
    let port = free_port();
    let arg = |p: &Path| p.display().to_string();
    let redis = RedisServer::start_with(&[
        "--tls-port".to_owned(),
        port.to_string(),
        "--tls-cert-file".to_owned(),
        arg(&server.cert_file),
        "--tls-key-file".to_owned(),
        arg(&server.key_file),
        "--tls-ca-cert-file".to_owned(),
        arg(&pki.ca),
        "--tls-auth-clients".to_owned(),
        "yes".to_owned(),
    ]);
    (redis, port)
}

/// Node `id`'s configuration: HTTPS gateway, mutual-TLS gRPC, Redis over TLS.
fn node_config(pki: &Pki, id: &str, redis_port: u16) -> Config {
    let mut config = test_config(Some(format!("rediss://127.0.0.1:{redis_port}")));
    let files = pki.issue(id);
    config.node.id = id.to_owned();
    config.redis.ca_file = Some(pki.ca.clone());
    config.redis.client_cert_file = Some(files.cert_file.clone());
    config.redis.client_key_file = Some(files.key_file.clone());
    config.gateway.tls = Some(files.clone());
    config.grpc.tls = Some(GrpcTlsConfig {
        cert_file: files.cert_file,
        key_file: files.key_file,
        ca_file: pki.ca.clone(),
        client_auth: true,
        peer_server_name: None,
    });
    assert!(config.problems().0.is_empty(), "{}", config.problems());
    config
}

async fn grpc(addr: SocketAddr, tls: ClientTlsConfig) -> Result<Channel, tonic::transport::Error> {
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

fn identity(files: &TlsFiles) -> Identity {
    Identity::from_pem(
        std::fs::read(&files.cert_file).unwrap(),
        std::fs::read(&files.key_file).unwrap(),
    )
}

/// `POST path` over HTTPS, checking the gateway's certificate against `ca`.
async fn post_https(ca: &[u8], addr: SocketAddr, path: &str, body: &[u8]) -> RawResponse {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::from(addr.ip());
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let request = post_request(addr, path, Some("text/xml; charset=utf-8"), body);
    exchange(tls, &request).await
}

#[tokio::test]
async fn a_cluster_serves_and_forwards_over_tls_and_refuses_callers_without_a_certificate() {
    let pki = Pki::new("Herald test CA");
    let (_redis, redis_port) = redis_over_tls(&pki);
    let a = TestNode::start(&node_config(&pki, "node-a", redis_port)).await;
    let b = TestNode::start(&node_config(&pki, "node-b", redis_port)).await;
    split_between(&a, &b).await;

    // An internal caller with a certificate of the cluster's CA registers at node A a
    // device whose shard node B holds: the write is forwarded to B over mutual TLS.
    let caller = pki.issue("caller");
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pki.ca_pem()))
        .identity(identity(&caller));
    let mut client = RegistrationsClient::new(grpc(a.node.grpc_addr, tls).await.unwrap());
    let device_token = token_held_by(&b);
    let registration = client
        .register(authed(as_alice(device_token.clone())))
        .await
        .expect("register over mutual TLS")
        .into_inner();

    // Exchange's notification arrives at A over HTTPS; B holds the shard and pushes.
    let path = callback_path(&registration.callback_url);
    let burst = fixture("ews", "03-burst-created-newmail-modified.xml");
    let answer = post_https(&pki.ca_pem(), a.gateway_addr(), &path, &burst).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.soap_status().unwrap().1, "OK");
    eventually(Duration::from_secs(10), || async {
        b.pushes
            .sent()
            .iter()
            .any(|push| push.device_token == device_token)
            .then_some(())
    })
    .await;
    assert!(
        a.pushes.sent().is_empty(),
        "A holds none of the device's shard"
    );

    // Callers without a certificate, or with one from another CA, are refused at the
    // handshake (before their token is looked at); plain HTTP/2 too.
    let no_certificate = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pki.ca_pem()));
    let another = Pki::new("Another CA");
    let stranger = another.issue("stranger");
    let foreign = no_certificate.clone().identity(identity(&stranger));
    for tls in [no_certificate, foreign] {
        let refused = match grpc(a.node.grpc_addr, tls).await {
            Err(_) => true,
            Ok(channel) => RegistrationsClient::new(channel)
                .register(authed(as_alice("ab".repeat(32))))
                .await
                .is_err(),
        };
        assert!(refused, "a caller without the CA's certificate got through");
    }
    let plain = Channel::from_shared(format!("http://{}", a.node.grpc_addr))
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = plain {
        assert!(
            RegistrationsClient::new(channel)
                .register(authed(as_alice("cd".repeat(32))))
                .await
                .is_err()
        );
    }

    // Plain HTTP at the HTTPS gateway gets no HTTP answer: the handshake fails, and is
    // counted.
    let mut plain = tokio::net::TcpStream::connect(a.gateway_addr())
        .await
        .unwrap();
    let request = post_request(a.gateway_addr(), &path, Some("text/xml"), &burst);
    let _ = plain.write_all(&request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), plain.read_to_end(&mut answer))
        .await
        .expect("the connection is closed");
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let (_, metrics) = herald_broker::testsuite::http_get(a.node.admin_addr, "/metrics").await;
    assert!(
        metrics.contains(r#"herald_gateway_rejections_total{reason="tls_handshake"}"#),
        "{metrics}"
    );
    // When each certificate it serves with expires: rcgen's default, 4096-01-01.
    for certificate in ["gateway", "grpc", "redis_client"] {
        let line = format!(
            "herald_tls_certificate_expiry_timestamp_seconds{{certificate=\"{certificate}\"}} 67090118400"
        );
        assert!(metrics.contains(&line), "{line} missing in:\n{metrics}");
    }

    b.stop().await;
    a.stop().await;
}

#[test]
fn a_certificates_expiry_is_read_from_its_der() {
    let key = KeyPair::generate().unwrap();
    // Before 2050, X.509 writes the time as UTCTime; from 2050 on, GeneralizedTime.
    for ((year, month, day), expected) in [
        ((2031, 5, 17), 1_936_742_400),
        ((2049, 12, 31), 2_524_521_600),
        ((2050, 1, 1), 2_524_608_000),
    ] {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(year, month, day);
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            herald_gateway::tls::not_after(cert.der()),
            Some(expected),
            "{year}"
        );
    }
}

#[test]
fn check_config_names_each_unusable_tls_file() {
    let pki = Pki::new("Herald test CA");
    let node = pki.issue("node");
    let other = pki.issue("other");
    let mut config = test_config(Some("redis://127.0.0.1:6379".to_owned()));
    // A key that is not the certificate's; a CA file that holds no certificate.
    config.gateway.tls = Some(TlsFiles {
        cert_file: node.cert_file.clone(),
        key_file: other.key_file.clone(),
    });
    config.grpc.tls = Some(GrpcTlsConfig {
        cert_file: node.cert_file.clone(),
        key_file: node.key_file.clone(),
        ca_file: node.key_file.clone(),
        client_auth: true,
        peer_server_name: None,
    });
    // TLS files for a Redis reached in the clear; a certificate without its key.
    config.redis.ca_file = Some(pki.ca.clone());
    config.redis.client_cert_file = Some(node.cert_file.clone());
    if let Some(grpc) = config.grpc.tls.as_mut() {
        grpc.peer_server_name = Some("not a name".to_owned());
    }
    let problems = config.problems().to_string();
    for expected in [
        "gateway.tls:",
        "do not make a certificate and its key",
        "grpc.tls.ca_file:",
        "redis.client_cert_file and redis.client_key_file go together",
        "redis.url is not rediss://",
        "grpc.tls.peer_server_name \"not a name\" is not a DNS name",
    ] {
        assert!(
            problems.contains(expected),
            "{expected:?} missing in:\n{problems}"
        );
    }
    config.gateway.tls = Some(node.clone());
    config.grpc.tls = None;
    config.redis.url = Some("rediss://127.0.0.1:6380".to_owned());
    // The Redis client certificate with another's key.
    config.redis.client_key_file = Some(other.key_file.clone());
    let problems = config.problems().to_string();
    assert!(
        problems.contains("redis.client_cert_file and redis.client_key_file: "),
        "{problems}"
    );
    config.redis.client_key_file = Some(node.key_file);
    assert!(config.problems().0.is_empty(), "{}", config.problems());
}

#[tokio::test]
async fn the_region_tools_reach_every_copy_over_tls() {
    let pki = Pki::new("Herald test CA");
    let (_first, first_port) = redis_over_tls(&pki);
    let (_second, second_port) = redis_over_tls(&pki);
    let config = node_config(&pki, "tools", first_port);
    let tls = config.redis_tls().unwrap();
    let url = config.redis.url.clone().unwrap();
    let copy = CopyAdmin::open(&url, "herald", tls.as_ref(), Duration::from_secs(5))
        .await
        .expect("the copy over TLS");
    copy.set_generation("eu-west-1", 7).await.unwrap();
    assert_eq!(copy.generation("eu-west-1").await.unwrap(), 7);
    // Another server of the same home, as `region promote --replica` names it: reached
    // with the same certificates, over TLS.
    let sibling = copy
        .sibling("127.0.0.1", second_port)
        .await
        .expect("the sibling over TLS");
    assert_eq!(sibling.generation("eu-west-1").await.unwrap(), 0);
    // Without the client certificate, the server refuses.
    let mut bare = tls.clone().unwrap();
    bare.client_tls = None;
    assert!(
        CopyAdmin::open(&url, "herald", Some(&bare), Duration::from_secs(2))
            .await
            .is_err()
    );
}
