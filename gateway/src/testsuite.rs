//! Helpers for tests that talk to a gateway over real HTTP (feature `testsuite`): a raw
//! HTTP/1.1 client that sends exactly the bytes a test wants, and a namespace-aware reader
//! of SOAP answers.

// Test-only code: a failed step should stop the test with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;

use quick_xml::NsReader;
use quick_xml::events::Event;
use quick_xml::name::{Namespace, ResolveResult};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::model::SoapVersion;
use crate::parse::{MESSAGES, SOAP11, SOAP12};

/// An HTTP answer as received.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The SOAP answer's version and `SubscriptionStatus`, checked by namespace.
    pub fn soap_status(&self) -> Option<(SoapVersion, String)> {
        soap_status(&self.body)
    }
}

/// Sends `request` as is on a new connection and reads the answer until the server closes.
/// If the server answers before the whole request is written (a 413), the rest is dropped.
pub async fn send_raw(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let stream = TcpStream::connect(addr).await.expect("connect");
    exchange(stream, request).await
}

/// Sends `request` on `stream` (a TLS stream, say) and reads the answer until the server
/// closes.
pub async fn exchange<S>(mut stream: S, request: &[u8]) -> RawResponse
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    // A server that stops reading early makes the write fail: the answer is still there.
    let _ = stream.write_all(request).await;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    parse_response(&raw)
}

/// [`send_raw`] from the local address `from` (any of 127.0.0.0/8 on loopback), so that a
/// test can play several sources.
pub async fn send_raw_from(
    from: std::net::IpAddr,
    addr: SocketAddr,
    request: &[u8],
) -> RawResponse {
    let socket = match from {
        std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .expect("socket");
    socket.bind(SocketAddr::new(from, 0)).expect("bind");
    let mut stream = socket.connect(addr).await.expect("connect");
    let _ = stream.write_all(request).await;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    parse_response(&raw)
}

/// `POST path` with `body`, `Content-Length`, `Connection: close`, and a `Content-Type`
/// unless `None`.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> RawResponse {
    send_raw(addr, &post_request(addr, path, content_type, body)).await
}

/// The bytes of a `POST` request.
pub fn post_request(
    addr: SocketAddr,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    request
}

fn parse_response(raw: &[u8]) -> RawResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    RawResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&raw[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&raw[start..start + size]);
        raw = &raw[start + size + 2..];
    }
    out
}

/// Reads `{soap}Envelope/{soap}Body/{m}SendNotificationResult/{m}SubscriptionStatus`.
pub fn soap_status(body: &[u8]) -> Option<(SoapVersion, String)> {
    let text = std::str::from_utf8(body).ok()?;
    let mut reader = NsReader::from_str(text);
    let mut path: Vec<(String, String)> = Vec::new();
    let mut status = None;
    let mut envelope_ns = None;
    loop {
        match reader.read_resolved_event().ok()? {
            (ResolveResult::Bound(Namespace(ns)), Event::Start(e)) => {
                path.push((ns.to_owned(), e.local_name().into_inner().to_owned()));
            }
            (_, Event::Start(e)) => {
                path.push((String::new(), e.local_name().into_inner().to_owned()))
            }
            (_, Event::End(_)) => {
                path.pop();
            }
            (_, Event::Text(t)) if path.len() == 4 => status = Some(t.xml10_content().into_owned()),
            (_, Event::Eof) => break,
            _ => {}
        }
        if path.len() == 1 && envelope_ns.is_none() {
            envelope_ns = Some(path[0].0.clone());
        }
        if path.len() == 4 {
            let soap = &path[0].0;
            let expected = [
                (soap.as_str(), "Envelope"),
                (soap.as_str(), "Body"),
                (MESSAGES, "SendNotificationResult"),
                (MESSAGES, "SubscriptionStatus"),
            ];
            if path
                .iter()
                .zip(expected)
                .any(|((ns, l), (ens, el))| ns != ens || l != el)
            {
                return None;
            }
        }
    }
    let version = match envelope_ns?.as_str() {
        SOAP11 => SoapVersion::V11,
        SOAP12 => SoapVersion::V12,
        _ => return None,
    };
    Some((version, status?))
}
