//! Promoting without the old primary, which does not answer: it may be lost, or alive and
//! out of reach. So that it cannot write (nor its nodes push) once this copy
//! starts to:
//!
//! 1. every other region's copy of the home (`--replica`) is made to follow this copy
//!    first: the old primary loses the replicas that let it write
//!    (`min-replicas-to-write`) — except the copy this one replicates through, if any,
//!    which is re-pointed after the promotion (its link to the old primary is down);
//! 2. this copy's link to the old primary must be down (else it is alive: promote from a
//!    host that reaches it), and both that link and the re-pointed copies must have been
//!    away from it for `min-replicas-max-lag` + `cluster.lease_ttl` + `cluster.heartbeat` —
//!    by then it refuses writes and its nodes trust no lease;
//! 3. this copy is promoted as it is: what the old primary had not yet replicated is lost.
//!
//! `--force` promotes even when the other copies are not all named, a named one cannot be
//! re-pointed, or this copy never synced: the operator then answers for the old primary
//! being stopped.

use std::io::Write;
use std::time::Instant;

use herald_broker::config::Config;
use herald_broker::store::CopyAdmin;

use super::{POLL, follow, say};

pub(super) struct Plan<'a> {
    pub(super) config: &'a Config,
    pub(super) home: &'a str,
    pub(super) copy: &'a CopyAdmin,
    /// The last server on the way to the old primary that answered.
    pub(super) via: &'a CopyAdmin,
    pub(super) lost: &'a (String, u16),
    pub(super) advertised: &'a (String, u16),
    pub(super) replicas: &'a [(String, u16)],
    pub(super) force: bool,
}

pub(super) async fn run(plan: Plan<'_>, out: &mut impl Write) -> Result<(), String> {
    let Plan {
        config,
        home,
        copy,
        via,
        lost,
        advertised,
        replicas,
        force,
    } = plan;
    let others = config.cluster.regions.len().saturating_sub(2);
    if replicas.len() < others && !force {
        return Err(format!(
            "{home}: the primary {}:{} does not answer; name every other region's copy of {home} with --replica ({others} expected), so that the old primary, if it is alive and reaches one, stops writing — or pass --force if it is stopped",
            lost.0, lost.1
        ));
    }
    if copy.min_replicas_to_write().await == 0 {
        say(
            out,
            format!(
                "{home}: warning: min-replicas-to-write is 0 on this copy: if the old primary has the same setting and is alive, it goes on writing"
            ),
        );
    }
    let upstream = (!std::ptr::eq(via, copy)).then(|| via.address()).flatten();
    for (host, port) in replicas {
        // The copy this one follows is re-pointed after the promotion: now it would close
        // a loop. Its link to the old primary must be down anyway (checked below), so it
        // keeps nothing writing there.
        if upstream.as_ref() == Some(&(host.clone(), *port)) {
            continue;
        }
        if let Err(e) = follow(copy, host, *port, advertised).await {
            if !force {
                return Err(format!(
                    "{home}: cannot make {host}:{port} follow this copy ({e}): it may still let the old primary write; nothing changed (--force if the old primary is stopped)"
                ));
            }
            say(
                out,
                format!("{home}: warning: cannot make {host}:{port} follow this copy: {e}"),
            );
        }
    }
    let repointed = Instant::now();
    let bound = copy.max_lag().await + config.cluster.lease_ttl + config.cluster.heartbeat;
    let mut told = false;
    loop {
        let state = via.replication().await.map_err(|e| e.to_string())?;
        if state.link_up {
            return Err(format!(
                "{home}: {} still replicates from {}:{}: the primary is alive; promote from a host that reaches it (a switchover loses nothing), or stop it first",
                if std::ptr::eq(via, copy) {
                    "this copy".to_owned()
                } else {
                    "a copy on the way".to_owned()
                },
                lost.0,
                lost.1
            ));
        }
        let down_for = match state.link_down_for {
            Some(down_for) => down_for,
            None if force => bound,
            None => {
                return Err(format!(
                    "{home}: the copy that followed {}:{} never synced with it since it started: it may hold old data (--force to promote it anyway)",
                    lost.0, lost.1
                ));
            }
        };
        let since_repointed = repointed.elapsed();
        if down_for >= bound && since_repointed >= bound {
            break;
        }
        if !told {
            told = true;
            say(
                out,
                format!(
                    "{home}: {}:{} has been gone {} s; waiting until {} s (min-replicas-max-lag + lease_ttl + heartbeat), when it has stopped writing and its nodes pushing if it is alive",
                    lost.0,
                    lost.1,
                    down_for.as_secs(),
                    bound.as_secs_f64().ceil()
                ),
            );
        }
        tokio::time::sleep(POLL * 5).await;
    }
    copy.make_primary().await.map_err(|e| e.to_string())
}
