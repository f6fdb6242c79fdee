//! Telling a dead token from a wrong configuration. APNs `BadDeviceToken` and
//! `DeviceTokenNotForTopic` and FCM `SENDER_ID_MISMATCH` say "this token is not for you":
//! either that one device's token is dead, or the app talks to the wrong environment
//! (sandbox/production) or the wrong Firebase project — and then *every* token is refused.
//! Marking registrations dead on the second reading would unsubscribe the app's whole fleet,
//! so a refusal counts as a dead token only while the app's configuration has proved itself
//! (a push of the app was delivered within the window) and refusals are rare; a spike of
//! them pauses the app instead. Pure bookkeeping: the caller passes the time.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What one refusal means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Judgement {
    /// The configuration works (a push was delivered lately) and refusals are rare: this
    /// token is dead.
    Dead,
    /// Nothing delivered lately proves the configuration right: keep the registration and
    /// retry later.
    Suspect,
    /// `spike` refusals within the window: the configuration is wrong. Pause the app.
    Spike,
}

/// One app's recent refusals and deliveries.
#[derive(Debug)]
pub(crate) struct Refusals {
    window: Duration,
    spike: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    delivered_at: Option<Instant>,
    /// Times of the refusals within the window, oldest first; at most `spike` of them.
    recent: VecDeque<Instant>,
}

impl Refusals {
    pub(crate) fn new(window: Duration, spike: u32) -> Self {
        Self {
            window,
            spike: usize::try_from(spike).unwrap_or(usize::MAX).max(1),
            state: Mutex::default(),
        }
    }

    /// A push of the app was delivered at `now`.
    pub(crate) fn delivered(&self, now: Instant) {
        self.lock().delivered_at = Some(now);
    }

    /// The provider refused a token at `now`.
    pub(crate) fn judge(&self, now: Instant) -> Judgement {
        let mut state = self.lock();
        let within = |at: Instant| now.saturating_duration_since(at) < self.window;
        while state.recent.front().is_some_and(|at| !within(*at)) {
            state.recent.pop_front();
        }
        state.recent.push_back(now);
        if state.recent.len() >= self.spike {
            // The spike is reported once; the count starts again.
            state.recent.clear();
            return Judgement::Spike;
        }
        if state.delivered_at.is_some_and(within) {
            Judgement::Dead
        } else {
            Judgement::Suspect
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_refusal_is_a_dead_token_only_after_a_recent_delivery() {
        let t0 = Instant::now();
        let refusals = Refusals::new(MINUTE, 5);
        assert_eq!(refusals.judge(t0), Judgement::Suspect);
        refusals.delivered(t0);
        assert_eq!(refusals.judge(t0 + MINUTE / 2), Judgement::Dead);
        // The delivery is too old to vouch for the configuration.
        assert_eq!(refusals.judge(t0 + MINUTE * 2), Judgement::Suspect);
    }

    #[test]
    fn a_spike_of_refusals_is_reported_once_whatever_was_delivered() {
        let t0 = Instant::now();
        let refusals = Refusals::new(MINUTE, 3);
        refusals.delivered(t0);
        let judged: Vec<Judgement> = (0..4)
            .map(|i| refusals.judge(t0 + Duration::from_secs(i)))
            .collect();
        assert_eq!(
            judged,
            [
                Judgement::Dead,
                Judgement::Dead,
                Judgement::Spike,
                Judgement::Dead
            ]
        );
    }

    #[test]
    fn refusals_spread_wider_than_the_window_never_make_a_spike() {
        let t0 = Instant::now();
        let refusals = Refusals::new(MINUTE, 3);
        for i in 0..20u32 {
            let now = t0 + MINUTE * i;
            refusals.delivered(now);
            assert_eq!(refusals.judge(now), Judgement::Dead);
        }
    }
}
