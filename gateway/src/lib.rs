//! The Exchange-facing HTTP gateway (`POST /ews/v1/{home_region}/{token}`): it reads and
//! bounds the body, parses the EWS SOAP `SendNotification` envelope with a namespace-aware
//! streaming parser, hands the parsed notifications to a `NotificationSink` and answers
//! Exchange with the right SOAP status.
//!
//! It depends on no other Herald crate: it knows nothing of registrations, actors, Redis or
//! push providers — only the sink trait it defines.

#![forbid(unsafe_code)]

mod config;

pub use config::GatewayConfig;
