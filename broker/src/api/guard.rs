//! The gRPC edge, one tower layer in front of every service: a call is authenticated from
//! its headers before its message is read or decoded — `herald.v1.Registrations` and
//! `herald.v1.Admin` with an API token, `herald.v1.Peer` with the peer secret — and each API
//! token's calls are held to `auth.requests_per_second`. Health and reflection are open.
//! Refusals are counted by service and reason (`herald_grpc_refused_total`).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::Either;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tonic::Status;
use tower::{Layer, Service};

use super::ApiTokens;
use crate::metrics::{GrpcRefusedLabels, Metrics};

/// What a call must present, by its service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Door {
    /// An API token: `Registrations`, `Admin`, and any other `herald.v1` service.
    Api,
    /// The peer secret: `Peer`, between the nodes of a deployment.
    Peer,
    /// Nothing: health checks and reflection.
    Open,
}

impl Door {
    fn of(path: &str) -> (Self, &'static str) {
        let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
        match service {
            "herald.v1.Peer" => (Self::Peer, "peer"),
            "herald.v1.Registrations" => (Self::Api, "registrations"),
            "herald.v1.Admin" => (Self::Api, "admin"),
            other if other.starts_with("herald.") => (Self::Api, "other"),
            _ => (Self::Open, "open"),
        }
    }
}

/// The checks, shared by every connection.
#[derive(Debug)]
struct Guard {
    api: ApiTokens,
    peer: ApiTokens,
    /// Calls per second per API token (keyed by the token's index).
    rates: Option<DefaultKeyedRateLimiter<usize>>,
    metrics: Arc<Metrics>,
}

impl Guard {
    fn admit(&self, path: &str, headers: &http::HeaderMap) -> Result<(), Status> {
        let (door, service) = Door::of(path);
        let refused = |reason: &'static str, status: Status| {
            self.metrics
                .grpc_refused
                .get_or_create(&GrpcRefusedLabels { service, reason })
                .inc();
            status
        };
        match door {
            Door::Open => Ok(()),
            Door::Peer if self.peer.is_empty() => Err(refused(
                "unauthenticated",
                Status::unauthenticated(
                    "this node has no cluster.peer_secret: it takes no peer calls",
                ),
            )),
            Door::Peer => self
                .peer
                .caller(headers)
                .map(|_| ())
                .map_err(|status| refused("unauthenticated", status)),
            Door::Api => {
                let caller = self
                    .api
                    .caller(headers)
                    .map_err(|status| refused("unauthenticated", status))?;
                let within = self
                    .rates
                    .as_ref()
                    .is_none_or(|rates| rates.check_key(&caller).is_ok());
                if within {
                    Ok(())
                } else {
                    Err(refused(
                        "rate",
                        Status::resource_exhausted(
                            "too many calls with this API token; retry later",
                        ),
                    ))
                }
            }
        }
    }

    /// Forgets API tokens idle long enough to be back at a full burst.
    fn forget_idle(&self) {
        if let Some(rates) = &self.rates {
            rates.retain_recent();
        }
    }
}

/// The layer for `tonic::transport::Server::builder().layer(…)`.
#[derive(Clone, Debug)]
pub struct GuardLayer {
    guard: Arc<Guard>,
}

impl GuardLayer {
    /// `per_second` and `burst` are each API token's call rate (0 per second: no limit).
    pub fn new(
        api: ApiTokens,
        peer_secret: &str,
        per_second: u32,
        burst: u32,
        metrics: Arc<Metrics>,
    ) -> Self {
        let peer = if peer_secret.is_empty() {
            ApiTokens::new(Vec::<String>::new())
        } else {
            ApiTokens::new([peer_secret])
        };
        let rates = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Self {
            guard: Arc::new(Guard {
                api,
                peer,
                rates,
                metrics,
            }),
        }
    }

    /// Forgets idle callers every `every`, until the returned task is aborted.
    pub fn spawn_forgetting(&self, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let guard = Arc::downgrade(&self.guard);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            loop {
                ticker.tick().await;
                let Some(guard) = guard.upgrade() else { return };
                guard.forget_idle();
            }
        })
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Guarded {
            inner,
            guard: self.guard.clone(),
        }
    }
}

/// A service behind the guard.
#[derive(Clone, Debug)]
pub struct Guarded<S> {
    inner: S,
    guard: Arc<Guard>,
}

impl<S, B> Service<http::Request<B>> for Guarded<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Either<
        tracing::instrument::Instrumented<S::Future>,
        std::future::Ready<Result<Self::Response, S::Error>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match self.guard.admit(request.uri().path(), request.headers()) {
            Ok(()) => {
                // Only an admitted call continues its caller's trace: an unauthenticated one
                // cannot have spans exported.
                let span = crate::telemetry::call_span(request.uri().path(), request.headers());
                let call = span.in_scope(|| self.inner.call(request));
                Either::Left(tracing::Instrument::instrument(call, span))
            }
            // The body is dropped unread.
            Err(status) => Either::Right(std::future::ready(Ok(status.into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", authorization.parse().unwrap());
        headers
    }

    fn layer(per_second: u32, burst: u32) -> GuardLayer {
        GuardLayer::new(
            ApiTokens::new(["api-token-one-0123456789", "api-token-two-0123456789"]),
            "peer-secret-0123456789",
            per_second,
            burst,
            Arc::new(Metrics::default()),
        )
    }

    #[test]
    fn each_service_takes_its_own_credential() {
        let guard = layer(0, 0).guard;
        let api = headers("Bearer api-token-one-0123456789");
        let peer = headers("Bearer peer-secret-0123456789");
        let register = "/herald.v1.Registrations/Register";
        assert!(guard.admit(register, &api).is_ok());
        assert!(guard.admit("/herald.v1.Admin/DrainNode", &api).is_ok());
        assert!(
            guard
                .admit("/herald.v1.Peer/ForwardNotification", &peer)
                .is_ok()
        );
        for (path, wrong) in [
            (register, &peer),
            ("/herald.v1.Peer/ForwardNotification", &api),
            ("/herald.v1.Unknown/Call", &peer),
            (register, &http::HeaderMap::new()),
        ] {
            let status = guard.admit(path, wrong).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{path}");
        }
        let health = "/grpc.health.v1.Health/Check";
        assert!(guard.admit(health, &http::HeaderMap::new()).is_ok());
    }

    #[test]
    fn each_api_token_is_held_to_its_rate() {
        let guard = layer(1, 2).guard;
        let one = headers("Bearer api-token-one-0123456789");
        let two = headers("Bearer api-token-two-0123456789");
        let path = "/herald.v1.Registrations/GetRegistration";
        assert!(guard.admit(path, &one).is_ok());
        assert!(guard.admit(path, &one).is_ok());
        let status = guard.admit(path, &one).unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(
            guard.admit(path, &two).is_ok(),
            "another caller is not held"
        );
        let text = guard.metrics.encode();
        assert!(
            text.contains(r#"herald_grpc_refused_total{service="registrations",reason="rate"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn a_node_without_a_peer_secret_takes_no_peer_calls() {
        let guard = GuardLayer::new(
            ApiTokens::new(["api-token-one-0123456789"]),
            "",
            0,
            0,
            Arc::new(Metrics::default()),
        )
        .guard;
        let status = guard
            .admit("/herald.v1.Peer/ForwardNotification", &headers("Bearer "))
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
    }
}
