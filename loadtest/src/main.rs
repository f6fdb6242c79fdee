//! `herald-loadtest`: load generator for Herald.

#![forbid(unsafe_code)]

use std::io::Write as _;
use std::time::Duration;

use clap::{Parser, Subcommand};
use herald_loadtest::ews::{self, EwsLoad, Shape};
use herald_loadtest::register::{self, RegisterLoad};
use herald_loadtest::targets;

#[derive(Parser, Debug)]
#[command(name = "herald-loadtest", version, about = "Load generator for Herald")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create registrations through the gRPC API and report throughput and latency.
    Register {
        /// gRPC endpoint of the node.
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        grpc: String,
        /// API bearer token.
        #[arg(long, env = "HERALD_API_TOKEN")]
        token: String,
        /// A configured APNs app id.
        #[arg(long, default_value = "com.example.mail")]
        apns_app: String,
        #[arg(long, default_value_t = 10_000)]
        count: u64,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Arrivals per second (open loop); omit for closed loop at --concurrency.
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Stop after this many seconds whatever is left.
        #[arg(long, default_value_t = 300)]
        max_seconds: u64,
    },
    /// POST EWS notifications to a gateway and report throughput, latency and answers.
    Ews {
        /// The gateway's address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        gateway: std::net::SocketAddr,
        /// Register this many registrations through --grpc first and spread the load over
        /// their callback URLs; 0: synthetic URLs (for a gateway with a null sink).
        #[arg(long, default_value_t = 0)]
        registrations: usize,
        /// gRPC endpoint used to register.
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        grpc: String,
        /// API bearer token used to register.
        #[arg(long, env = "HERALD_API_TOKEN", default_value = "")]
        token: String,
        /// A configured APNs app id.
        #[arg(long, default_value = "com.example.mail")]
        apns_app: String,
        #[arg(long, value_enum, default_value_t = Shape::Burst)]
        shape: Shape,
        #[arg(long, default_value_t = 100_000)]
        count: u64,
        /// Keep-alive connections, one request in flight on each.
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Arrivals per second (open loop); omit for closed loop.
        #[arg(long)]
        rate: Option<f64>,
        /// Stop after this many seconds whatever is left.
        #[arg(long, default_value_t = 300)]
        max_seconds: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Register {
            grpc,
            token,
            apns_app,
            count,
            concurrency,
            rate,
            connections,
            max_seconds,
        } => {
            let summary = register::run(RegisterLoad {
                endpoint: grpc,
                token,
                apns_app,
                count,
                concurrency,
                rate,
                connections,
                max_duration: Duration::from_secs(max_seconds),
            })
            .await?;
            writeln!(std::io::stdout(), "register: {summary}")?;
            if summary.errors > 0 {
                anyhow::bail!("{} registrations failed", summary.errors);
            }
        }
        Command::Ews {
            gateway,
            registrations,
            grpc,
            token,
            apns_app,
            shape,
            count,
            connections,
            rate,
            max_seconds,
        } => {
            let targets = if registrations == 0 {
                targets::anonymous_targets(1024)
            } else {
                targets::register_targets(&grpc, &token, &apns_app, registrations, 64).await?
            };
            let (summary, answers) = ews::run(EwsLoad {
                gateway,
                targets,
                shape,
                count,
                connections,
                rate,
                max_duration: Duration::from_secs(max_seconds),
            })
            .await?;
            writeln!(std::io::stdout(), "ews: {summary}")?;
            writeln!(std::io::stdout(), "ews answers: {answers}")?;
            if summary.errors > 0 {
                anyhow::bail!("{} notifications were not answered OK", summary.errors);
            }
        }
    }
    Ok(())
}
