//! Who is asking and whether they are still welcome: client IP behind trusted proxies and the
//! brute-force ban list. Pure in-memory state; never does I/O.

pub mod bans;
pub mod client_ip;

pub use bans::BanList;
pub use client_ip::ClientIpResolver;

use crate::metrics::Metrics;
use std::net::IpAddr;
use subtle::ConstantTimeEq;

/// Is `candidate` the shared key? Compared in constant time (HaRP Q5), wherever a client
/// presents it: the gateway's `harp-shared-key` header and the tunnel's login token.
pub fn is_shared_key(shared_key: &str, candidate: &[u8]) -> bool {
    bool::from(shared_key.as_bytes().ct_eq(candidate))
}

/// A brute-force strike against `ip`, from the gateway or the tunnel's login: recorded on the
/// ban list they share and counted for `/metrics`.
pub fn strike(bans: &BanList, metrics: &Metrics, ip: IpAddr) {
    metrics.strikes.inc();
    bans.strike(ip);
}
