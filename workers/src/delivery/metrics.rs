//! Delivery metrics, registered into the node's registry. Labels come from closed sets and
//! the configured apps; raw provider reasons go to the log, not to labels.

use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::Provider;

/// One app's state now.
#[derive(Clone, Debug)]
pub(crate) struct AppState {
    pub(crate) app: String,
    pub(crate) paused: bool,
    pub(crate) circuit_open: bool,
}

/// Every app's state now.
pub(crate) type StateReader = Box<dyn Fn() -> Vec<AppState> + Send + Sync>;

/// A gauge family of 0/1 per app: its name, help, and which state it shows.
type Flag = (&'static str, &'static str, fn(&AppState) -> bool);

/// The apps' pause and circuit state, read at each scrape from the delivery that
/// registers its reader (a metrics registry outlives none of it: the reader holds the
/// delivery's apps weakly).
#[derive(Clone, Default)]
pub struct AppStates(Arc<OnceLock<StateReader>>);

impl std::fmt::Debug for AppStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppStates")
            .field("read", &self.0.get().is_some())
            .finish()
    }
}

impl AppStates {
    /// Where the states come from; the first delivery to register is the one read.
    pub(crate) fn read_from(&self, reader: StateReader) {
        let _ = self.0.set(reader);
    }
}

impl Collector for AppStates {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(read) = self.0.get() else {
            return Ok(());
        };
        let states = read();
        let families: [Flag; 2] = [
            (
                "herald_push_app_pause_active",
                "1 while the app is paused (its provider refused its credentials), else 0",
                |state| state.paused,
            ),
            (
                "herald_push_circuit_open",
                "1 while the app's circuit is open (its provider is failing), else 0",
                |state| state.circuit_open,
            ),
        ];
        for (name, help, value) in families {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for state in &states {
                let gauge = ConstGauge::new(i64::from(value(state)));
                let labels = AppLabels {
                    app: state.app.clone(),
                };
                gauge.encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnswerLabels {
    pub provider: &'static str,
    pub app: String,
    /// The classified answer: `delivered`, `token_dead`, `retry`, `refresh_auth`,
    /// `auth_throttled`, `pause_app`, `drop`, `bug`, `token_refused`.
    pub verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabels {
    pub app: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub app: String,
    /// What a refused token was taken for: `dead`, `suspect` (kept, retried), `spike` (the
    /// app paused).
    pub judgement: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: &'static str,
}

/// Cheap to clone: every metric is shared.
#[derive(Clone, Debug)]
pub struct DeliveryMetrics {
    pub answers: Family<AnswerLabels, Counter>,
    pub held_back: Family<AppLabels, Counter>,
    pub circuit_opened: Family<AppLabels, Counter>,
    pub app_paused: Family<AppLabels, Counter>,
    pub token_refusals: Family<RefusalLabels, Counter>,
    pub in_flight: Family<ProviderLabels, Gauge>,
    pub seconds: Family<ProviderLabels, Histogram>,
    /// Each app's pause and circuit, now.
    pub app_states: AppStates,
}

impl Default for DeliveryMetrics {
    fn default() -> Self {
        Self {
            answers: Family::default(),
            held_back: Family::default(),
            circuit_opened: Family::default(),
            app_paused: Family::default(),
            token_refusals: Family::default(),
            in_flight: Family::default(),
            // 1 ms … ~16 s.
            seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 15))
            }),
            app_states: AppStates::default(),
        }
    }
}

impl DeliveryMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "herald_push_answers",
            "Provider answers, by provider, app and what they mean",
            self.answers.clone(),
        );
        registry.register(
            "herald_push_held_back",
            "Pushes not sent now (app circuit open, app paused, no delivery slot free) and retried later",
            self.held_back.clone(),
        );
        registry.register(
            "herald_push_circuit_opened",
            "Times an app's circuit opened on a provider failure storm",
            self.circuit_opened.clone(),
        );
        registry.register(
            "herald_push_app_paused",
            "Times an app was paused because the provider refused its credentials",
            self.app_paused.clone(),
        );
        registry.register(
            "herald_push_token_refusals",
            "Tokens a provider refused as not for this app (BadDeviceToken, DeviceTokenNotForTopic, SENDER_ID_MISMATCH), by what they were taken for",
            self.token_refusals.clone(),
        );
        registry.register(
            "herald_push_in_flight",
            "Pushes waiting for a provider answer",
            self.in_flight.clone(),
        );
        registry.register(
            "herald_push_seconds",
            "Time from taking a provider budget slot to the classified answer",
            self.seconds.clone(),
        );
        registry.register_collector(Box::new(self.app_states.clone()));
    }
}

/// One more in `family` for `app`.
pub(crate) fn count_for_app(family: &Family<AppLabels, Counter>, app: &str) {
    family
        .get_or_create(&AppLabels {
            app: app.to_owned(),
        })
        .inc();
}

pub(crate) fn provider_label(provider: Provider) -> &'static str {
    match provider {
        Provider::Apns => "apns",
        Provider::Fcm => "fcm",
    }
}
