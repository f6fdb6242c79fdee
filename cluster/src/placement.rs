//! Which node owns a shard: rendezvous (highest random weight) hashing of the shard over the
//! live, ready, non-draining members of the region. Pure: every node computes the same
//! owner from the same members, with no coordination; a member leaving moves only its own
//! shards, and a member joining takes about `1/N` of them, from every other member alike.

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::shard::ShardId;

/// The weight of `node` for `shard`; the heaviest node owns the shard.
fn weight(node: &str, shard: ShardId) -> u64 {
    xxh3_64_with_seed(node.as_bytes(), u64::from(shard.number()))
}

/// The owner of `shard` among `nodes` (ids of the eligible members); `None` when there is
/// none. Ties (equal weights) go to the smaller id, so the answer never depends on order.
pub fn owner<S: AsRef<str>>(shard: ShardId, nodes: &[S]) -> Option<&S> {
    owner_index(shard, nodes).map(|i| &nodes[i])
}

/// Every shard's owner among `nodes`, indexed by shard number: the owner's position in
/// `nodes`.
pub fn assignment<S: AsRef<str>>(nodes: &[S]) -> Vec<Option<usize>> {
    ShardId::all()
        .map(|shard| owner_index(shard, nodes))
        .collect()
}

fn owner_index<S: AsRef<str>>(shard: ShardId, nodes: &[S]) -> Option<usize> {
    (0..nodes.len()).max_by(|&a, &b| {
        let (a, b) = (nodes[a].as_ref(), nodes[b].as_ref());
        weight(a, shard)
            .cmp(&weight(b, shard))
            .then_with(|| b.cmp(a))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::SHARD_COUNT;
    use proptest::prelude::*;

    fn ids(names: &[String]) -> Vec<&str> {
        names.iter().map(String::as_str).collect()
    }

    /// Each shard's owner, as an id.
    fn owners<'a>(nodes: &[&'a str]) -> Vec<Option<&'a str>> {
        ShardId::all()
            .map(|shard| owner(shard, nodes).copied())
            .collect()
    }

    fn members() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::btree_set("[a-z]{1,8}-[0-9]{1,3}", 2..9)
            .prop_map(|set| set.into_iter().collect())
    }

    #[test]
    fn nobody_owns_a_shard_of_an_empty_cluster_and_one_node_owns_every_shard() {
        let none: [&str; 0] = [];
        assert_eq!(owner(ShardId::new(5).unwrap(), &none), None);
        let alone = ["use1-a"];
        assert!(assignment(&alone).iter().all(|o| *o == Some(0)));
    }

    proptest! {
        #[test]
        fn the_owner_does_not_depend_on_the_order_of_the_members(names in members()) {
            let forward = ids(&names);
            let mut backward = forward.clone();
            backward.reverse();
            prop_assert_eq!(owners(&forward), owners(&backward));
        }

        #[test]
        fn a_member_leaving_moves_only_its_own_shards(names in members(), leaving in any::<prop::sample::Index>()) {
            let before = ids(&names);
            let gone = before[leaving.index(before.len())];
            let after: Vec<&str> = before.iter().copied().filter(|n| *n != gone).collect();
            for (was, is) in owners(&before).into_iter().zip(owners(&after)) {
                if was != Some(gone) {
                    prop_assert_eq!(was, is);
                } else {
                    prop_assert_ne!(is, Some(gone));
                }
            }
        }

        #[test]
        fn a_member_joining_takes_about_its_share_from_the_others(names in members()) {
            let (joining, before) = names.split_last().unwrap();
            let before = ids(before);
            let mut after = before.clone();
            after.push(joining.as_str());
            let mut taken = 0usize;
            for (was, is) in owners(&before).into_iter().zip(owners(&after)) {
                if is == Some(joining.as_str()) {
                    taken += 1;
                } else {
                    prop_assert_eq!(was, is, "only shards the new member takes move");
                }
            }
            // Binomial(1024, 1/n): within six standard deviations of its mean.
            let n = after.len() as f64;
            let mean = f64::from(SHARD_COUNT) / n;
            let sd = (f64::from(SHARD_COUNT) * (1.0 / n) * (1.0 - 1.0 / n)).sqrt();
            prop_assert!((taken as f64 - mean).abs() <= 6.0 * sd, "took {} of {}, expected ~{:.0}", taken, SHARD_COUNT, mean);
        }
    }
}
