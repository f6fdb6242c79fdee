//! `herald-mock-push`: the mock APNs and FCM on their own, for SREs and load tests. It
//! writes the files a node needs (the CA to trust, the APNs test key, an FCM
//! service-account file), prints the `[[apps]]` to configure, and serves a control API.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use herald_workers::mock::{MockApnsOptions, MockFcmOptions, MockProviders, control};

// The mocks share the machine with the node under load: a lock-free allocator keeps their
// CPU share small.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Mock APNs and FCM servers (127.0.0.1 only) with a control API"
)]
struct Args {
    /// Where the CA, the APNs key and the service-account file are written.
    #[arg(long, default_value = "herald-mocks")]
    dir: PathBuf,
    /// Mock APNs port (HTTP/2 over TLS); 0: any free port.
    #[arg(long, default_value_t = 2197)]
    apns_port: u16,
    /// Mock FCM port (HTTPS); 0: any free port.
    #[arg(long, default_value_t = 8443)]
    fcm_port: u16,
    /// OAuth2 token endpoint port (plain HTTP); 0: any free port.
    #[arg(long, default_value_t = 8444)]
    token_port: u16,
    /// Control API port (plain HTTP).
    #[arg(long, default_value_t = 8445)]
    control_port: u16,
    /// Accept every well-formed push without checking credentials.
    #[arg(long)]
    accept_all: bool,
    /// Count pushes without keeping them (long load tests).
    #[arg(long)]
    no_record: bool,
    /// Provider tokens older than this are refused as expired.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    max_token_age: Duration,
    /// The bundle id of the printed `[[apps]]` (Android: `<app>.android`).
    #[arg(long, default_value = "com.example.mail")]
    app: String,
    /// Apps printed per platform: `<app>`, `<app>.2`, … (as `herald-loadtest run` scenarios
    /// name them).
    #[arg(long, default_value_t = 1)]
    apps_per_platform: usize,
    #[arg(long, default_value = "example-mail")]
    fcm_project: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("herald-mock-push: {message}");
    ExitCode::FAILURE
}

async fn run(args: Args) -> Result<(), String> {
    let apns = MockApnsOptions {
        port: args.apns_port,
        accept_all: args.accept_all,
        record: !args.no_record,
        max_token_age: args.max_token_age,
        ..MockApnsOptions::default()
    };
    let fcm = MockFcmOptions {
        port: args.fcm_port,
        token_port: args.token_port,
        accept_all: args.accept_all,
        record: !args.no_record,
        ..MockFcmOptions::default()
    };
    let providers = MockProviders::start(&args.dir, apns, fcm)
        .await
        .map_err(|e| e.to_string())?;
    let numbered = |base: &str, i: usize| match i {
        0 => base.to_owned(),
        i => format!("{base}.{}", i + 1),
    };
    let per_platform = args.apps_per_platform.max(1);
    let ios: Vec<String> = (0..per_platform).map(|i| numbered(&args.app, i)).collect();
    let android: Vec<String> = (0..per_platform)
        .map(|i| numbered(&format!("{}.android", args.app), i))
        .collect();
    let apps = providers
        .apps(&ios, &android, &args.fcm_project)
        .map_err(|e| e.to_string())?;
    let control_addr = SocketAddr::from(([127, 0, 0, 1], args.control_port));
    let listener = tokio::net::TcpListener::bind(control_addr)
        .await
        .map_err(|e| format!("cannot listen on {control_addr}: {e}"))?;
    let toml = MockProviders::apps_toml(&apps).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout();
    writeln!(
        out,
        "# mock APNs {}, mock FCM {} (tokens {}), control http://{control_addr}{}\n# add to the node's configuration:\n{toml}",
        providers.apns.url(),
        providers.fcm.url(),
        providers.fcm.token_uri(),
        if args.accept_all { ", accept-all" } else { "" },
    )
    .map_err(|e| e.to_string())?;
    let router = control::router(Arc::new(providers));
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| e.to_string())
}
