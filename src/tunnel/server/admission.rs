//! What the tunnel server checks clients against, handed over at start from the state the
//! gateway shares: the shared key and the ban list (login, `login.rs`), and Nextcloud's ExApp
//! records for the owner check of an ExApp port (Q10, `policy.rs`). The tunnel sits below
//! `state` in the room layering (docs/architecture.md), so it holds these handles instead of
//! the whole `AppState`.

use std::net::IpAddr;
use std::sync::Arc;

use crate::config::Settings;
use crate::guard::{self, BanList};
use crate::metrics::Metrics;
use crate::nextcloud::{ExAppDirectory, NextcloudClient};

pub struct Admission {
    /// `HP_SHARED_KEY`: the `metas.token` a client logs in with.
    shared_key: String,
    /// `HP_FRP_STRICT_PORTS`: an ExApp port only for the ExApp Nextcloud has on it.
    pub(super) strict_ports: bool,
    /// The gateway's ban list: a client banned there is banned here, and the other way round.
    bans: Arc<BanList>,
    /// For the strike counter.
    metrics: Arc<Metrics>,
    pub(super) apps: Arc<ExAppDirectory>,
    pub(super) nextcloud: Arc<NextcloudClient>,
}

impl Admission {
    pub fn new(
        settings: &Settings,
        bans: Arc<BanList>,
        metrics: Arc<Metrics>,
        apps: Arc<ExAppDirectory>,
        nextcloud: Arc<NextcloudClient>,
    ) -> Admission {
        Admission {
            shared_key: settings.shared_key.clone(),
            strict_ports: settings.frp_strict_ports,
            bans,
            metrics,
            apps,
            nextcloud,
        }
    }

    pub(super) fn is_shared_key(&self, candidate: &[u8]) -> bool {
        guard::is_shared_key(&self.shared_key, candidate)
    }

    pub(super) fn is_banned(&self, ip: IpAddr) -> bool {
        self.bans.is_banned(ip)
    }

    pub(super) fn strike(&self, ip: IpAddr) {
        guard::strike(&self.bans, &self.metrics, ip);
    }
}
