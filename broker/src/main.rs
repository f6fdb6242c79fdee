//! `herald`: runs a node, checks a configuration, runs an operator's command, or probes a
//! node's health. Thin: flags, configuration, telemetry, the node, signals, exit codes.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use herald_broker::api::ApiTokens;
use herald_broker::config::Config;
use herald_broker::node::{self, RunningNode};
use herald_broker::telemetry;

mod cluster_cli;
mod demo;
mod probe;
mod region_cli;

// glibc's allocator spent a quarter of the node's CPU under EWS load (perf); mimalloc is
// faster with many small, short-lived allocations across threads.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for a configuration that cannot be used (EX_USAGE).
const EXIT_CONFIG: u8 = 64;
/// Exit code for a failure while running.
const EXIT_FAILURE: u8 = 1;

#[derive(Parser, Debug)]
#[command(
    name = "herald",
    version,
    about = "Herald: EWS push notifications to APNs and FCM"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a node until SIGTERM or SIGINT.
    Serve {
        /// TOML configuration file; without it, embedded defaults (in-memory store).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// A self-contained tour: a node, two phones, a scripted Exchange day, the pushes.
    Demo,
    /// Validate a configuration: exit 0, or 64 with every problem listed.
    CheckConfig {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// The region's cluster, through any of its nodes.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
        /// The configuration of a node (its gRPC address and API token are used).
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        /// The gRPC address (`host:port`) of the node to ask; default: the configuration's.
        #[arg(long, global = true)]
        node: Option<String>,
        /// An API token; default: `HERALD_API_TOKEN`, else the configuration's first.
        #[arg(long, global = true)]
        token: Option<String>,
    },
    /// GET URL (plain HTTP) and exit 0 on a 2xx answer, else 1: a health check for images
    /// without a shell (`herald probe http://127.0.0.1:9090/readyz`).
    Probe {
        url: String,
        /// Longest wait for the connection and for the answer, each.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Failover and failback between regions.
    Region {
        #[command(subcommand)]
        action: RegionAction,
        /// The configuration of a node of this region (its Redis copies, gRPC address and
        /// API token are used).
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        /// An API token; default: `HERALD_API_TOKEN`, else the configuration's first.
        #[arg(long, global = true)]
        token: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum RegionAction {
    /// Make this region's copy of HOME its primary, raise HOME's shard epochs, and wait
    /// until this region's nodes serve HOME.
    Promote {
        /// The home region to serve here.
        home: String,
        /// Another copy of HOME (`host:port`) to follow the promoted one: the third
        /// region's, after a region loss. Repeatable.
        #[arg(long = "replica")]
        replicas: Vec<String>,
        /// `host:port` by which the other copies reach this one; default: its URL's.
        #[arg(long)]
        advertise: Option<String>,
        /// Longest wait for this region's nodes to serve HOME.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        wait: std::time::Duration,
        /// Promote without the old primary even if not every other copy of HOME is named
        /// or can be made to follow, or this copy never synced: only once the old primary
        /// is known to be stopped.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ClusterAction {
    /// Every member: alive, draining, shards owned, live actors, last heartbeat.
    Status {
        /// The home whose cluster to show (one this region serves); default: the node's
        /// own region's.
        #[arg(long)]
        region: Option<String>,
    },
    /// Move every shard off NODE and stop it taking new ones (before a deploy).
    Drain {
        /// The node id.
        node_id: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env: HashMap<String, String> = std::env::vars().collect();
    match cli.command {
        Command::CheckConfig { config } => check_config(config, &env),
        Command::Demo => run_demo(),
        Command::Probe { url, timeout } => match probe::get(&url, timeout) {
            Ok(status) if (200..300).contains(&status) => ExitCode::SUCCESS,
            Ok(status) => fail(&format!("{url} answered {status}"), EXIT_FAILURE),
            Err(why) => fail(&format!("{url}: {why}"), EXIT_FAILURE),
        },
        Command::Cluster {
            action,
            config,
            node,
            token,
        } => {
            let config = match load(config, &env) {
                Ok(config) => config,
                Err(code) => return code,
            };
            run_cluster(
                &config,
                action,
                node,
                token,
                env.get("HERALD_API_TOKEN").cloned(),
            )
        }
        Command::Region {
            action,
            config,
            token,
        } => {
            let config = match load(config, &env) {
                Ok(config) => config,
                Err(code) => return code,
            };
            run_region(&config, action, token, env.get("HERALD_API_TOKEN").cloned())
        }
        Command::Serve { config } => {
            let config = match load(config, &env) {
                Ok(config) => config,
                Err(code) => return code,
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(err) => return fail(&format!("cannot start the runtime: {err}"), EXIT_FAILURE),
            };
            runtime.block_on(serve(config))
        }
    }
}

fn run_demo() -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the runtime: {e}"), EXIT_FAILURE),
    };
    let mut out = std::io::stdout();
    match runtime.block_on(demo::run(&mut out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("demo failed: {e:#}"), EXIT_FAILURE),
    }
}

fn run_cluster(
    config: &Config,
    action: ClusterAction,
    node: Option<String>,
    token: Option<String>,
    env_token: Option<String>,
) -> ExitCode {
    run_operator(config, node, token, env_token, |target| async move {
        let out = &mut std::io::stdout();
        match action {
            ClusterAction::Status { region } => cluster_cli::status(&target, region, out).await,
            ClusterAction::Drain { node_id } => cluster_cli::drain(&target, node_id, out).await,
        }
    })
}

fn run_region(
    config: &Config,
    action: RegionAction,
    token: Option<String>,
    env_token: Option<String>,
) -> ExitCode {
    let RegionAction::Promote {
        home,
        replicas,
        advertise,
        wait,
        force,
    } = action;
    let request = region_cli::Promote {
        home,
        replicas,
        advertise,
        wait,
        force,
    };
    run_operator(config, None, token, env_token, |target| async move {
        region_cli::promote(config, &target, request, &mut std::io::stdout()).await
    })
}

/// Runs an operator's command against a node (`--node`, else the configuration's), on a
/// runtime of its own, printing to stdout: exit 0, 64 for a configuration that cannot be
/// used (an error starting "config: "), else 1.
fn run_operator<F, Fut>(
    config: &Config,
    node: Option<String>,
    token: Option<String>,
    env_token: Option<String>,
    command: F,
) -> ExitCode
where
    F: FnOnce(cluster_cli::Target) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let target = match cluster_cli::Target::new(config, node, token, env_token) {
        Ok(target) => target,
        Err(e) => return fail(&e, EXIT_CONFIG),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the runtime: {e}"), EXIT_FAILURE),
    };
    match runtime.block_on(command(target)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.starts_with("config: ") => fail(&e, EXIT_CONFIG),
        Err(e) => fail(&e, EXIT_FAILURE),
    }
}

fn load(path: Option<PathBuf>, env: &HashMap<String, String>) -> Result<Config, ExitCode> {
    Config::load(path.as_deref(), env).map_err(|err| fail(&err.to_string(), EXIT_CONFIG))
}

fn check_config(path: Option<PathBuf>, env: &HashMap<String, String>) -> ExitCode {
    let config = match load(path, env) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let problems = config.problems();
    if problems.0.is_empty() {
        let _ = writeln!(std::io::stdout(), "configuration ok");
        ExitCode::SUCCESS
    } else {
        fail(
            &format!(
                "configuration has {} problem(s):\n{problems}",
                problems.0.len()
            ),
            EXIT_CONFIG,
        )
    }
}

fn fail(message: &str, code: u8) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "herald: {message}");
    ExitCode::from(code)
}

async fn serve(config: Config) -> ExitCode {
    let _telemetry = match telemetry::init(&config) {
        Ok(guard) => guard,
        Err(err) => return fail(&err.to_string(), EXIT_CONFIG),
    };
    let tokens = match api_tokens(&config) {
        Ok(tokens) => tokens,
        Err(message) => return fail(&message, EXIT_CONFIG),
    };
    let store = match node::build_store(&config) {
        Ok(store) => store,
        Err(err) => return fail(&err.to_string(), EXIT_CONFIG),
    };
    // Before the node starts: a SIGTERM that arrives once it is up must be ours to handle.
    let mut signals = match Signals::install() {
        Ok(signals) => signals,
        Err(err) => return fail(&format!("cannot handle signals: {err}"), EXIT_FAILURE),
    };
    let mut node = match RunningNode::start(&config, store, tokens).await {
        Ok(node) => node,
        Err(err) => return fail(&err.to_string(), EXIT_FAILURE),
    };
    let outcome = tokio::select! {
        signal = signals.recv() => {
            tracing::info!(signal, "shutting down");
            Ok(())
        }
        failure = node.failed() => Err(failure),
    };
    let drained = node.shutdown(config.node.shutdown_grace).await;
    match outcome.and(drained) {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(error = %err, "node failed");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// The configured API tokens; with none configured, a one-off token for this run, printed
/// once so a local user can call the API.
fn api_tokens(config: &Config) -> Result<ApiTokens, String> {
    let tokens = config.api_tokens().map_err(|e| e.to_string())?;
    if !tokens.is_empty() {
        return Ok(ApiTokens::new(tokens));
    }
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for an API token: {e}"))?;
    let token = hex::encode(bytes);
    tracing::warn!("no auth.api_tokens configured: generated a one-off API token for this run");
    let _ = writeln!(std::io::stdout(), "API token for this run: {token}");
    Ok(ApiTokens::new([token]))
}

/// SIGTERM and SIGINT, handled from the moment they are installed.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The name of the next signal received.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
