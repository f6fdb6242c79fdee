//! `herald-loadtest compare`: the same EWS load against the baseline (started here) and
//! against a Herald node, one after the other in one run, and the ratio of their throughputs
//! (DESIGN.md §6 asks the node for at least half of the baseline).

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::baseline;
use crate::ews::{self, EwsLoad};
use crate::report::Summary;
use crate::targets::{Target, anonymous_targets};

/// Both runs and the ratio.
#[derive(Debug)]
pub struct Comparison {
    pub baseline: Summary,
    pub herald: Summary,
}

impl Comparison {
    /// Herald's throughput as a share of the baseline's.
    pub fn ratio(&self) -> f64 {
        self.herald.throughput() / self.baseline.throughput().max(f64::EPSILON)
    }
}

/// Runs `load` against an in-process baseline, then against `herald` with `targets`.
pub async fn run(
    load: EwsLoad,
    herald: SocketAddr,
    targets: Vec<Target>,
) -> anyhow::Result<Comparison> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let baseline_addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(baseline::serve(listener, async {
        let _ = stopped.await;
    }));
    let against_baseline = EwsLoad {
        gateway: baseline_addr,
        targets: anonymous_targets(load.targets.len().max(1)),
        ..load.clone()
    };
    let (baseline, _) = ews::run(against_baseline).await?;
    let _ = stop.send(());
    server.await??;
    let (herald, _) = ews::run(EwsLoad {
        gateway: herald,
        targets,
        ..load
    })
    .await?;
    Ok(Comparison { baseline, herald })
}
