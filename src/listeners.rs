//! harp's listening sockets, each named by the setting that configures it: a leaf room that
//! start-up (binding them first) and the ops listener (checking they still serve) both read.

use crate::config::Settings;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// One listening socket of harp's, named by the setting that configures it.
#[derive(Debug, Clone)]
pub struct Listener {
    pub setting: &'static str,
    pub scheme: &'static str,
    pub addr: SocketAddr,
}

impl Listener {
    /// Where a local client reaches it: a wildcard address means loopback.
    pub fn connect_addr(&self) -> SocketAddr {
        let mut addr = self.addr;
        match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => addr.set_ip(Ipv4Addr::LOCALHOST.into()),
            IpAddr::V6(ip) if ip.is_unspecified() => addr.set_ip(Ipv6Addr::LOCALHOST.into()),
            _ => {}
        }
        addr
    }
}

impl std::fmt::Display for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.setting, self.addr)
    }
}

/// Every listener harp opens with `settings`; HTTPS only when its certificate exists.
pub fn listeners(settings: &Settings) -> Vec<Listener> {
    let mut all = vec![Listener {
        setting: "HP_EXAPPS_ADDRESS",
        scheme: "http",
        addr: settings.exapps_address,
    }];
    if settings.certs_dir.join("cert.pem").is_file() {
        all.push(Listener {
            setting: "HP_EXAPPS_HTTPS_ADDRESS",
            scheme: "https",
            addr: settings.exapps_https_address,
        });
    }
    all.push(Listener {
        setting: "HP_FRP_ADDRESS",
        scheme: "frp",
        addr: settings.frp_address,
    });
    all.push(Listener {
        setting: "HP_OPS_ADDRESS",
        scheme: "http",
        addr: settings.ops_address,
    });
    all
}
