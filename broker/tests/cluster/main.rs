//! The cluster with real processes: several `herald serve` nodes on one real Redis, killed
//! and paused with real signals. Exchange is told only OK or 503 for a live registration,
//! every accepted burst is pushed with its badge, and a node that lost a shard pushes
//! nothing for it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;
mod measure;
mod membership;
mod takeover;

use std::time::Duration;

use herald_broker::testsuite::{RedisCluster, RedisServer, eventually};

use harness::{Cluster, Device, Told, burst, heartbeat, post, post_until_ok, pushed, register};
