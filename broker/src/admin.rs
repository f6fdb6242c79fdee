//! The admin HTTP listener: `/healthz` (the process runs), `/readyz` (it can serve: it has
//! started, the store answers and it is not shutting down), `/metrics` (Prometheus text).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::domain::RegState;
use crate::metrics::{Metrics, StateLabels, StoreLabels};
use crate::store::RegistrationStore;

/// How long a readiness or metrics probe waits for the store.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Where a node is in its life, as readiness sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Listeners are up, but which homes this node serves is not known yet: a request
    /// now would be answered 503.
    Starting,
    Serving,
    /// A shutdown has begun.
    Stopping,
}

#[derive(Clone, Debug)]
pub struct AdminState {
    pub store: Arc<dyn RegistrationStore>,
    pub metrics: Arc<Metrics>,
    /// Where the node is in its life: ready only while it serves.
    pub phase: tokio::sync::watch::Receiver<Phase>,
    /// The shards this node holds: the registrations gauge counts theirs, so that summing
    /// it over a cluster's nodes gives the region's total.
    pub ownership: Arc<herald_cluster::Ownership>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<AdminState>) -> Response {
    match readiness(&state, true).await {
        Ok(why) => (StatusCode::OK, why).into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    }
}

/// Whether the node can serve now, and why: what `/readyz` answers and `herald_ready` says.
/// A store that does not answer counts as a store error with `count_errors` (the probes;
/// not the scrapes, whose number depends on how many Prometheus servers there are).
async fn readiness(state: &AdminState, count_errors: bool) -> Result<String, String> {
    let phase = *state.phase.borrow();
    let not_ready = match phase {
        Phase::Starting => Some("not ready: starting (checking which homes it serves)\n"),
        Phase::Stopping => Some("not ready: shutting down\n"),
        Phase::Serving => None,
    };
    if let Some(why) = not_ready {
        return Err(why.to_owned());
    }
    match tokio::time::timeout(PROBE_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Ok(format!("ready ({} store)\n", state.store.kind())),
        outcome => {
            if count_errors {
                state
                    .metrics
                    .store_errors
                    .get_or_create(&StoreLabels { operation: "ping" })
                    .inc();
            }
            let why = match outcome {
                Ok(Err(err)) => err.to_string(),
                _ => "no answer within 1s".to_owned(),
            };
            Err(format!("not ready: {} store: {why}\n", state.store.kind()))
        }
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let held: Vec<herald_cluster::ShardId> = state
        .ownership
        .held()
        .into_iter()
        .map(|(shard, _)| shard)
        .collect();
    // Both wait on the store: at once, so a slow store costs a scrape one timeout.
    let (ready, counts) = tokio::join!(
        readiness(&state, false),
        tokio::time::timeout(PROBE_TIMEOUT, state.store.count_by_state_in(&held))
    );
    state.metrics.ready.set(i64::from(ready.is_ok()));
    match counts {
        Ok(Ok(counts)) => {
            for s in RegState::ALL {
                state
                    .metrics
                    .registrations
                    .get_or_create(&StateLabels { state: s.as_str() })
                    .set(counts.get(s));
            }
        }
        // The gauges keep their last values; the failure is counted.
        _ => {
            state
                .metrics
                .store_errors
                .get_or_create(&StoreLabels { operation: "count" })
                .inc();
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}
