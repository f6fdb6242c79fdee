//! The node's index of live subscription actors: each one's record as it last read or wrote
//! it, so a request finds its registration without a store read or a message to the actor.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ractor::ActorId;

use crate::domain::{RegistrationId, RegistrationRecord};

/// The live actors' records, by registration.
#[derive(Debug, Default)]
pub struct LiveIndex {
    entries: Mutex<HashMap<RegistrationId, Entry>>,
}

#[derive(Debug)]
struct Entry {
    actor: ActorId,
    record: Arc<RegistrationRecord>,
}

impl LiveIndex {
    /// Publishes `actor`'s record: a starting actor lists itself (`list`); a running one
    /// only replaces its own entry, so one that was stopped, or replaced by a successor,
    /// does not come back.
    pub(super) fn publish(&self, actor: ActorId, record: &Arc<RegistrationRecord>, list: bool) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let entry = Entry {
            actor,
            record: record.clone(),
        };
        match entries.get_mut(&record.id) {
            Some(current) if list || current.actor == actor => *current = entry,
            None if list => {
                entries.insert(record.id.clone(), entry);
            }
            _ => {}
        }
    }

    /// Removes `actor`'s entry for `id` (a successor's stays).
    pub(super) fn unlist(&self, id: &RegistrationId, actor: ActorId) {
        if let Ok(mut entries) = self.entries.lock()
            && entries.get(id).is_some_and(|entry| entry.actor == actor)
        {
            entries.remove(id);
        }
    }

    /// The record of `id`'s live actor, if one is listed.
    pub(super) fn record(&self, id: &RegistrationId) -> Option<Arc<RegistrationRecord>> {
        Some(self.entries.lock().ok()?.get(id)?.record.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(badge: u32) -> Arc<RegistrationRecord> {
        Arc::new(RegistrationRecord {
            badge,
            ..RegistrationRecord::sample(1)
        })
    }

    #[test]
    fn an_actor_lists_itself_and_replaces_only_its_own_entry() {
        let index = LiveIndex::default();
        let (first, second) = (ActorId::Local(1), ActorId::Local(2));
        let id = record(0).id.clone();
        assert!(index.record(&id).is_none());

        index.publish(first, &record(1), true);
        index.publish(first, &record(2), false);
        assert_eq!(index.record(&id).map(|r| r.badge), Some(2));

        // A successor lists itself; its stopping predecessor neither overwrites nor
        // removes its entry.
        index.publish(second, &record(3), true);
        index.publish(first, &record(4), false);
        index.unlist(&id, first);
        assert_eq!(index.record(&id).map(|r| r.badge), Some(3));

        // Once unlisted, a late write of the stopped actor does not bring it back.
        index.unlist(&id, second);
        index.publish(second, &record(5), false);
        assert!(index.record(&id).is_none());
    }
}
