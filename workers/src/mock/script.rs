//! What a mock is told to do besides accepting: answer an error for some device tokens or
//! for a share of all traffic, wait before answering, drop or reset the connection, or
//! send GOAWAY on it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// An error answer: the HTTP status and the provider's reason (APNs `reason`, FCM
/// `errorCode`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub status: u16,
    pub reason: String,
    /// APNs `Unregistered`: when the token stopped working (ms since the epoch).
    #[serde(default)]
    pub timestamp_ms: Option<u64>,
    /// A `Retry-After` header, in seconds.
    #[serde(default)]
    pub retry_after_secs: Option<u64>,
}

impl Reply {
    pub fn new(status: u16, reason: &str) -> Self {
        Self {
            status,
            reason: reason.to_owned(),
            timestamp_ms: None,
            retry_after_secs: None,
        }
    }
}

/// One misbehaviour.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Answer this error instead of accepting.
    Reply(Reply),
    /// Wait this long (milliseconds), then handle the request normally.
    DelayMs(u64),
    /// Close the connection without answering.
    Drop,
    /// Reset the connection (TCP RST) without answering, as a crashed or overloaded
    /// front end does.
    Reset,
    /// Send HTTP/2 GOAWAY on the connection — no new streams on it — then answer this
    /// request normally a little later, as a provider draining a connection does.
    Goaway,
}

/// A fault for one device token, for its next `times` requests (`None`: until cleared).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRule {
    pub token: String,
    pub fault: Fault,
    #[serde(default)]
    pub times: Option<u32>,
}

/// A fault for a share (0.0–1.0) of all requests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShareRule {
    pub share: f64,
    pub fault: Fault,
}

/// The faults in force.
#[derive(Debug, Default)]
pub struct Script {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    tokens: HashMap<String, (Fault, Option<u32>)>,
    shares: Vec<ShareRule>,
}

impl Script {
    pub fn for_token(&self, rule: TokenRule) {
        self.lock()
            .tokens
            .insert(rule.token, (rule.fault, rule.times));
    }

    pub fn for_share(&self, rule: ShareRule) {
        self.lock().shares.push(rule);
    }

    /// Back to accepting everything.
    pub fn clear(&self) {
        *self.lock() = State::default();
    }

    /// The fault for a request to `token`, if any (per-token rules first).
    pub(crate) fn fault_for(&self, token: &str) -> Option<Fault> {
        let mut state = self.lock();
        if let Some((fault, times)) = state.tokens.get_mut(token) {
            let fault = fault.clone();
            match times {
                Some(0) => {}
                Some(n) => {
                    *n -= 1;
                    if *n == 0 {
                        state.tokens.remove(token);
                    }
                    return Some(fault);
                }
                None => return Some(fault),
            }
        }
        let roll = fastrand::f64();
        let mut floor = 0.0;
        for rule in &state.shares {
            floor += rule.share;
            if roll < floor {
                return Some(rule.fault.clone());
            }
        }
        None
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A delay fault as a duration.
pub(crate) fn delay(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_rule_applies_its_number_of_times_then_lapses() {
        let script = Script::default();
        script.for_token(TokenRule {
            token: "t".into(),
            fault: Fault::Reply(Reply::new(503, "ServiceUnavailable")),
            times: Some(2),
        });
        assert!(script.fault_for("t").is_some());
        assert!(script.fault_for("other").is_none());
        assert!(script.fault_for("t").is_some());
        assert!(script.fault_for("t").is_none());
    }

    #[test]
    fn a_share_rule_hits_about_its_share() {
        let script = Script::default();
        script.for_share(ShareRule {
            share: 0.25,
            fault: Fault::Drop,
        });
        let hits = (0..4000)
            .filter(|_| script.fault_for("t").is_some())
            .count();
        assert!((800..1200).contains(&hits), "{hits} of 4000");
        script.clear();
        assert!(script.fault_for("t").is_none());
    }
}
