//! `herald-loadtest`: the SRE load generator. It drives a Herald node through its public
//! interfaces only (gRPC and the EWS gateway), measures latency into HDR histograms from each request's
//! scheduled send time (so a slow server cannot hide its queueing), and stops by itself,
//! sending only to the addresses it is given.

#![forbid(unsafe_code)]

pub mod baseline;
pub mod compare;
pub mod ews;
pub mod exchange;
pub mod fleet;
pub mod push;
pub mod register;
pub mod report;
pub mod run;
pub mod scenario;
pub mod targets;
