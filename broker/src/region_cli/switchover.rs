//! The planned move, while the home's primary answers: nothing is lost, and never do two
//! copies take writes at once.
//!
//! 1. The old primary's clients' writes are held (`CLIENT PAUSE WRITE`).
//! 2. This copy, in sync with the old primary (link up, same replication history), catches
//!    up with the old primary's offset.
//! 3. The old primary is made to follow this copy: from then on it refuses writes.
//! 4. This copy is promoted; the old primary's clients are let go (their writes are refused:
//!    it is a replica).
//!
//! A failure before step 3 changes nothing. After it, no copy takes writes until the
//! command is run again (it then finds the copies following each other, and promotes).

use std::time::{Duration, Instant};

use herald_broker::store::{CopyAdmin, StoreError};

use super::POLL;

/// How long the old primary's writes are held: well above the steps' Redis timeouts
/// together, so that the pause cannot lapse before the old primary follows this copy.
const PAUSE: Duration = Duration::from_secs(30);
/// Longest this copy is waited for to catch up.
const CATCH_UP: Duration = Duration::from_secs(10);

pub(super) async fn run(
    copy: &CopyAdmin,
    old: &CopyAdmin,
    advertised: &(String, u16),
) -> Result<(), String> {
    let ours = copy.replication().await.map_err(|e| e.to_string())?;
    let theirs = old.replication().await.map_err(|e| e.to_string())?;
    if !ours.link_up || ours.replid.is_none() || ours.replid != theirs.replid {
        return Err(
            "this copy is not in sync with the primary yet (its link is down or it is still loading the primary's data); nothing changed: run again once `INFO replication` shows master_link_status:up"
                .to_owned(),
        );
    }
    old.pause_writes(PAUSE).await.map_err(|e| e.to_string())?;
    if let Err(e) = catch_up_and_demote(copy, old, advertised).await {
        let _ = old.unpause().await;
        return Err(format!("{e}; nothing changed"));
    }
    let promoted = copy.make_primary().await;
    let _ = old.unpause().await;
    promoted.map_err(|e| {
        format!(
            "the old primary follows this copy, but this copy cannot be promoted: {e}; no copy takes writes until this command is run again"
        )
    })
}

/// Steps 2 and 3: `Ok` once the old primary follows this copy.
async fn catch_up_and_demote(
    copy: &CopyAdmin,
    old: &CopyAdmin,
    advertised: &(String, u16),
) -> Result<(), String> {
    let caught_up = async {
        let target = old.replication().await?.offset;
        let deadline = Instant::now() + CATCH_UP;
        while copy.replication().await?.offset < target {
            if Instant::now() > deadline {
                return Ok(false);
            }
            tokio::time::sleep(POLL / 10).await;
        }
        Ok::<_, StoreError>(true)
    };
    match caught_up.await {
        Ok(true) => {}
        Ok(false) => return Err("this copy did not catch up with the primary in time".to_owned()),
        Err(e) => return Err(format!("cannot compare the copies' offsets: {e}")),
    }
    match old.follow(&advertised.0, advertised.1).await {
        Ok(()) => Ok(()),
        // The command may have been applied even though its answer did not come.
        Err(e) => match old.replication().await {
            Ok(state) if !state.primary => Ok(()),
            _ => Err(format!(
                "the primary cannot be made to follow this copy: {e}"
            )),
        },
    }
}
