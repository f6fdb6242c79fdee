//! What a mock has seen: the pushes it accepted (when it records them), how many, and its
//! error answers by status and reason.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use super::script::Reply;

#[derive(Debug)]
pub(crate) struct Record<T> {
    keep: bool,
    seen: Mutex<Seen<T>>,
}

#[derive(Debug)]
struct Seen<T> {
    pushes: Vec<T>,
    accepted: u64,
    /// Error answers by `"<status> <reason>"`.
    refused: HashMap<String, u64>,
}

impl<T> Default for Seen<T> {
    fn default() -> Self {
        Self {
            pushes: Vec::new(),
            accepted: 0,
            refused: HashMap::new(),
        }
    }
}

impl<T: Clone> Record<T> {
    /// `keep`: keep every accepted push; else count them only.
    pub(crate) fn new(keep: bool) -> Self {
        Self {
            keep,
            seen: Mutex::new(Seen::default()),
        }
    }

    /// Counts (and keeps) an accepted push; how many were accepted with it.
    pub(crate) fn accept(&self, push: T) -> u64 {
        let mut seen = self.lock();
        seen.accepted += 1;
        if self.keep {
            seen.pushes.push(push);
        }
        seen.accepted
    }

    pub(crate) fn refuse(&self, reply: &Reply) {
        *self
            .lock()
            .refused
            .entry(format!("{} {}", reply.status, reply.reason))
            .or_default() += 1;
    }

    pub(crate) fn pushes(&self) -> Vec<T> {
        self.lock().pushes.clone()
    }

    pub(crate) fn accepted(&self) -> u64 {
        self.lock().accepted
    }

    pub(crate) fn refused(&self) -> HashMap<String, u64> {
        self.lock().refused.clone()
    }

    pub(crate) fn reset(&self) {
        *self.lock() = Seen::default();
    }

    fn lock(&self) -> MutexGuard<'_, Seen<T>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Now, in milliseconds since the epoch (the time pushes are recorded with).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
