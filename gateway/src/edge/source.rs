//! Who a request comes from, and how many connections each source has open.
//!
//! The source is the TCP peer, unless the peer is a trusted proxy (`gateway.trusted_proxies`):
//! then it is the last address in the configured header (`X-Forwarded-For` by default) that
//! is not itself a trusted proxy — the one address a proxy we trust vouches for. A header
//! from any other peer is ignored, so a client cannot choose its own source. An IPv6 source
//! is its /64, so one host cannot spread over the addresses of its own network. Sources in
//! `gateway.exempt_sources` (an operator's own Exchange servers, say) have no per-source
//! limits.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use http::{HeaderMap, HeaderName};
use ipnet::IpNet;

/// Where requests come from, and the connections each source holds.
#[derive(Debug)]
pub(crate) struct Sources {
    trusted: Vec<IpNet>,
    exempt: Vec<IpNet>,
    header: HeaderName,
    /// Most connections one source may hold at once; 0: no limit.
    max_connections: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl Sources {
    pub(crate) fn new(
        trusted: Vec<IpNet>,
        exempt: Vec<IpNet>,
        header: HeaderName,
        max_connections: usize,
    ) -> Self {
        Self {
            trusted,
            exempt,
            header,
            max_connections,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn is_trusted(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        self.trusted.iter().any(|net| net.contains(&addr))
    }

    /// Whether `source` has no per-source limits.
    pub(crate) fn is_exempt(&self, source: IpAddr) -> bool {
        let source = canonical(source);
        self.exempt.iter().any(|net| net.contains(&source))
    }

    /// The source of a request that came over a connection from `peer`.
    pub(crate) fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.is_trusted(peer) {
            return canonical(peer);
        }
        // From the right: each trusted proxy appended the address it received from; the
        // first one that is not a trusted proxy is the client. What lies further left was
        // written by the client itself and is never read.
        let values: Vec<_> = headers.get_all(&self.header).iter().collect();
        for value in values.into_iter().rev() {
            let Ok(text) = value.to_str() else {
                // A header we cannot read vouches for nobody: the proxy is the source.
                return canonical(peer);
            };
            for part in text.rsplit(',') {
                match parse_addr(part.trim()).map(canonical) {
                    Some(addr) if self.is_trusted(addr) => {}
                    Some(addr) => return addr,
                    // Our own proxies write addresses: the header is not theirs.
                    None => return canonical(peer),
                }
            }
        }
        canonical(peer)
    }

    /// Counts a new connection from `peer`; `None` when that source already holds the most
    /// it may. Connections from a trusted proxy carry many clients and are not counted.
    pub(crate) fn connect(self: &Arc<Self>, peer: IpAddr) -> Option<Connection> {
        let peer = canonical(peer);
        if self.max_connections == 0 || self.is_trusted(peer) || self.is_exempt(peer) {
            return Some(Connection {
                sources: self.clone(),
                counted: None,
            });
        }
        let key = source_key(peer);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(key).or_insert(0);
        if *count >= self.max_connections {
            return None;
        }
        *count += 1;
        Some(Connection {
            sources: self.clone(),
            counted: Some(key),
        })
    }

    /// How many sources hold connections now.
    #[cfg(test)]
    fn sources_open(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// One open connection, uncounted when dropped.
#[derive(Debug)]
pub(crate) struct Connection {
    sources: Arc<Sources>,
    counted: Option<IpAddr>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        let Some(peer) = self.counted else { return };
        let mut open = self.sources.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&peer) {
            *count -= 1;
            if *count == 0 {
                open.remove(&peer);
            }
        }
    }
}

/// An IPv4 address, or an IPv6 address's /64: what limits count as one source.
pub(crate) fn source_key(source: IpAddr) -> IpAddr {
    match canonical(source) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

/// An address as a header carries it: `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]`, or either
/// with a port.
fn parse_addr(text: &str) -> Option<IpAddr> {
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Some(addr);
    }
    text.parse::<std::net::SocketAddr>()
        .ok()
        .map(|s| s.ip())
        .or_else(|| {
            text.strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse().ok())
        })
}

/// IPv4-mapped IPv6 addresses (a dual-stack listener's view of IPv4 peers) as IPv4.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(trusted: &[&str], max: usize) -> Arc<Sources> {
        Arc::new(Sources::new(
            trusted.iter().map(|t| t.parse().unwrap()).collect(),
            vec!["192.0.2.128/25".parse().unwrap()],
            HeaderName::from_static("x-forwarded-for"),
            max,
        ))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn an_untrusted_peer_is_the_source_whatever_its_headers_say() {
        let sources = sources(&["10.0.0.0/8"], 0);
        let headers = forwarded(&["192.0.2.7"]);
        assert_eq!(
            sources.client(ip("198.51.100.1"), &headers),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn a_trusted_proxy_vouches_for_the_last_untrusted_address() {
        let sources = sources(&["10.0.0.0/8"], 0);
        // The client wrote the first entry itself; our proxies appended the rest.
        let headers = forwarded(&["203.0.113.9, 192.0.2.7", "10.1.2.3"]);
        assert_eq!(sources.client(ip("10.0.0.1"), &headers), ip("192.0.2.7"));
        let ported = forwarded(&["[2001:db8::5]:4711"]);
        assert_eq!(sources.client(ip("10.0.0.1"), &ported), ip("2001:db8::5"));
    }

    #[test]
    fn a_trusted_proxy_without_a_usable_header_is_the_source() {
        let sources = sources(&["10.0.0.0/8"], 0);
        assert_eq!(
            sources.client(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
        let garbage = forwarded(&["192.0.2.7, not-an-address"]);
        assert_eq!(sources.client(ip("10.0.0.1"), &garbage), ip("10.0.0.1"));
        // Garbage the client wrote to the left of what our proxies vouch for is not read.
        let client_garbage = forwarded(&["not-an-address, 192.0.2.7, 10.1.2.3"]);
        assert_eq!(
            sources.client(ip("10.0.0.1"), &client_garbage),
            ip("192.0.2.7")
        );
        let only_proxies = forwarded(&["10.9.9.9"]);
        assert_eq!(
            sources.client(ip("10.0.0.1"), &only_proxies),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn connections_are_counted_per_source_and_forgotten_when_closed() {
        let sources = sources(&["10.0.0.0/8"], 2);
        let a = sources.connect(ip("192.0.2.1")).unwrap();
        let b = sources.connect(ip("::ffff:192.0.2.1")).unwrap();
        assert!(sources.connect(ip("192.0.2.1")).is_none(), "a third one");
        let other = sources.connect(ip("192.0.2.2")).unwrap();
        let proxied: Vec<_> = (0..5)
            .map(|_| sources.connect(ip("10.0.0.1")).unwrap())
            .collect();
        let exempt: Vec<_> = (0..5)
            .map(|_| sources.connect(ip("192.0.2.200")).unwrap())
            .collect();
        // One IPv6 /64 is one source.
        let v6 = sources.connect(ip("2001:db8::1")).unwrap();
        let v6_too = sources.connect(ip("2001:db8::2")).unwrap();
        assert!(sources.connect(ip("2001:db8::3")).is_none());
        drop(a);
        let c = sources.connect(ip("192.0.2.1")).unwrap();
        assert_eq!(sources.sources_open(), 3);
        drop((b, c, other, proxied, exempt, v6, v6_too));
        assert_eq!(sources.sources_open(), 0);
    }
}
