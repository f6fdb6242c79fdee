//! `herald-loadtest`: load generator for Herald.

#![forbid(unsafe_code)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use herald_loadtest::ews::{self, EwsLoad, Shape};
use herald_loadtest::push::{self, Providers, PushLoad};
use herald_loadtest::register::{self, RegisterLoad};
use herald_loadtest::run::{self, PushSink, RunOptions};
use herald_loadtest::scenario::Scenario;
use herald_loadtest::targets::{self, Target};
use herald_loadtest::{baseline, compare};

// The generator shares the machine with the node it measures: glibc's allocator spent a
// fifth of its CPU in lock waits (perf), time the node then could not use.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    Ews(EwsArgs),
    /// The same EWS load against a bare quick-xml baseline and against the node, and the
    /// ratio of their throughputs (needs --registrations).
    Compare(EwsArgs),
    /// Play Exchange for a fleet of registered devices at a fixed rate (a scenario file),
    /// check every badge the mock providers received, and report (exits non-zero when a
    /// badge or an answer is wrong).
    Run(RunArgs),
    /// Push through a node's sender to the mock APNs and FCM (accept-all, HTTP/2 + TLS on
    /// 127.0.0.1) and report pushes per second.
    Push {
        #[arg(long, value_enum, default_value_t = Providers::Both)]
        providers: Providers,
        #[arg(long, default_value_t = 100_000)]
        count: u64,
        /// Pushes in flight at once.
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        /// Distinct device tokens.
        #[arg(long, default_value_t = 10_000)]
        devices: u64,
        /// Validate like the real services (a JWT signature check per APNs request).
        #[arg(long)]
        validate: bool,
        /// HTTP/2 connections per APNs app.
        #[arg(long, default_value_t = 2)]
        apns_connections: usize,
        /// FCM messages per second allowed (the node's rate limit).
        #[arg(long, default_value_t = 1_000_000)]
        fcm_max_per_second: u32,
        #[arg(long, default_value_t = 300)]
        max_seconds: u64,
    },
    /// Serve the baseline (parse with quick-xml, answer OK, nothing else) until Ctrl-C.
    Baseline {
        #[arg(long, default_value = "127.0.0.1:8088")]
        listen: SocketAddr,
    },
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The scenario (TOML; see loadtest/scenarios/).
    #[arg(long)]
    scenario: std::path::PathBuf,
    /// A gateway address; repeat to spread the load over several nodes.
    #[arg(long, default_value = "127.0.0.1:8080")]
    gateway: Vec<SocketAddr>,
    /// gRPC endpoint used to register the fleet.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    grpc: String,
    /// API bearer token.
    #[arg(long, env = "HERALD_API_TOKEN")]
    token: String,
    /// The control API of the `herald-mock-push` the node pushes to.
    #[arg(long, default_value = "http://127.0.0.1:8445")]
    mock_control: String,
    /// Run the mock APNs and FCM in this process instead (accept-all), writing their files
    /// here and printing the `[[apps]]` to configure the node with; the run starts once the
    /// node's gRPC endpoint answers.
    #[arg(long, conflicts_with = "mock_control")]
    spawn_mocks: Option<std::path::PathBuf>,
    /// Keep-alive connections per gateway.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Stop sending after this many seconds whatever is left.
    #[arg(long, default_value_t = 600)]
    max_seconds: u64,
    /// Where report.json and report.svg are written.
    #[arg(long, default_value = "loadtest-report")]
    report: std::path::PathBuf,
}

#[derive(Args, Debug)]
struct EwsArgs {
    /// The gateway's address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    gateway: SocketAddr,
    /// Register this many registrations through --grpc first and spread the load over their
    /// callback URLs; 0: synthetic URLs (for a gateway with a null sink).
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
}

impl EwsArgs {
    async fn targets(&self) -> anyhow::Result<Vec<Target>> {
        if self.registrations == 0 {
            return Ok(targets::anonymous_targets(1024));
        }
        targets::register_targets(
            &self.grpc,
            &self.token,
            &self.apns_app,
            self.registrations,
            64,
        )
        .await
    }

    fn load(&self, targets: Vec<Target>) -> EwsLoad {
        EwsLoad {
            gateway: self.gateway,
            targets,
            shape: self.shape,
            count: self.count,
            connections: self.connections,
            rate: self.rate,
            max_duration: Duration::from_secs(self.max_seconds),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut out = std::io::stdout();
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
            writeln!(out, "register: {summary}")?;
            if summary.errors > 0 {
                anyhow::bail!("{} registrations failed", summary.errors);
            }
        }
        Command::Ews(args) => {
            let targets = args.targets().await?;
            let (summary, answers) = ews::run(args.load(targets)).await?;
            writeln!(out, "ews: {summary}")?;
            writeln!(out, "ews answers: {answers}")?;
            if summary.errors > 0 {
                anyhow::bail!("{} notifications were not answered OK", summary.errors);
            }
        }
        Command::Compare(args) => {
            anyhow::ensure!(
                args.registrations > 0,
                "compare needs --registrations: the node answers OK only for its own"
            );
            let targets = args.targets().await?;
            let load = args.load(targets.clone());
            let result = compare::run(load, args.gateway, targets).await?;
            writeln!(out, "baseline: {}", result.baseline)?;
            writeln!(out, "herald:   {}", result.herald)?;
            writeln!(out, "herald / baseline throughput: {:.2}", result.ratio())?;
            if result.herald.errors > 0 || result.baseline.errors > 0 {
                anyhow::bail!("some notifications were not answered OK");
            }
        }
        Command::Run(args) => {
            let scenario = Scenario::load(&args.scenario)?;
            let pushes = match &args.spawn_mocks {
                Some(dir) => {
                    let mocks = run::spawn_mocks(dir, &scenario, &mut out).await?;
                    run::wait_for(&args.grpc, Duration::from_secs(300)).await?;
                    PushSink::InProcess(mocks)
                }
                None => PushSink::control(&args.mock_control),
            };
            let options = RunOptions {
                scenario,
                gateways: args.gateway,
                grpc: args.grpc,
                token: args.token,
                connections: args.connections,
                seed: args.seed,
                max_duration: Duration::from_secs(args.max_seconds),
                pushes,
            };
            let report = run::run(options, &mut out).await?;
            report.write(&args.report)?;
            writeln!(out, "{report}")?;
            writeln!(
                out,
                "report: {}/report.json, {}/report.svg",
                args.report.display(),
                args.report.display()
            )?;
            if !report.correctness.passed {
                anyhow::bail!("the run's badges or answers were wrong");
            }
        }
        Command::Push {
            providers,
            count,
            concurrency,
            devices,
            validate,
            apns_connections,
            fcm_max_per_second,
            max_seconds,
        } => {
            let settings = herald_workers::DeliverySettings {
                apns_connections,
                fcm_max_per_second,
                apns_in_flight: concurrency.max(1),
                fcm_in_flight: concurrency.max(1),
                ..Default::default()
            };
            let (summary, (apns, fcm)) = push::run(PushLoad {
                providers,
                count,
                concurrency,
                devices,
                validate,
                settings,
                max_duration: Duration::from_secs(max_seconds),
            })
            .await?;
            writeln!(out, "push: {summary}")?;
            writeln!(
                out,
                "push: accepted by the mock APNs {apns}, by the mock FCM {fcm} (incl. 2 warm-up)"
            )?;
            if summary.errors > 0 {
                anyhow::bail!("{} pushes were not delivered", summary.errors);
            }
        }
        Command::Baseline { listen } => {
            let listener = tokio::net::TcpListener::bind(listen).await?;
            writeln!(out, "baseline on {}", listener.local_addr()?)?;
            baseline::serve(listener, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        }
    }
    Ok(())
}
