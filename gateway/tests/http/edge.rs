//! What bounds a flood: unknown and unserved callback URLs answered before their body is
//! read, the budget of body bytes in flight, the minimum body rate, and the limits per
//! source address and per callback URL, each refusal counted by reason.

use std::net::IpAddr;
use std::time::Instant;

use herald_gateway::testsuite::send_raw_from;

use super::*;

fn local(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

fn rejections(gw: &Running, reason: &str) -> u64 {
    let text = gw.metrics_text();
    let line = format!("herald_gateway_rejections_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Sends `head` and `body`, then holds the connection open (without closing its side).
async fn send_and_hold(addr: SocketAddr, head: &str, body: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    stream
}

/// Reads what the server sends until it closes, within 5 s.
async fn answer_of(mut stream: TcpStream) -> String {
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
        .await
        .expect("the server answers and closes")
        .unwrap();
    String::from_utf8_lossy(&raw).into_owned()
}

#[tokio::test]
async fn an_unknown_url_is_answered_unsubscribe_without_its_body_being_read() {
    let gw = Running::start(quick_config()).await;
    // 200 kB declared, none sent: the answer does not wait for it.
    let held = send_and_hold(
        gw.addr,
        "POST /ews/v1/us-east-1/unknown-token HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: 200000\r\n\r\n",
        b"",
    )
    .await;
    let text = answer_of(held).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("Unsubscribe"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    // A whole small body is read and dropped, so the answer is a clean one, in SOAP 1.2
    // when the content type says so.
    let request = gw.request("unknown-2", "", &status_only("x"));
    let request = String::from_utf8(request)
        .unwrap()
        .replace("text/xml", "application/soap+xml");
    let answer = send_raw(gw.addr, request.as_bytes()).await;
    assert_eq!(
        answer.soap_status(),
        Some((SoapVersion::V12, "Unsubscribe".to_owned()))
    );
    // The sink cannot tell: 503, body unread.
    let answer = send_raw(gw.addr, &gw.request("away", "", &status_only("x"))).await;
    assert_eq!(answer.status, 503);
    assert!(gw.calls().is_empty(), "no body reached the sink");
    gw.stop().await;
}

#[tokio::test]
async fn a_body_slower_than_the_minimum_rate_is_cut() {
    let config = GatewayConfig {
        min_body_rate: 1000,
        body_timeout: Duration::from_secs(30),
        ..quick_config()
    };
    let gw = Running::start(config).await;
    let started = Instant::now();
    // 100 bytes of a declared 10 kB, then nothing: 100 bytes pay for 0.1 s after the grace.
    let held = send_and_hold(
        gw.addr,
        "POST /ews/v1/us-east-1/t HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: 10000\r\n\r\n",
        &[b' '; 100],
    )
    .await;
    let text = answer_of(held).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cut by the rate, not by the 30 s body timeout"
    );
    assert_eq!(rejections(&gw, "body_too_slow"), 1);
    gw.stop().await;
}

#[tokio::test]
async fn bodies_beyond_the_budget_are_refused_until_bytes_are_free_again() {
    let config = GatewayConfig {
        max_body: 8 * 1024,
        body_budget: 8 * 1024,
        min_body_rate: 0,
        body_timeout: Duration::from_secs(30),
        ..quick_config()
    };
    let gw = Running::start(config).await;
    // One body sends nearly the whole budget and holds the rest back.
    let holder = send_and_hold(
        gw.addr,
        "POST /ews/v1/us-east-1/t HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: 8192\r\n\r\n",
        &[b' '; 8000],
    )
    .await;
    let refused = eventually_status(&gw, 503).await;
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.header("connection"), Some("close"));
    assert!(rejections(&gw, "body_budget") >= 1);
    drop(holder);
    // The holder's bytes come back when its request ends.
    eventually_status(&gw, 200).await;
    gw.stop().await;
}

/// Posts a small notification until it is answered `status`, for up to 5 s.
async fn eventually_status(gw: &Running, status: u16) -> RawResponse {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = gw.post(&status_only("ok")).await;
        if answer.status == status {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "never {status}, last {}",
            answer.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_source_holding_its_connections_gets_no_more_and_others_are_served() {
    let config = GatewayConfig {
        max_connections_per_source: 2,
        header_timeout: Duration::from_secs(30),
        ..quick_config()
    };
    let gw = Running::start(config).await;
    let _idle = [
        TcpStream::connect(gw.addr).await.unwrap(),
        TcpStream::connect(gw.addr).await.unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A third from the same address is closed without an answer.
    let mut third = TcpStream::connect(gw.addr).await.unwrap();
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut raw)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "closed at once: {read:?}"
    );
    assert_eq!(rejections(&gw, "source_connections"), 1);
    // Another source is served meanwhile.
    let answer = send_raw_from(local(2), gw.addr, &gw.request("t", "", &status_only("ok"))).await;
    assert_eq!(answer.status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn a_source_over_its_rate_gets_429_and_others_do_not() {
    let config = GatewayConfig {
        source_requests_per_second: 1,
        source_burst: 2,
        ..quick_config()
    };
    let gw = Running::start(config).await;
    let body = status_only("ok");
    // The burst is always served; requests a few milliseconds apart then outrun 1/s.
    let statuses: Vec<u16> = statuses_from(&gw, local(1), "", &body, 6).await;
    assert_eq!(statuses[..2], [200, 200]);
    assert!(statuses[2..].contains(&429), "{statuses:?}");
    let refused = send_raw_from(local(1), gw.addr, &gw.request("t", "", &body)).await;
    assert_eq!(refused.header("retry-after"), Some("1"));
    let other = send_raw_from(local(3), gw.addr, &gw.request("t", "", &body)).await;
    assert_eq!(other.status, 200);
    assert!(rejections(&gw, "source_rate") >= 3);
    gw.stop().await;
}

async fn statuses_from(
    gw: &Running,
    from: IpAddr,
    extra: &str,
    body: &[u8],
    count: usize,
) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..count {
        let request = gw.request("t", extra, body);
        statuses.push(send_raw_from(from, gw.addr, &request).await.status);
    }
    statuses
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_the_source() {
    let config = GatewayConfig {
        source_requests_per_second: 1,
        source_burst: 1,
        trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
        ..quick_config()
    };
    let gw = Running::start(config).await;
    let body = status_only("ok");
    let proxy = local(1);
    // Two clients behind the proxy: one request each is within their own rate.
    let a = statuses_from(&gw, proxy, "X-Forwarded-For: 192.0.2.1\r\n", &body, 1).await;
    let b = statuses_from(&gw, proxy, "X-Forwarded-For: 192.0.2.2\r\n", &body, 1).await;
    assert_eq!((a, b), (vec![200], vec![200]));
    let again = statuses_from(&gw, proxy, "X-Forwarded-For: 192.0.2.1\r\n", &body, 3).await;
    assert!(again.contains(&429), "{again:?}");
    // An untrusted peer cannot pick its source with the header: each request names
    // another client, and all count against the peer.
    let mut spoofed = Vec::new();
    for i in 1..=4 {
        let header = format!("X-Forwarded-For: 198.51.100.{i}\r\n");
        let request = gw.request("t", &header, &body);
        spoofed.push(send_raw_from(local(4), gw.addr, &request).await.status);
    }
    assert_eq!(spoofed[0], 200);
    assert!(spoofed[1..].contains(&429), "{spoofed:?}");
    gw.stop().await;
}

#[tokio::test]
async fn a_callback_url_over_its_rate_gets_429_and_other_urls_do_not() {
    let config = GatewayConfig {
        token_requests_per_second: 1,
        token_burst: 2,
        ..quick_config()
    };
    let gw = Running::start(config).await;
    let body = status_only("ok");
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            send_raw(gw.addr, &gw.request("leaked", "", &body))
                .await
                .status,
        );
    }
    assert_eq!(statuses[..2], [200, 200]);
    assert!(statuses[2..].contains(&429), "{statuses:?}");
    let refused = statuses.iter().filter(|s| **s == 429).count();
    let other = send_raw(gw.addr, &gw.request("another", "", &body)).await;
    assert_eq!(other.status, 200);
    assert_eq!(rejections(&gw, "token_rate"), refused as u64);
    assert_eq!(
        gw.calls().len(),
        statuses.len() - refused + 1,
        "the refused requests reached no sink"
    );
    gw.stop().await;
}
