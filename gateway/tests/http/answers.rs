//! Routes, content types, body caps and timeouts, the decision table's answers, metrics.

use super::*;

#[tokio::test]
async fn a_fixture_is_answered_ok_in_soap_11_and_the_sink_sees_region_and_token() {
    let gw = Running::start(quick_config()).await;
    let answer = gw
        .post(&fixture("ews", "03-burst-created-newmail-modified.xml"))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.header("content-type"),
        Some("text/xml; charset=utf-8")
    );
    assert_eq!(
        answer.soap_status(),
        Some((SoapVersion::V11, "OK".to_owned()))
    );
    let calls = gw.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0, Callback::new("us-east-1", "tok3n"));
    let events = &calls[0].1.messages[0].notification.as_ref().unwrap().events;
    assert_eq!(events.len(), 3);
    gw.stop().await;
}

#[tokio::test]
async fn soap_12_is_answered_in_soap_12() {
    let gw = Running::start(quick_config()).await;
    let answer = post(
        gw.addr,
        "/ews/v1/eu-west-1/t",
        Some("application/soap+xml; charset=utf-8"),
        &fixture("ews-extra", "15-soap12.xml"),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("content-type"),
        Some("application/soap+xml; charset=utf-8")
    );
    assert_eq!(
        answer.soap_status(),
        Some((SoapVersion::V12, "OK".to_owned()))
    );
    gw.stop().await;
}

#[tokio::test]
async fn verdicts_become_the_decision_tables_answers() {
    let gw = Running::start(quick_config()).await;
    let unsubscribe = gw.post(&status_only("unsub-1")).await;
    assert_eq!(unsubscribe.status, 200);
    assert_eq!(
        unsubscribe.soap_status(),
        Some((SoapVersion::V11, "Unsubscribe".to_owned()))
    );
    let reject = gw.post(&status_only("reject-1")).await;
    assert_eq!(reject.status, 403);
    assert!(reject.body.is_empty(), "403 carries no body");
    let down = gw.post(&status_only("down-1")).await;
    assert_eq!(down.status, 503);
    assert!(down.soap_status().is_none());
    let metrics = gw.metrics_text();
    for line in [
        r#"herald_gateway_requests_total{status="200",answer="unsubscribe"} 1"#,
        r#"herald_gateway_requests_total{status="403",answer="none"} 1"#,
        r#"herald_gateway_requests_total{status="503",answer="none"} 1"#,
        r#"herald_gateway_messages_total{verdict="reject"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn only_post_on_the_ews_route_is_served() {
    let gw = Running::start(quick_config()).await;
    for method in ["GET", "PUT", "DELETE"] {
        let request = format!(
            "{method} /ews/v1/us-east-1/t HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let answer = send_raw(gw.addr, request.as_bytes()).await;
        assert_eq!(answer.status, 405, "{method}");
    }
    for path in [
        "/",
        "/ews/v1/us-east-1",
        "/ews/v1/us-east-1/t/extra",
        "/ews/v2/us-east-1/t",
        "/metrics",
    ] {
        let answer = post(gw.addr, path, Some("text/xml"), &status_only("ok")).await;
        assert_eq!(answer.status, 404, "{path}");
    }
    assert!(gw.calls().is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn content_types_are_checked() {
    let gw = Running::start(quick_config()).await;
    let body = status_only("ok");
    for ct in [
        None,
        Some("text/xml"),
        Some("TEXT/XML; charset=UTF-8"),
        Some("application/xml"),
        Some("application/soap+xml"),
    ] {
        let answer = post(gw.addr, "/ews/v1/us-east-1/t", ct, &body).await;
        assert_eq!(answer.status, 200, "{ct:?}");
    }
    let json = post(
        gw.addr,
        "/ews/v1/us-east-1/t",
        Some("application/json"),
        &fixture("ews", "m11-json-body.json"),
    )
    .await;
    assert_eq!(json.status, 415);
    let form = post(
        gw.addr,
        "/ews/v1/us-east-1/t",
        Some("application/x-www-form-urlencoded"),
        &body,
    )
    .await;
    assert_eq!(form.status, 415);
    let metrics = gw.metrics_text();
    assert!(metrics.contains(r#"herald_gateway_rejections_total{reason="content_type"} 2"#));
    gw.stop().await;
}

#[tokio::test]
async fn hostile_bodies_get_400_with_a_reason_and_reach_no_sink() {
    let gw = Running::start(quick_config()).await;
    let files = [
        "m01-truncated.xml",
        "m02-wrong-root-html.xml",
        "m05-billion-laughs.xml",
        "m06-xxe-external-entity.xml",
        "m07-wrong-namespace-https.xml",
        "m08-bad-values.xml",
        "m10-empty-body.xml",
    ];
    for name in files {
        let answer = gw.post(&fixture("ews", name)).await;
        assert_eq!(answer.status, 400, "{name}");
        assert!(
            answer.text().starts_with("rejected: "),
            "{name}: {}",
            answer.text()
        );
        assert_eq!(
            answer.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
    }
    assert!(gw.calls().is_empty());
    let metrics = gw.metrics_text();
    assert!(
        metrics.contains(r#"herald_gateway_rejections_total{reason="doctype"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("herald_gateway_parse_duration_seconds_count 7"),
        "{metrics}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_declared_length_over_the_cap_is_refused_before_the_body_is_read() {
    let config = GatewayConfig {
        max_body: 4096,
        ..quick_config()
    };
    let gw = Running::start(config).await;
    // No body byte is sent: the answer must come anyway.
    let text = send_head_and_wait(
        gw.addr,
        "POST /ews/v1/us-east-1/t HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: 10485760\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    gw.stop().await;
}

#[tokio::test]
async fn a_chunked_body_over_the_cap_is_cut_off_at_the_cap() {
    let config = GatewayConfig {
        max_body: 64 * 1024,
        ..quick_config()
    };
    let gw = Running::start(config).await;
    let mut request = b"POST /ews/v1/us-east-1/t HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let chunk = vec![b' '; 16 * 1024];
    for _ in 0..640 {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(&chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let answer = send_raw(gw.addr, &request).await;
    assert_eq!(answer.status, 413);
    let metrics = gw.metrics_text();
    assert!(metrics.contains(r#"herald_gateway_rejections_total{reason="body_too_large"} 1"#));
    gw.stop().await;
}

#[tokio::test]
async fn a_body_that_stalls_times_out() {
    let gw = Running::start(quick_config()).await;
    let text = send_head_and_wait(
        gw.addr,
        "POST /ews/v1/us-east-1/t HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: 1000\r\n\r\n<s:Envelope",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(gw.calls().is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn stalled_headers_close_the_connection() {
    let gw = Running::start(quick_config()).await;
    // Without the header timeout the server would wait forever and this would not return.
    send_head_and_wait(gw.addr, "POST /ews/v1/us-east-1/t HTTP/1.1\r\nHost: x\r\n").await;
    gw.stop().await;
}

#[tokio::test]
async fn oversized_generated_bodies_are_refused_and_the_server_stays_up() {
    let config = GatewayConfig {
        max_body: 1024 * 1024,
        ..quick_config()
    };
    let gw = Running::start(config).await;
    let mut whitespace = status_only("ok");
    let at = whitespace
        .windows(8)
        .position(|w| w == b"<s:Body>")
        .unwrap()
        + 8;
    whitespace.splice(at..at, std::iter::repeat_n(b' ', 10 * 1024 * 1024));
    assert_eq!(gw.post(&whitespace).await.status, 413);
    assert_eq!(
        gw.post(&with_nesting(100_000)).await.status,
        413,
        "1.1 MB is over a 1 MiB cap"
    );
    let answer = gw.post(&with_nesting(50_000)).await;
    assert_eq!(answer.status, 400);
    assert!(answer.text().contains("deeper"), "{}", answer.text());
    // Still serving.
    assert_eq!(gw.post(&status_only("ok")).await.status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn the_connection_cap_makes_new_clients_wait_for_a_free_slot() {
    let config = GatewayConfig {
        max_connections: 1,
        header_timeout: Duration::from_secs(30),
        ..quick_config()
    };
    let gw = Running::start(config).await;
    // An idle client takes the only slot.
    let idle = TcpStream::connect(gw.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let addr = gw.addr;
    let waiting = tokio::spawn(async move {
        post(
            addr,
            "/ews/v1/us-east-1/t",
            Some("text/xml"),
            &status_only("ok"),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "served while the only slot was taken"
    );
    drop(idle);
    let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served once the slot is free")
        .unwrap();
    assert_eq!(answer.status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn a_body_in_several_chunks_is_reassembled() {
    let gw = Running::start(quick_config()).await;
    let body = status_only("ok");
    let mut request = b"POST /ews/v1/us-east-1/t HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for part in body.chunks(body.len() / 3 + 1) {
        request.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        request.extend_from_slice(part);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let answer = send_raw(gw.addr, &request).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(gw.calls().len(), 1);
    gw.stop().await;
}
