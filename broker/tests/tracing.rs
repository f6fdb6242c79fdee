//! Traces, as an OTLP collector receives them: a notification that arrives at one node of a
//! cluster and is forwarded to the node holding its shard is one trace — the gateway's
//! span, the peer call, the actor's apply and write, the burst's flush and the push to the
//! (mock) provider, each the child of the one before — exported with the node's
//! `service.name`; a gRPC caller's W3C `traceparent` is continued; the log lines written
//! while a notification is handled name its trace.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_broker::testsuite::{
    LogCapture, RedisServer, TestNode, as_alice, authed, callback_path, eventually, fixture,
    split_between, test_config, token_held_by,
};
use herald_workers::mock::MockApnsOptions;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;

/// An OTLP/gRPC trace collector that keeps what it receives.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
    resources: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for batch in request.into_inner().resource_spans {
            let attributes = batch
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(s) => Some((kv.key.clone(), s.clone())),
                    _ => None,
                })
                .collect();
            self.resources.lock().unwrap().push(attributes);
            let spans = batch.scope_spans.into_iter().flat_map(|s| s.spans);
            self.spans.lock().unwrap().extend(spans);
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    async fn start(&self) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming),
        );
        addr
    }

    fn named(&self, name: &str) -> Vec<Span> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.name == name)
            .cloned()
            .collect()
    }
}

/// The names of `span`'s parent, its parent's, and so on up to its trace's root.
fn ancestors(spans: &[Span], span: &Span) -> Vec<String> {
    let mut names = Vec::new();
    let mut parent = span.parent_span_id.clone();
    while let Some(up) = spans
        .iter()
        .find(|s| !parent.is_empty() && s.span_id == parent && s.trace_id == span.trace_id)
    {
        names.push(up.name.clone());
        parent = up.parent_span_id.clone();
    }
    names
}

const CALLER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";
const STRANGER_TRACE: &str = "00000000000000000000000000000001";

// Several threads: the trace exporter's thread waits on the runtime that runs its client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_notification_is_one_trace_from_the_gateway_to_the_provider() {
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let redis = RedisServer::start();
    let mut config = test_config(Some(redis.url()));
    config.node.id = "node-a".to_owned();
    config.telemetry.otlp_endpoint = Some(format!("http://{endpoint}"));
    config.telemetry.log_filter = "info,herald_gateway=debug".to_owned();
    let logs = LogCapture::default();
    let writer = logs.clone();
    let telemetry =
        herald_broker::telemetry::init_with(&config, move || writer.clone(), false).unwrap();

    let a = TestNode::with_providers(&config, MockApnsOptions::default()).await;
    let mut config_b = config.clone();
    config_b.node.id = "node-b".to_owned();
    let b = TestNode::with_providers(&config_b, MockApnsOptions::default()).await;
    split_between(&a, &b).await;
    let device_token = token_held_by(&b);
    // A caller without credentials is refused and leaves no span, whatever trace it names.
    let mut stranger = tonic::Request::new(as_alice(device_token.clone()));
    let stranger_traceparent = format!("00-{STRANGER_TRACE}-{CALLER_SPAN}-01");
    stranger
        .metadata_mut()
        .insert("traceparent", stranger_traceparent.parse().unwrap());
    let refused = a.client().await.register(stranger).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    // The caller's trace is continued by the node it calls.
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let mut request = authed(as_alice(device_token.clone()));
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    let registration = a
        .client()
        .await
        .register(request)
        .await
        .unwrap()
        .into_inner();

    // Exchange's notification arrives at A; B holds the shard, applies it and pushes.
    let path = callback_path(&registration.callback_url);
    let answer = a
        .post_ews(
            &path,
            &fixture("ews", "03-burst-created-newmail-modified.xml"),
        )
        .await;
    assert_eq!(answer.soap_status().unwrap().1, "OK", "{}", answer.text());
    eventually(Duration::from_secs(10), || async {
        (!b.mocks().apns.pushes().is_empty()).then_some(())
    })
    .await;
    b.stop().await;
    a.stop().await;
    // Dropping the guard exports what is left; it waits on the runtime's other thread.
    tokio::task::spawn_blocking(move || drop(telemetry))
        .await
        .unwrap();

    let spans = collector.spans.lock().unwrap().clone();
    assert!(
        collector.named("Actor").is_empty(),
        "ractor's actor-lifetime spans are not exported"
    );
    let roots = collector.named("ews.notification");
    assert_eq!(roots.len(), 1, "one notification, one root");
    let root = &roots[0];
    assert!(
        root.parent_span_id.is_empty(),
        "the gateway's span is the root"
    );
    // A forwards to B over Peer: B's apply is in the gateway span's trace, under B's call.
    let apply = spans
        .iter()
        .find(|s| s.name == "subscription.apply" && s.trace_id == root.trace_id)
        .expect("the apply is in the notification's trace");
    assert_eq!(
        ancestors(&spans, apply).last().map(String::as_str),
        Some("ews.notification")
    );
    assert!(ancestors(&spans, apply).contains(&"grpc.request".to_owned()));
    assert!(
        spans
            .iter()
            .any(|s| s.name == "store.write" && s.parent_span_id == apply.span_id),
        "the durable write is the apply's child"
    );
    let flush = spans
        .iter()
        .find(|s| s.name == "subscription.flush" && s.parent_span_id == apply.span_id)
        .expect("the burst's flush continues the notification's trace");
    assert_eq!(flush.trace_id, root.trace_id);
    let push = spans
        .iter()
        .find(|s| s.name == "push.send" && s.parent_span_id == flush.span_id)
        .expect("the provider request is the flush's child");
    assert_eq!(push.trace_id, root.trace_id);

    // The registration's call continued the caller's trace.
    let caller_trace = hex::decode(CALLER_TRACE).unwrap();
    let caller_span = hex::decode(CALLER_SPAN).unwrap();
    assert!(
        spans.iter().any(|s| s.name == "grpc.request"
            && s.trace_id == caller_trace
            && s.parent_span_id == caller_span),
        "no span continues the caller's traceparent"
    );

    let stranger_trace = hex::decode(STRANGER_TRACE).unwrap();
    assert!(
        spans.iter().all(|s| s.trace_id != stranger_trace),
        "an unauthenticated call had a span exported"
    );

    let resources = collector.resources.lock().unwrap().clone();
    assert!(
        resources
            .iter()
            .all(|r| r.get("service.name").map(String::as_str) == Some("herald"))
    );
    assert!(
        resources
            .iter()
            .any(|r| r.get("service.instance.id").map(String::as_str) == Some("node-a"))
    );

    // The gateway's log line for the answer names the trace.
    let trace_id = hex::encode(&root.trace_id);
    let text = logs.text();
    let answered = text
        .lines()
        .find(|l| l.contains("answered Exchange"))
        .unwrap_or_else(|| panic!("no answer logged:\n{text}"));
    assert!(
        answered.contains(&format!("trace_id={trace_id}")),
        "{answered}"
    );
}
