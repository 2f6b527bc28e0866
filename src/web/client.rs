//! Who is asking: the client's IP, and the per-IP signup limit.
//!
//! `X-Forwarded-For` is believed only when the peer is a configured trusted
//! proxy, and then walked from the right, skipping trusted proxies, so a
//! client cannot pick its own key by sending the header itself.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::time::Duration;

use axum::http::HeaderMap;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

/// The address a request came from, after trusted proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> =
        headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.trim().parse::<IpAddr>().map(canonical) else {
            // An entry we cannot read ends the chain: trust stops at the last good hop.
            break;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// IPv4-mapped IPv6 addresses count as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The limiter key: the whole IPv4 address, or the /64 an IPv6 address lies in
/// (one subscriber line usually holds a whole /64).
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
    }
}

/// The per-IP signup limit. In memory and per process: the durable caps
/// (per address) live in the database.
pub struct IpLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
}

impl IpLimiter {
    /// `None` when the limit is disabled (`per_minute = 0`).
    pub fn per_minute(per_minute: u32) -> Option<Self> {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute)?);
        Some(Self { limiter: RateLimiter::keyed(quota) })
    }

    /// `Err(retry_after)` when the client must wait, rounded up to whole seconds, at least 1.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        self.limiter.check_key(&limit_key(ip)).map_err(|not_until| {
            let wait: Duration = not_until.wait_time_from(DefaultClock::default().now());
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            secs.max(1)
        })
    }

    /// Forgets clients whose buckets are full again, so memory does not grow forever.
    pub fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(client_ip(peer, &headers("198.51.100.1"), &trusted), peer, "untrusted peer");

        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let spoofed = headers("6.6.6.6, 198.51.100.1, 10.0.0.5");
        assert_eq!(client_ip(proxy, &spoofed, &trusted), "198.51.100.1".parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
        assert_eq!(client_ip(proxy, &headers("garbage"), &trusted), proxy);
    }

    #[test]
    fn ipv6_is_keyed_by_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(limit_key(a), limit_key(b));
        assert_ne!(limit_key(a), limit_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(canonical(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn limiter_answers_with_a_whole_retry_after() {
        let limiter = IpLimiter::per_minute(2).unwrap();
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(limiter.check(ip).is_ok());
        assert!(limiter.check("2001:db8::2".parse().unwrap()).is_ok());
        let retry = limiter.check(ip).unwrap_err();
        assert!((1..=30).contains(&retry), "{retry}");
        assert!(limiter.check("192.0.2.1".parse().unwrap()).is_ok(), "other clients unaffected");
        assert!(IpLimiter::per_minute(0).is_none());
    }
}
