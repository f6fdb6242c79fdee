//! Who serves what, as this node last read it: the member table and the placement of every
//! shard over its eligible members. The lease keeper writes it after each heartbeat; the
//! router reads it to find a shard's owner without a round trip.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::membership::MemberView;
use crate::placement;
use crate::shard::{SHARD_COUNT, ShardId};

/// One reading of the member table, with the placement computed from it.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub view: MemberView,
    /// The ids of the members shards are placed on.
    pub eligible: Vec<String>,
    /// Each shard's owner by placement: a position in `eligible`.
    owners: Vec<Option<usize>>,
}

impl Snapshot {
    pub fn new(view: MemberView, member_ttl: Duration) -> Self {
        let eligible: Vec<String> = view
            .eligible(member_ttl)
            .into_iter()
            .map(|m| m.node_id.clone())
            .collect();
        let owners = placement::assignment(&eligible);
        Self {
            view,
            eligible,
            owners,
        }
    }

    /// The node placement gives `shard` to.
    pub fn owner(&self, shard: ShardId) -> Option<&str> {
        let index = (*self.owners.get(usize::from(shard.number()))?)?;
        self.eligible.get(index).map(String::as_str)
    }

    /// The shards placement gives `node_id`.
    pub fn shards_of<'a>(&'a self, node_id: &'a str) -> impl Iterator<Item = ShardId> + 'a {
        ShardId::all().filter(move |&shard| self.owner(shard) == Some(node_id))
    }

    /// The address `node_id` advertises, if it is a member.
    pub fn address(&self, node_id: &str) -> Option<&str> {
        self.view.member(node_id).map(|m| m.address.as_str())
    }
}

/// The latest [`Snapshot`].
#[derive(Debug, Default)]
pub struct Directory {
    current: RwLock<Arc<Snapshot>>,
}

impl Directory {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn update(&self, snapshot: Snapshot) {
        debug_assert!(
            snapshot.owners.is_empty() || snapshot.owners.len() == usize::from(SHARD_COUNT)
        );
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::Member;

    fn member(id: &str) -> Member {
        Member {
            node_id: id.into(),
            incarnation: "i1".into(),
            region: "us-east-1".into(),
            address: format!("{id}:50051"),
            ready: true,
            draining: false,
            shards_owned: 0,
            live_actors: 0,
            heartbeat_ms: 1_000,
        }
    }

    #[test]
    fn every_shard_has_one_eligible_owner_and_a_draining_member_has_none() {
        let mut draining = member("c");
        draining.draining = true;
        let view = MemberView {
            now_ms: 1_500,
            members: vec![member("a"), member("b"), draining],
        };
        let snapshot = Snapshot::new(view, Duration::from_secs(5));
        assert_eq!(snapshot.eligible, ["a", "b"]);
        let (a, b) = (
            snapshot.shards_of("a").count(),
            snapshot.shards_of("b").count(),
        );
        assert_eq!(a + b, usize::from(SHARD_COUNT));
        assert!(a > 400 && b > 400, "{a} / {b}");
        assert_eq!(snapshot.shards_of("c").count(), 0);
        assert_eq!(snapshot.address("b"), Some("b:50051"));
        let empty = Directory::default().snapshot();
        assert_eq!(empty.owner(ShardId::new(0).unwrap()), None);
    }
}
