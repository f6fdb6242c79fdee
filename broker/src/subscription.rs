//! Subscription actors: one per registration, on the node that owns its shard. The pure
//! cores are [`state`] (apply a notification) and [`flush`] (when and what to push); the
//! actors around them do the I/O and the timers.

pub mod flush;
pub mod state;
