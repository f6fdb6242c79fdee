//! The gateway's sink for a node: a notification goes to the stack of the home its
//! callback URL names, if this node serves that home now; else it is answered 503, so
//! that Exchange retries — by then DNS sends it to the region that serves the home.
//! Forwarding it to that region instead would rely on this region's replica of the home's
//! membership, which lags, and on a cross-region call inside Exchange's timeout; a quick
//! 503 is what Exchange handles best.

use std::sync::Arc;

use herald_gateway::model::SendNotification;
use herald_gateway::{Admission, Callback, NotificationSink, Verdict};

use super::{HomeStack, Homes};
use crate::ews_sink::Admitted;
use crate::metrics::{HomeLabels, Metrics};

#[derive(Clone, Debug)]
pub struct HomesSink {
    homes: Arc<Homes>,
    metrics: Arc<Metrics>,
}

impl HomesSink {
    pub fn new(homes: Arc<Homes>, metrics: Arc<Metrics>) -> Self {
        Self { homes, metrics }
    }
}

impl NotificationSink for HomesSink {
    type Admitted = (Arc<HomeStack>, Admitted);

    async fn admit(&self, callback: &Callback) -> Admission<Self::Admitted> {
        // Called inside the gateway's `ews.notification` span.
        let span = tracing::Span::current();
        crate::telemetry::stamp_trace_id(&span);
        let home = callback.home_region();
        let Some(stack) = self.homes.served(home) else {
            let known = self.homes.slot(home).is_some();
            self.metrics
                .ews_unserved_home
                .get_or_create(&HomeLabels {
                    home: if known {
                        home.to_owned()
                    } else {
                        "other".to_owned()
                    },
                })
                .inc();
            tracing::debug!(home = %home.escape_debug(), "a notification for a home not served here: 503");
            return Admission::Unavailable;
        };
        span.record("home", home);
        match stack.sink.admit(callback).await {
            Admission::Known(admitted) => Admission::Known((stack, admitted)),
            Admission::Unknown => Admission::Unknown,
            Admission::Unavailable => Admission::Unavailable,
        }
    }

    async fn deliver(
        &self,
        (stack, admitted): Self::Admitted,
        request: SendNotification,
    ) -> Vec<Verdict> {
        stack.sink.deliver(admitted, request).await
    }
}
