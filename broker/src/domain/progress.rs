//! Where a registration's subscription stands between notifications: the last Inbox count,
//! the keys of recent notifications (to recognise Exchange's redeliveries), the newest event
//! time applied, and the burst waiting to be flushed. It is stored with the registration, so
//! an actor rebuilt from the store — after passivation or a crash — carries on exactly.

use super::registration::UnixMillis;

/// How many recent notification keys are kept for duplicate detection.
pub const RECENT_KEYS: usize = 8;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The last Inbox `UnreadCount` applied (an absolute count).
    pub inbox_unread: Option<u32>,
    /// Keys of the last notifications applied, oldest first, at most [`RECENT_KEYS`].
    pub recent: Vec<u64>,
    /// The newest event `TimeStamp` applied, in Unix seconds.
    pub newest_event: Option<i64>,
    /// Events accepted and not yet flushed to the device.
    pub burst: Option<Burst>,
}

/// A burst of events waiting for its flush.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Burst {
    /// When its first notification was accepted.
    pub first_at: UnixMillis,
    /// When its latest notification was accepted.
    pub last_at: UnixMillis,
    /// `NewMailEvent`s in the burst.
    pub new_mail: u32,
    /// Events in the burst, of every kind.
    pub events: u32,
    /// The latest notification said more pages follow.
    pub more_events: bool,
    /// The device must hear its badge whatever it was last pushed: the registration moved
    /// to it, or another registration left it (the push that set what it shows may be
    /// recorded on a registration that is gone).
    pub announce: bool,
}

impl Progress {
    pub(crate) fn remember(&mut self, key: u64) {
        if self.recent.len() == RECENT_KEYS {
            self.recent.remove(0);
        }
        self.recent.push(key);
    }
}
