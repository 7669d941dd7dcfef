//! The state every service shares: settings, Nextcloud client and caches, the ban list.
//! Built once at start; everything inside is internally synchronised.

use crate::config::Settings;
use crate::guard::{BanList, ClientIpResolver};
use crate::metrics::Metrics;
use crate::nextcloud::{ExAppDirectory, NextcloudClient, SessionCache};
use std::net::IpAddr;
use std::sync::Arc;
use subtle::ConstantTimeEq;

pub struct AppState {
    /// FRP proxies registered by tunnel clients, by port.
    pub tunnels: Arc<crate::tunnel::server::Registry>,
    pub metrics: Arc<Metrics>,
    pub docker: crate::docker::Engines,
    /// The Kubernetes backend (HP_K8S_*), also asked where Kubernetes ExApps run.
    pub k8s: Arc<crate::k8s::Kubernetes>,
    pub settings: Settings,
    pub nextcloud: NextcloudClient,
    pub apps: ExAppDirectory,
    pub sessions: SessionCache,
    pub bans: BanList,
    pub client_ip: ClientIpResolver,
}

impl AppState {
    pub fn new(settings: Settings) -> Result<Self, String> {
        let metrics = Arc::new(Metrics::default());
        let nextcloud = NextcloudClient::new(
            &settings.nc_instance_url,
            &settings.shared_key,
            settings.nc_timeout,
            metrics.clone(),
        )?;
        let k8s = Arc::new(crate::k8s::Kubernetes::new(settings.k8s.clone()));
        let mut apps = ExAppDirectory::new(settings.negative_cache_ttl);
        if k8s.enabled() {
            apps = apps.with_upstream_override(k8s.clone());
        }
        Ok(AppState {
            k8s,
            tunnels: Arc::new(crate::tunnel::server::Registry::new()),
            metrics,
            docker: crate::docker::Engines::default(),
            nextcloud,
            apps,
            sessions: SessionCache::new(settings.session_lifetime),
            bans: BanList::new(settings.blacklist_window, settings.blacklist_count),
            client_ip: ClientIpResolver::new(settings.trusted_proxies.clone()),
            settings,
        })
    }

    /// Constant-time comparison with the shared key (HaRP Q5).
    pub fn is_shared_key(&self, candidate: &[u8]) -> bool {
        bool::from(self.settings.shared_key.as_bytes().ct_eq(candidate))
    }

    pub fn strike(&self, ip: IpAddr) {
        self.metrics.strikes.inc();
        self.bans.strike(ip);
    }
}
