//! Network values: listen addresses (`host:port`) and the trusted-proxy networks of
//! `HP_TRUSTED_PROXY_IPS` (`ipnet::IpNet`, which the client-IP resolver matches against).
//!
//! Deliberate difference from HaRP (Q21): HaRP splits addresses with `cut -d:`, so IPv6 cannot be
//! used; here `[v6]:port` works. Host names other than `localhost` are refused rather than
//! resolved, so start-up never depends on DNS.

use super::settings::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Parses a listen address: `host:port` where host is an IPv4 literal, `[IPv6]`, `localhost`,
/// or `*`/empty for every interface.
pub(crate) fn parse_address(text: &str) -> Result<SocketAddr, String> {
    let expected = || {
        "expected host:port with an IPv4 address, [IPv6 address], localhost or * as host \
         (e.g. 0.0.0.0:8780)"
            .to_string()
    };
    let text = text.trim();
    let (host, port) = text.rsplit_once(':').ok_or_else(expected)?;
    let port: u16 = port.parse().map_err(|_| expected())?;
    let ip = match host {
        "" | "*" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        _ => match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) => IpAddr::V6(v6.parse::<Ipv6Addr>().map_err(|_| expected())?),
            None => IpAddr::V4(host.parse::<Ipv4Addr>().map_err(|_| expected())?),
        },
    };
    Ok(SocketAddr::new(ip, port))
}

/// Whether two listen addresses cannot both be bound: the same port with the same address, or
/// with a wildcard on either side (`[::]` also takes IPv4, as Linux dual-stack sockets do).
/// Port 0 asks the kernel for a free port and never clashes.
pub(crate) fn listeners_clash(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() != b.port() || a.port() == 0 {
        return false;
    }
    let covers = |wild: IpAddr, other: IpAddr| {
        wild.is_unspecified() && (wild.is_ipv6() || wild.is_ipv4() == other.is_ipv4())
    };
    a.ip() == b.ip() || covers(a.ip(), b.ip()) || covers(b.ip(), a.ip())
}

/// Quote characters that env files and compose files leak into values (HaRP fix #112).
const PROXY_QUOTES: &[char] = &['\'', '"', '\u{201C}', '\u{201D}', '\u{2018}', '\u{2019}'];

/// Parses `HP_TRUSTED_PROXY_IPS` the way HaRP's agent does: one bad entry is logged and skipped
/// instead of disabling the whole list, because losing the list silently moves bans onto the
/// reverse proxy itself.
pub(crate) fn parse_trusted_proxies(setting: &str, text: &str) -> Vec<IpNet> {
    let mut nets = Vec::new();
    let mut any_entry = false;
    for entry in text.split(',') {
        let entry = entry.trim().trim_matches(PROXY_QUOTES).trim();
        if entry.is_empty() {
            continue;
        }
        any_entry = true;
        match parse_net(entry) {
            Ok((net, exact)) => {
                if !exact {
                    log::warn!("{setting}: {entry} has host bits set; using {net}");
                }
                nets.push(net);
            }
            Err(problem) => log::error!("{setting}: ignoring {entry:?}: {problem}"),
        }
    }
    if any_entry && nets.is_empty() {
        log::error!(
            "{setting}: no valid entry; X-Forwarded-For and X-Real-IP will not be trusted, so bans \
             may hit the reverse proxy instead of the client"
        );
    }
    nets
}

/// `addr[/prefix]` (IPv4 also `addr/netmask`); returns the masked network and whether the input
/// already had no host bits. The address and the prefix are parsed apart, not by `IpNet`'s own
/// parser, so the log names which half is wrong and bare addresses are host networks.
fn parse_net(entry: &str) -> Result<(IpNet, bool), String> {
    let (addr, prefix) = match entry.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (entry, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| "expected an IP address or CIDR network".to_string())?;
    let net = match prefix {
        None => IpNet::from(addr),
        Some(p) => p
            .parse::<u8>()
            .ok()
            .and_then(|p| IpNet::new(addr, p).ok())
            .or_else(|| with_netmask(addr, p))
            .ok_or_else(|| {
                let max = IpNet::from(addr).max_prefix_len();
                format!("expected a prefix length from 0 to {max}")
            })?,
    };
    let masked = net.trunc();
    Ok((masked, masked == net))
}

/// Python's `ip_network` also takes `10.0.0.0/255.255.255.0`; HaRP users may rely on it.
fn with_netmask(addr: IpAddr, mask: &str) -> Option<IpNet> {
    let (IpAddr::V4(_), Ok(mask)) = (addr, mask.parse::<Ipv4Addr>()) else {
        return None;
    };
    IpNet::with_netmask(addr, mask.into()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_clash_on_one_port_with_the_same_or_a_wildcard_address() {
        let a = |t: &str| t.parse::<SocketAddr>().unwrap();
        for (x, y) in [
            ("0.0.0.0:8780", "0.0.0.0:8780"),
            ("0.0.0.0:8780", "127.0.0.1:8780"),
            ("127.0.0.1:8780", "0.0.0.0:8780"),
            ("[::]:8780", "127.0.0.1:8780"),
            ("[::]:8780", "[::1]:8780"),
            ("[::1]:8780", "[::1]:8780"),
        ] {
            assert!(listeners_clash(a(x), a(y)), "{x} {y}");
        }
        for (x, y) in [
            ("0.0.0.0:8780", "0.0.0.0:8781"),
            ("127.0.0.1:8780", "127.0.0.2:8780"),
            ("0.0.0.0:8780", "[::1]:8780"),
            ("0.0.0.0:0", "0.0.0.0:0"),
        ] {
            assert!(!listeners_clash(a(x), a(y)), "{x} {y}");
        }
    }

    fn net(text: &str) -> IpNet {
        parse_net(text).unwrap().0
    }

    #[test]
    fn addresses() {
        assert_eq!(
            parse_address("0.0.0.0:8780"),
            Ok("0.0.0.0:8780".parse().unwrap())
        );
        assert_eq!(
            parse_address("localhost:8790"),
            Ok("127.0.0.1:8790".parse().unwrap())
        );
        assert_eq!(parse_address("*:8782"), Ok("0.0.0.0:8782".parse().unwrap()));
        assert_eq!(parse_address(":8782"), Ok("0.0.0.0:8782".parse().unwrap()));
        assert_eq!(
            parse_address("[::1]:8780"),
            Ok("[::1]:8780".parse().unwrap())
        );
        assert_eq!(parse_address("[::]:8780"), Ok("[::]:8780".parse().unwrap()));
    }

    #[test]
    fn bad_addresses() {
        for bad in [
            "",
            "8780",
            "0.0.0.0",
            "0.0.0.0:",
            "0.0.0.0:70000",
            "::1:8780",
            "example.com:80",
            "1.2.3:80",
        ] {
            assert!(parse_address(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn b39_quoted_cidr_with_host_bits_is_masked() {
        let nets = parse_trusted_proxies("HP_TRUSTED_PROXY_IPS", "'10.0.0.7/24'");
        assert_eq!(nets, vec![net("10.0.0.0/24")]);
        assert_eq!(nets[0].addr(), "10.0.0.0".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn trusted_proxy_list_strips_quotes_skips_empty_and_bad_entries() {
        let nets = parse_trusted_proxies(
            "HP_TRUSTED_PROXY_IPS",
            " \"172.16.0.0/12\", ,\u{201C}192.168.1.1\u{201D}, nonsense, 10.0.0.0/33, \u{2018}fd00::/8\u{2019},",
        );
        assert_eq!(
            nets,
            vec![net("172.16.0.0/12"), net("192.168.1.1/32"), net("fd00::/8")]
        );
    }

    #[test]
    fn bare_ips_are_host_networks() {
        assert_eq!(net("10.1.2.3").prefix_len(), 32);
        assert_eq!(net("::1").prefix_len(), 128);
    }

    #[test]
    fn netmask_form() {
        assert_eq!(net("10.0.0.0/255.255.255.0"), net("10.0.0.0/24"));
        assert!(parse_net("10.0.0.0/255.0.255.0").is_err());
    }

    #[test]
    fn a_bad_entry_names_the_half_that_is_wrong() {
        let problem = |text: &str| parse_net(text).unwrap_err();
        assert_eq!(
            problem("10.0.0/8"),
            "expected an IP address or CIDR network"
        );
        assert_eq!(
            problem("10.0.0.0/33"),
            "expected a prefix length from 0 to 32"
        );
        assert_eq!(
            problem("10.0.0.0/x"),
            "expected a prefix length from 0 to 32"
        );
        assert_eq!(
            problem("fd00::/129"),
            "expected a prefix length from 0 to 128"
        );
        // The netmask form is IPv4's only, as in Python.
        assert_eq!(
            problem("fd00::/ffff::"),
            "expected a prefix length from 0 to 128"
        );
    }

    #[test]
    fn host_bits_are_masked_and_reported() {
        assert_eq!(parse_net("10.0.0.7/24"), Ok((net("10.0.0.0/24"), false)));
        assert_eq!(parse_net("10.0.0.0/24"), Ok((net("10.0.0.0/24"), true)));
        assert_eq!(parse_net("fd00::1/8"), Ok((net("fd00::/8"), false)));
    }
}
