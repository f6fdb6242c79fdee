//! Request rates per source address and per callback token (governor's keyed GCRA
//! limiters). A source is an IPv4 address or an IPv6 /64, so one host cannot spread its
//! requests over the addresses of its own network. A token is keyed by a salted hash:
//! the limiter keeps no secrets. Keys idle long enough to be back at a full burst are
//! forgotten every [`FORGET_EVERY`], so the maps hold only recently active sources and
//! tokens.

use std::hash::BuildHasher as _;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::source::source_key;

/// How often idle keys are forgotten.
pub(crate) const FORGET_EVERY: Duration = Duration::from_secs(10);

/// A sustained rate and the burst allowed above it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rate {
    pub(crate) per_second: u32,
    pub(crate) burst: u32,
}

impl Rate {
    fn limiter<K: std::hash::Hash + Eq + Clone>(self) -> Option<DefaultKeyedRateLimiter<K>> {
        let per_second = NonZeroU32::new(self.per_second)?;
        let burst = NonZeroU32::new(self.burst.max(self.per_second)).unwrap_or(per_second);
        Some(RateLimiter::keyed(
            Quota::per_second(per_second).allow_burst(burst),
        ))
    }
}

/// The gateway's request rate limits; a rate of 0 per second is no limit.
#[derive(Debug)]
pub(crate) struct RateLimits {
    sources: Option<DefaultKeyedRateLimiter<IpAddr>>,
    tokens: Option<DefaultKeyedRateLimiter<u64>>,
    salt: std::hash::RandomState,
}

impl RateLimits {
    pub(crate) fn new(source: Rate, token: Rate) -> Self {
        Self {
            sources: source.limiter(),
            tokens: token.limiter(),
            salt: std::hash::RandomState::new(),
        }
    }

    /// Whether one more request from `source` is within its rate.
    pub(crate) fn source_allows(&self, source: IpAddr) -> bool {
        self.sources
            .as_ref()
            .is_none_or(|limiter| limiter.check_key(&source_key(source)).is_ok())
    }

    /// Whether one more request for callback `token` is within its rate.
    pub(crate) fn token_allows(&self, token: &str) -> bool {
        self.tokens
            .as_ref()
            .is_none_or(|limiter| limiter.check_key(&self.salt.hash_one(token)).is_ok())
    }

    /// Forgets sources and tokens idle long enough to be back at a full burst.
    pub(crate) fn forget_idle(&self) {
        if let Some(limiter) = &self.sources {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.tokens {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// How many sources and tokens are remembered.
    #[cfg(test)]
    fn remembered(&self) -> (usize, usize) {
        (
            self.sources.as_ref().map_or(0, |l| l.len()),
            self.tokens.as_ref().map_or(0, |l| l.len()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_source_gets_its_burst_then_is_refused_while_others_are_not() {
        let limits = RateLimits::new(
            Rate {
                per_second: 1,
                burst: 3,
            },
            Rate {
                per_second: 0,
                burst: 0,
            },
        );
        let allowed = (0..10)
            .filter(|_| limits.source_allows(ip("192.0.2.1")))
            .count();
        assert_eq!(allowed, 3);
        assert!(limits.source_allows(ip("192.0.2.2")));
        assert!(limits.token_allows("anything"), "no token limit");
    }

    #[test]
    fn an_ipv6_network_is_one_source() {
        let limits = RateLimits::new(
            Rate {
                per_second: 1,
                burst: 2,
            },
            Rate {
                per_second: 0,
                burst: 0,
            },
        );
        assert!(limits.source_allows(ip("2001:db8:1:2::1")));
        assert!(limits.source_allows(ip("2001:db8:1:2:ffff::9")));
        assert!(!limits.source_allows(ip("2001:db8:1:2::abcd")));
        assert!(limits.source_allows(ip("2001:db8:1:3::1")), "another /64");
    }

    #[test]
    fn tokens_are_limited_each_on_its_own_and_idle_keys_are_forgotten() {
        let limits = RateLimits::new(
            Rate {
                per_second: 0,
                burst: 0,
            },
            Rate {
                per_second: 1000,
                burst: 1000,
            },
        );
        let allowed = (0..1500).filter(|_| limits.token_allows("leaked")).count();
        assert!((1000..1100).contains(&allowed), "{allowed}");
        assert!(limits.token_allows("another"));
        assert_eq!(limits.remembered(), (0, 2));
        std::thread::sleep(Duration::from_millis(1200));
        limits.forget_idle();
        assert_eq!(limits.remembered(), (0, 0));
    }
}
