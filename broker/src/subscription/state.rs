//! Applying one parsed notification to a registration (protocol note §5, §8): duplicate
//! detection first, then the gap check, the `TimeStamp` guard, the Inbox count, new mail and
//! the burst to flush. Pure: the caller persists the record and acts on [`Applied`].

use herald_gateway::model::{EventKind, Notification};
use xxhash_rust::xxh3::xxh3_64;

use crate::domain::{Burst, RegistrationRecord, UnixMillis};

/// What applying a notification did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// A redelivery of a notification already applied: nothing changed.
    pub duplicate: bool,
    /// Older than what was already applied (a replay): nothing changed but liveness.
    pub stale: bool,
    /// `PreviousWatermark` was not the last watermark seen: at least one notification was
    /// missed. Counted, never a reason to drop.
    pub gap: bool,
    /// Events in the notification.
    pub events: usize,
    /// `NewMailEvent`s applied.
    pub new_mail: u32,
    /// An Inbox `UnreadCount` was applied.
    pub inbox_count: bool,
}

impl Applied {
    /// Whether the notification gives the device something to hear about.
    pub fn wants_flush(&self) -> bool {
        !self.duplicate && !self.stale && (self.inbox_count || self.new_mail > 0)
    }
}

/// The redelivery key of a notification: its previous and last watermarks. `None` for a
/// notification without watermarks, or one holding heartbeats only (they need no dedupe).
pub fn dedupe_key(n: &Notification) -> Option<u64> {
    if n.events.iter().all(|e| e.kind == EventKind::Status) {
        return None;
    }
    let (previous, last) = (n.previous_watermark.as_deref(), n.last_watermark());
    if previous.is_none() && last.is_none() {
        return None;
    }
    let joined = format!("{}\u{0}{}", previous.unwrap_or(""), last.unwrap_or(""));
    Some(xxh3_64(joined.as_bytes()))
}

/// Applies `n`, accepted at `now`, to `record`.
pub fn apply(record: &mut RegistrationRecord, n: &Notification, now: UnixMillis) -> Applied {
    let mut applied = Applied {
        events: n.events.len(),
        ..Applied::default()
    };
    let key = dedupe_key(n);
    if key.is_some_and(|k| record.progress.recent.contains(&k)) {
        applied.duplicate = true;
        return applied;
    }
    applied.gap = matches!(
        (&n.previous_watermark, &record.last_watermark),
        (Some(previous), Some(last)) if previous != last
    );
    let newest = n
        .events
        .iter()
        .filter_map(|e| e.timestamp)
        .map(|t| t.unix_seconds)
        .max();
    if let (Some(newest), Some(applied_newest)) = (newest, record.progress.newest_event)
        && newest < applied_newest
    {
        applied.stale = true;
        return applied;
    }

    learn_inbox(record, n);
    if let Some(inbox) = &record.inbox_folder_id
        && let Some(count) = n.last_unread_count(inbox)
    {
        record.progress.inbox_unread = Some(count);
        applied.inbox_count = true;
    }
    applied.new_mail = n
        .events
        .iter()
        .filter(|e| e.kind == EventKind::NewMail)
        .count()
        .try_into()
        .unwrap_or(u32::MAX);

    if let Some(watermark) = n.last_watermark() {
        record.last_watermark = Some(watermark.to_owned());
    }
    if let Some(newest) = newest {
        record.progress.newest_event = Some(newest);
    }
    if let Some(key) = key {
        record.progress.remember(key);
    }
    if applied.wants_flush() {
        extend_burst(
            record.progress.burst.get_or_insert(Burst {
                first_at: now,
                last_at: now,
                new_mail: 0,
                events: 0,
                more_events: false,
                announce: false,
            }),
            &applied,
            now,
        );
    }
    if let Some(burst) = record.progress.burst.as_mut() {
        burst.more_events = n.more_events;
    }
    applied
}

/// Without a registered Inbox, the parent of a `NewMailEvent` is the Inbox (§8).
fn learn_inbox(record: &mut RegistrationRecord, n: &Notification) {
    if record.inbox_folder_id.is_none() {
        record.inbox_folder_id = n
            .events
            .iter()
            .find(|e| e.kind == EventKind::NewMail)
            .and_then(|e| e.parent_folder_id.clone());
    }
}

fn extend_burst(burst: &mut Burst, applied: &Applied, now: UnixMillis) {
    burst.last_at = now;
    burst.new_mail = burst.new_mail.saturating_add(applied.new_mail);
    burst.events = burst
        .events
        .saturating_add(u32::try_from(applied.events).unwrap_or(u32::MAX));
}

#[cfg(test)]
mod tests;
