//! The home regions this node has a copy of, and which of them it serves.
//!
//! Every registration belongs to one home region, whose Redis primary holds it; the other
//! regions hold replicas of it (`[homes."<region>"] url`, Redis's own replication). A node
//! serves a home — answers Exchange and writes — only while its copy of that home is a
//! primary: its own region's `[redis]` normally, another home's copy once an operator has
//! promoted it here (`herald region promote`). What a replica answers is only read back to
//! API callers, saying so; a notification for a home not served here is answered 503, never
//! `Unsubscribe`, because only the home's primary knows that a token is unknown.
//!
//! The watcher ([`watch`]) checks each copy's role every heartbeat and starts or stops the
//! home's [`HomeStack`] to follow it.

mod admin;
mod peer;
mod shard_keeper;
mod sink;
mod stack;
mod watch;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

pub use admin::AdminHomes;
pub use peer::PeerHomes;
pub use sink::HomesSink;
pub use stack::{HomeStack, StackParts};
pub use watch::{Watcher, follow_roles, spawn as spawn_watch};

use crate::domain::{RegistrationId, RegistrationRecord, home_tag};
use crate::registry::RegistryError;
use crate::store::RegistrationStore;

/// A home region and this node's copy of it.
pub type HomeCopy = (String, Arc<dyn RegistrationStore>);

/// This node's copy of one home.
#[derive(Debug)]
pub struct Slot {
    pub home: String,
    /// The home's Redis as reachable from here: its primary, or a replica.
    pub copy: Arc<dyn RegistrationStore>,
    /// Whether `copy` was the home's primary (and not a stale one) when last asked; shared
    /// with the home's stack, whose sink checks it again before saying a token is unknown.
    primary: Arc<AtomicBool>,
    /// Whether `copy` was a stale primary when last asked (the home promoted elsewhere).
    stale: AtomicBool,
    /// The stack serving the home, while this node serves it.
    stack: RwLock<Option<Arc<HomeStack>>>,
    /// The stop of the home's last stack, while it runs (the home left this region).
    stopping: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Slot {
    fn new(home: &str, copy: Arc<dyn RegistrationStore>) -> Self {
        Self {
            home: home.to_owned(),
            copy,
            primary: Arc::new(AtomicBool::new(false)),
            stale: AtomicBool::new(false),
            stack: RwLock::new(None),
            stopping: std::sync::Mutex::new(None),
        }
    }

    /// The stack serving this home, if the home is served here now.
    pub fn served(&self) -> Option<Arc<HomeStack>> {
        if !self.primary.load(Ordering::Acquire) {
            return None;
        }
        self.stack.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records the stop of the home's last stack.
    fn stopping(&self, stop: tokio::task::JoinHandle<()>) {
        *self.stopping.lock().unwrap_or_else(|e| e.into_inner()) = Some(stop);
    }

    /// Whether the home's last stack is still stopping.
    fn still_stopping(&self) -> bool {
        self.stopping
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|stop| !stop.is_finished())
    }

    /// The flag saying whether this node serves the home now.
    pub fn serving(&self) -> Arc<AtomicBool> {
        self.primary.clone()
    }

    /// Records whether the copy is a stale primary; `true` when that changed.
    fn set_stale(&self, stale: bool) -> bool {
        self.stale.swap(stale, Ordering::AcqRel) != stale
    }

    /// Records the copy's role; `true` when it changed.
    fn set_primary(&self, primary: bool) -> bool {
        self.primary.swap(primary, Ordering::AcqRel) != primary
    }

    fn stack(&self) -> Option<Arc<HomeStack>> {
        self.stack.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_stack(&self, stack: Option<Arc<HomeStack>>) -> Option<Arc<HomeStack>> {
        std::mem::replace(
            &mut *self.stack.write().unwrap_or_else(|e| e.into_inner()),
            stack,
        )
    }
}

/// The homes of a node: its own region's first.
#[derive(Debug)]
pub struct Homes {
    slots: Vec<Slot>,
    /// Every region of the deployment (`cluster.regions`).
    regions: Vec<String>,
}

/// Where a registration was found.
#[derive(Debug)]
pub struct Located {
    pub home: String,
    pub record: Option<RegistrationRecord>,
    /// The stack of its home, when this node serves that home.
    pub served: Option<Arc<HomeStack>>,
}

impl Homes {
    /// `own` is this node's region and its store; `others` the copies of the other homes;
    /// `regions` every region of the deployment.
    pub fn new(
        own: (&str, Arc<dyn RegistrationStore>),
        others: Vec<HomeCopy>,
        regions: Vec<String>,
    ) -> Self {
        let mut slots = vec![Slot::new(own.0, own.1)];
        slots.extend(
            others
                .iter()
                .map(|(home, copy)| Slot::new(home, copy.clone())),
        );
        Self { slots, regions }
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// This node's own region's home.
    pub fn own(&self) -> &Slot {
        &self.slots[0]
    }

    pub fn slot(&self, home: &str) -> Option<&Slot> {
        self.slots.iter().find(|s| s.home == home)
    }

    /// The stack serving `home`, if this node serves it now.
    pub fn served(&self, home: &str) -> Option<Arc<HomeStack>> {
        self.slot(home).and_then(Slot::served)
    }

    /// Every stack running now, served or not (a shutdown stops them all).
    pub fn stacks(&self) -> Vec<Arc<HomeStack>> {
        self.slots.iter().filter_map(Slot::stack).collect()
    }

    /// Waits for the stacks stopped by the watcher (homes that left this region).
    pub async fn stopped(&self) {
        for slot in &self.slots {
            let stop = slot
                .stopping
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(stop) = stop {
                let _ = stop.await;
            }
        }
    }

    /// Where registration `id` lives: the copy of its home (named by the id), read. `None`
    /// in `record` is final only when `served`; a replica may lag its primary.
    pub async fn locate(&self, id: &RegistrationId) -> Result<Located, RegistryError> {
        let tag = id.home_tag();
        let Some(slot) = self.slots.iter().find(|s| home_tag(&s.home) == tag) else {
            return Err(match self.regions.iter().find(|r| home_tag(r) == tag) {
                Some(home) => RegistryError::Unavailable(format!(
                    "this region has no copy of home {home}; call a node of the region that serves it"
                )),
                // No region of this deployment minted it.
                None => RegistryError::NotFound,
            });
        };
        // Whether the home is served is read first: a copy promoted during the read was
        // still a replica when it answered, and its miss is not final.
        let served = slot.served();
        let record = slot.copy.get(id).await.map_err(|error| {
            tracing::warn!(home = %slot.home, %error, "a home's copy cannot be read");
            RegistryError::Unavailable(format!(
                "the copy of home {} cannot be read now; retry",
                slot.home
            ))
        })?;
        Ok(Located {
            home: slot.home.clone(),
            record,
            served,
        })
    }
}

/// The error for a call that must write in `home`, which this node does not serve.
pub fn not_served(home: &str) -> RegistryError {
    RegistryError::Unavailable(format!(
        "home region {home} is not served in this region now; call a node of the region that serves it, or retry"
    ))
}
