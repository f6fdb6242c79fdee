//! `herald-loadtest baseline`: the ceiling for the gateway (DESIGN.md §6) — a bare axum
//! server on the same route that reads the body, parses it with quick-xml's namespace-aware
//! reader (no checks, no extraction) and answers the SOAP `OK`. Nothing else.

use std::future::Future;
use std::io;

use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use quick_xml::NsReader;
use quick_xml::events::Event;
use tokio::net::TcpListener;

const OK: &str = concat!(
    r#"<?xml version="1.0" encoding="utf-8"?>"#,
    r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" "#,
    r#"xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages">"#,
    "<soap:Body><m:SendNotificationResult><m:SubscriptionStatus>OK</m:SubscriptionStatus>",
    "</m:SendNotificationResult></soap:Body></soap:Envelope>"
);

/// Whether `body` is well-formed enough for quick-xml to read to the end.
pub fn parses(body: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(body) else {
        return false;
    };
    let mut reader = NsReader::from_str(text);
    loop {
        match reader.read_resolved_event() {
            Ok((_, Event::Eof)) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
}

async fn notify(body: Bytes) -> Response {
    if parses(&body) {
        ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], OK).into_response()
    } else {
        StatusCode::BAD_REQUEST.into_response()
    }
}

/// Serves the baseline on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = Router::new().route("/ews/v1/{home_region}/{token}", post(notify));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
