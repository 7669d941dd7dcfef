//! Who the client really is when harp-rs sits behind trusted reverse proxies.
//!
//! Deliberate difference from HaRP (Q1): HaRP trusts the leftmost X-Forwarded-For entry, which a
//! client controls whenever its proxy appends. We walk the header from the right and skip trusted
//! hops, so the address we ban or credit is the one the nearest trusted proxy actually saw.

use crate::config::IpNet;
use arc_swap::ArcSwap;
use http::HeaderMap;
use std::net::IpAddr;
use std::sync::Arc;

pub struct ClientIpResolver {
    /// `HP_TRUSTED_PROXY_IPS`; replaced on SIGHUP, read on every request.
    trusted: ArcSwap<Vec<IpNet>>,
}

impl ClientIpResolver {
    pub fn new(trusted: Vec<IpNet>) -> Self {
        ClientIpResolver {
            trusted: ArcSwap::from_pointee(trusted),
        }
    }

    /// Requests that start after this call use `trusted`.
    pub fn set_trusted(&self, trusted: Vec<IpNet>) {
        self.trusted.store(Arc::new(trusted));
    }

    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        let trusted = self.trusted.load();
        if trusted.is_empty() || !is_trusted(&trusted, peer) {
            return peer;
        }
        if let Some(ip) = forwarded_for_client(&trusted, headers) {
            return ip;
        }
        headers
            .get_all("x-real-ip")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
            .map(|ip| ip.to_canonical())
            .unwrap_or(peer)
    }
}

/// Whether `ip` lies in a trusted network. IPv4 peers seen on a dual-stack socket arrive as
/// IPv4-mapped IPv6 (`::ffff:10.0.0.5`) and must still match `10.0.0.0/24`, and a network written
/// in the mapped form (`::ffff:10.0.0.0/120`) must still hold its IPv4 peers: `IpNet::contains`
/// never matches across families, so the address is tried in both forms.
fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    let mapped = match ip {
        IpAddr::V4(v4) => Some(IpAddr::V6(v4.to_ipv6_mapped())),
        IpAddr::V6(_) => None,
    };
    trusted
        .iter()
        .any(|n| n.contains(&ip) || mapped.is_some_and(|m| n.contains(&m)))
}

/// The rightmost entry that is not a trusted proxy; the leftmost if every hop is trusted.
fn forwarded_for_client(trusted: &[IpNet], headers: &HeaderMap) -> Option<IpAddr> {
    let mut leftmost_trusted = None;
    for line in headers.get_all("x-forwarded-for").iter().rev() {
        let line = line.to_str().ok()?;
        for entry in line.rsplit(',') {
            let ip = entry.trim().parse::<IpAddr>().ok()?.to_canonical();
            if !is_trusted(trusted, ip) {
                return Some(ip);
            }
            leftmost_trusted = Some(ip);
        }
    }
    leftmost_trusted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str, p: u8) -> IpNet {
        IpNet::new(s.parse().unwrap(), p).unwrap()
    }

    fn hdrs(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn rightmost_untrusted_entry_wins() {
        let r = ClientIpResolver::new(vec![net("10.0.0.0", 24)]);
        let peer: IpAddr = "10.0.0.5".parse().unwrap();
        let h = hdrs(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.9")]);
        assert_eq!(r.resolve(peer, &h), "1.2.3.4".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn untrusted_peer_ignores_headers() {
        let r = ClientIpResolver::new(vec![net("10.0.0.0", 24)]);
        let h = hdrs(&[("x-forwarded-for", "1.2.3.4")]);
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(r.resolve(peer, &h), peer);
    }

    #[test]
    fn garbage_falls_back_to_real_ip_then_peer() {
        let r = ClientIpResolver::new(vec![net("10.0.0.0", 24)]);
        let peer: IpAddr = "10.0.0.5".parse().unwrap();
        let h = hdrs(&[("x-forwarded-for", "garbage"), ("x-real-ip", "5.6.7.8")]);
        assert_eq!(r.resolve(peer, &h), "5.6.7.8".parse::<IpAddr>().unwrap());
        let h = hdrs(&[("x-forwarded-for", "garbage"), ("x-real-ip", "nope")]);
        assert_eq!(r.resolve(peer, &h), peer);
    }

    #[test]
    fn set_trusted_applies_to_later_requests() {
        let r = ClientIpResolver::new(vec![]);
        let peer: IpAddr = "10.0.0.5".parse().unwrap();
        let h = hdrs(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(r.resolve(peer, &h), peer);
        r.set_trusted(vec![net("10.0.0.0", 24)]);
        assert_eq!(r.resolve(peer, &h), "1.2.3.4".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn ipv6_is_canonical() {
        let r = ClientIpResolver::new(vec![net("::1", 128)]);
        let h = hdrs(&[("x-forwarded-for", "2001:db8:0:0::1")]);
        assert_eq!(
            r.resolve("::1".parse().unwrap(), &h).to_string(),
            "2001:db8::1"
        );
    }

    #[test]
    fn trusted_networks_match_mapped_ipv4_and_ignore_host_bits() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let v4 = [net("10.0.0.0", 24)];
        assert!(is_trusted(&v4, ip("10.0.0.5")));
        assert!(is_trusted(&v4, ip("::ffff:10.0.0.5")));
        assert!(!is_trusted(&v4, ip("10.0.1.5")));
        assert!(!is_trusted(&v4, ip("fe80::1")));
        let mapped = [net("::ffff:10.0.0.0", 120)];
        assert!(is_trusted(&mapped, ip("10.0.0.5")));
        assert!(is_trusted(&mapped, ip("::ffff:10.0.0.5")));
        assert!(!is_trusted(&mapped, ip("10.0.1.5")));
        // A network built with host bits set still means the whole network.
        assert!(is_trusted(&[net("10.0.0.7", 24)], ip("10.0.0.200")));
        assert!(is_trusted(&[net("0.0.0.0", 0)], ip("8.8.8.8")));
        assert!(is_trusted(&[net("::", 0)], ip("2001:db8::1")));
        assert!(is_trusted(&[net("fd00::", 8)], ip("fd12::1")));
    }
}
