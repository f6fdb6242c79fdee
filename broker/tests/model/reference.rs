//! The reference model: what Herald must answer and push, kept in plain data.

use std::collections::BTreeSet;

use proptest::prelude::*;

/// Registrations in a case.
pub(crate) const REGISTRATIONS: usize = 3;
/// Devices a registration's token can be: 0 and 1 share a shard; 2 and 3 are elsewhere.
pub(crate) const DEVICES: usize = 4;

#[derive(Clone, Debug)]
pub(crate) enum Op {
    /// New mail leaving `unread` in the Inbox (`skip` > 0: after a gap).
    NewMail {
        who: usize,
        unread: u32,
        skip: u64,
    },
    /// Mail read: `unread` left.
    Read {
        who: usize,
        unread: u32,
    },
    Heartbeat {
        who: usize,
    },
    /// Exchange sends the last notification again.
    Redeliver {
        who: usize,
    },
    /// `UpdateDeviceToken` to device `to`.
    SetToken {
        who: usize,
        to: usize,
    },
    /// `BindSubscription` with the registration's own subscription id.
    Bind {
        who: usize,
    },
    Unregister {
        who: usize,
    },
    /// Every actor that can be is passivated.
    Passivate,
    /// The node stops (draining) and a new one starts on the same store.
    Restart,
    /// Wait until every burst is flushed, then check the devices' badges.
    Settle,
}

pub(crate) fn op() -> impl Strategy<Value = Op> {
    let who = 0..REGISTRATIONS;
    prop_oneof![
        4 => (who.clone(), 0..20u32, prop_oneof![4 => Just(0u64), 1 => 1..3u64])
            .prop_map(|(who, unread, skip)| Op::NewMail { who, unread, skip }),
        3 => (who.clone(), 0..20u32).prop_map(|(who, unread)| Op::Read { who, unread }),
        2 => who.clone().prop_map(|who| Op::Heartbeat { who }),
        2 => who.clone().prop_map(|who| Op::Redeliver { who }),
        3 => (who.clone(), 0..DEVICES).prop_map(|(who, to)| Op::SetToken { who, to }),
        1 => who.clone().prop_map(|who| Op::Bind { who }),
        1 => who.prop_map(|who| Op::Unregister { who }),
        1 => Just(Op::Passivate),
        1 => Just(Op::Restart),
        2 => Just(Op::Settle),
    ]
}

/// One registration as the model knows it.
#[derive(Clone, Debug)]
pub(crate) struct Registration {
    pub(crate) exists: bool,
    pub(crate) device: usize,
    /// Bound to its subscription (at registration, by `Bind`, or on first sight).
    pub(crate) bound: bool,
    pub(crate) unread: Option<u32>,
}

#[derive(Clone, Debug)]
pub(crate) struct Model {
    pub(crate) registrations: Vec<Registration>,
}

impl Model {
    /// Registrations 0 and 1 on device 0, 2 on device 2; 1 registered without its
    /// subscription id (bound on first sight or by `Bind`).
    pub(crate) fn new() -> Self {
        Self {
            registrations: (0..REGISTRATIONS)
                .map(|n| Registration {
                    exists: true,
                    device: if n < 2 { 0 } else { 2 },
                    bound: n != 1,
                    unread: None,
                })
                .collect(),
        }
    }

    /// The registrations listed for `device`.
    pub(crate) fn listed(&self, device: usize) -> BTreeSet<usize> {
        (0..REGISTRATIONS)
            .filter(|n| self.registrations[*n].exists && self.registrations[*n].device == device)
            .collect()
    }

    /// The badge `device` must show last: the sum of its registrations' Inbox counts, if
    /// any of them knows one.
    pub(crate) fn badge(&self, device: usize) -> Option<u32> {
        let counts: Vec<Option<u32>> = self
            .listed(device)
            .into_iter()
            .map(|n| self.registrations[n].unread)
            .collect();
        counts
            .iter()
            .any(Option::is_some)
            .then(|| counts.iter().flatten().sum())
    }
}
