//! Membership: the nodes of a region's cluster, each heartbeating a row of the member
//! table (Orleans-style). A row not refreshed for `cluster.member_ttl` belongs to a dead
//! node. Times are the table's own clock (Redis `TIME`), so the nodes' clocks need not
//! agree.

use std::time::Duration;

use async_trait::async_trait;

/// One node's row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub node_id: String,
    /// The process writing the row: a restarted node is a new incarnation, and an old one
    /// leaving never removes its successor's row.
    pub incarnation: String,
    pub region: String,
    /// The gRPC address peers reach it at (`cluster.advertise`).
    pub address: String,
    /// It takes requests (its listeners are up and it is not stopping).
    pub ready: bool,
    /// It gives its shards away and takes none (`DrainNode`, or stopping).
    pub draining: bool,
    pub shards_owned: u32,
    pub live_actors: u64,
    /// When the row was last written, in the table's clock (ms since the Unix epoch); set
    /// by the table, ignored on write.
    pub heartbeat_ms: u64,
}

/// The member table as read at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberView {
    /// The table's clock when it was read (ms since the Unix epoch).
    pub now_ms: u64,
    /// Every row, ordered by node id.
    pub members: Vec<Member>,
}

impl MemberView {
    /// Whether `member` heartbeat within `ttl` of this view.
    pub fn alive(&self, member: &Member, ttl: Duration) -> bool {
        let ttl = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.now_ms.saturating_sub(member.heartbeat_ms) < ttl
    }

    /// The members shards are placed on: alive, ready and not draining, by node id.
    pub fn eligible(&self, ttl: Duration) -> Vec<&Member> {
        self.members
            .iter()
            .filter(|m| m.ready && !m.draining && self.alive(m, ttl))
            .collect()
    }

    pub fn member(&self, node_id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.node_id == node_id)
    }
}

/// Why the member or lease table could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("cluster table: {0}")]
pub struct TableError(pub String);

/// Where the member rows live.
#[async_trait]
pub trait MemberTable: Send + Sync + std::fmt::Debug + 'static {
    /// Writes `me` (its heartbeat time is the table's clock) and reads every row, in one
    /// round trip.
    async fn heartbeat(&self, me: &Member) -> Result<MemberView, TableError>;

    /// Reads every row.
    async fn members(&self) -> Result<MemberView, TableError>;

    /// Removes `node_id`'s row if `incarnation` wrote it (the node is leaving).
    async fn leave(&self, node_id: &str, incarnation: &str) -> Result<(), TableError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, heartbeat_ms: u64, ready: bool, draining: bool) -> Member {
        Member {
            node_id: id.into(),
            incarnation: "i1".into(),
            region: "us-east-1".into(),
            address: "127.0.0.1:1".into(),
            ready,
            draining,
            shards_owned: 0,
            live_actors: 0,
            heartbeat_ms,
        }
    }

    #[test]
    fn only_live_ready_members_that_do_not_drain_get_shards() {
        let view = MemberView {
            now_ms: 10_000,
            members: vec![
                member("a", 9_000, true, false),
                member("b", 4_000, true, false),
                member("c", 9_500, false, false),
                member("d", 9_900, true, true),
                member("e", 10_000, true, false),
            ],
        };
        let ids: Vec<&str> = view
            .eligible(Duration::from_secs(5))
            .iter()
            .map(|m| m.node_id.as_str())
            .collect();
        assert_eq!(ids, ["a", "e"]);
        assert!(!view.alive(&view.members[1], Duration::from_secs(5)));
        assert!(view.alive(&view.members[1], Duration::from_secs(7)));
    }
}
