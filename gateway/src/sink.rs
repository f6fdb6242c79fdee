//! The port the gateway hands parsed notifications to, and how the per-message verdicts
//! become one HTTP answer (protocol note §7.3).

use std::fmt;
use std::future::Future;

use crate::answer::SubscriptionStatus;
use crate::model::SendNotification;

/// The callback URL's path parameters. The token is the only credential Exchange presents:
/// it is never logged, and `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct Callback {
    home_region: String,
    token: String,
}

impl Callback {
    pub fn new(home_region: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            home_region: home_region.into(),
            token: token.into(),
        }
    }

    pub fn home_region(&self) -> &str {
        &self.home_region
    }

    /// The secret callback token, for the sink to check. Never log it.
    pub fn token(&self) -> &str {
        &self.token
    }
}

impl fmt::Debug for Callback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callback")
            .field("home_region", &self.home_region)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// What the sink decided for one response message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Known, wanted, and durably recorded: answer `OK`.
    Ok,
    /// Unknown or unwanted subscription, or an error message: answer `Unsubscribe`.
    Unsubscribe,
    /// The message claims a subscription bound to another callback: 403.
    Reject,
    /// A transient failure on our side: 503, Exchange retries.
    Unavailable,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Unsubscribe => "unsubscribe",
            Self::Reject => "reject",
            Self::Unavailable => "unavailable",
        }
    }
}

/// What the sink says of a callback URL before the request's body is read, so that an
/// unknown or unserved URL costs no more than its headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission<T> {
    /// A registration has this callback: read the body, then hand it over with this.
    Known(T),
    /// No live registration has this callback, and the sink is sure of it: `Unsubscribe`.
    Unknown,
    /// The sink cannot tell now (its store is away, the home is not served here): 503.
    Unavailable,
}

/// Where the gateway hands requests. First [`admit`](Self::admit) resolves the callback URL
/// (its shape, then whether a registration has it); then, for a known one, every
/// well-formed request goes to [`deliver`](Self::deliver) (by value: the sink may keep its
/// parts), which applies each message durably and returns one verdict per message, in
/// order.
pub trait NotificationSink: Send + Sync + 'static {
    /// What `admit` found, handed back to `deliver`.
    type Admitted: Send + 'static;

    fn admit(&self, callback: &Callback) -> impl Future<Output = Admission<Self::Admitted>> + Send;

    fn deliver(
        &self,
        admitted: Self::Admitted,
        request: SendNotification,
    ) -> impl Future<Output = Vec<Verdict>> + Send;
}

/// The HTTP answer for a whole request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// 200 with a SOAP answer.
    Answer(SubscriptionStatus),
    /// 403, no body.
    Forbidden,
    /// 503.
    Unavailable,
}

/// Combines per-message verdicts: anything we could not record makes Exchange retry the
/// whole POST (503); otherwise `OK` if any message was accepted; otherwise 403 if one claimed
/// a subscription bound elsewhere; otherwise `Unsubscribe`. A message the sink did not
/// answer counts as unavailable.
pub fn combine(verdicts: &[Verdict], messages: usize) -> Outcome {
    let has = |v: Verdict| verdicts.contains(&v);
    if verdicts.len() != messages || has(Verdict::Unavailable) {
        Outcome::Unavailable
    } else if has(Verdict::Ok) {
        Outcome::Answer(SubscriptionStatus::Ok)
    } else if has(Verdict::Reject) {
        Outcome::Forbidden
    } else {
        Outcome::Answer(SubscriptionStatus::Unsubscribe)
    }
}

/// A sink that accepts everything: for benchmarks of the gateway alone.
#[derive(Clone, Copy, Debug, Default)]
pub struct AcceptAll;

impl NotificationSink for AcceptAll {
    type Admitted = ();

    async fn admit(&self, _callback: &Callback) -> Admission<()> {
        Admission::Known(())
    }

    async fn deliver(&self, (): (), request: SendNotification) -> Vec<Verdict> {
        vec![Verdict::Ok; request.messages.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict::*;

    #[test]
    fn verdicts_combine_per_the_decision_table() {
        let ok = Outcome::Answer(SubscriptionStatus::Ok);
        let unsubscribe = Outcome::Answer(SubscriptionStatus::Unsubscribe);
        assert_eq!(combine(&[Ok], 1), ok);
        assert_eq!(combine(&[Unsubscribe], 1), unsubscribe);
        assert_eq!(combine(&[Unsubscribe, Ok], 2), ok);
        assert_eq!(combine(&[Ok, Reject], 2), ok);
        assert_eq!(combine(&[Reject], 1), Outcome::Forbidden);
        assert_eq!(combine(&[Unsubscribe, Reject], 2), Outcome::Forbidden);
        assert_eq!(combine(&[Ok, Unavailable], 2), Outcome::Unavailable);
        assert_eq!(combine(&[Reject, Unavailable], 2), Outcome::Unavailable);
        assert_eq!(combine(&[Ok], 2), Outcome::Unavailable);
    }

    #[test]
    fn the_token_never_shows_in_debug() {
        let callback = Callback::new("us-east-1", "s3cr3t-token");
        let shown = format!("{callback:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("us-east-1"));
    }
}
