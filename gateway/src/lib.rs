//! The Exchange-facing HTTP gateway (`POST /ews/v1/{home_region}/{token}`): it reads and
//! bounds the body, parses the EWS SOAP `SendNotification` envelope with a namespace-aware
//! streaming parser, hands the parsed notifications to a [`NotificationSink`] and answers
//! Exchange with the right SOAP status (protocol note §7).
//!
//! It depends on no other Herald crate: it knows nothing of registrations, actors, Redis or
//! push providers — only the sink trait it defines.

#![forbid(unsafe_code)]

mod answer;
mod config;
mod edge;
mod handler;
mod metrics;
pub mod model;
mod parse;
mod server;
mod sink;
#[cfg(feature = "testsuite")]
pub mod testsuite;
pub mod tls;

pub use answer::{SubscriptionStatus, soap_answer};
pub use config::GatewayConfig;
pub use metrics::{AnswerLabels, GatewayMetrics, ReasonLabels, RequestLabels, VerdictLabels};
pub use parse::{Limits, ParseError, Reason, parse};
pub use server::{Gateway, router, serve};
pub use sink::{AcceptAll, Admission, Callback, NotificationSink, Outcome, Verdict, combine};
