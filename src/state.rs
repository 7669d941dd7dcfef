//! The state every service shares: settings, Nextcloud client and caches, the ban list.
//! Built once at start; everything inside is internally synchronised.
//!
//! The gateway, the control API and the ops listener hold the whole `AppState`; the rooms below
//! it (docker, k8s, tunnel, ...) never import it and get only the handles they use
//! (`docker::Sidecar`, `tunnel::server::Admission`), which keeps the room graph acyclic
//! (docs/architecture.md, tests/house.rs).

use crate::config::Settings;
use crate::guard::{self, BanList, ClientIpResolver};
use crate::metrics::Metrics;
use crate::nextcloud::{ExAppDirectory, NextcloudClient, SessionCache};
use std::net::IpAddr;
use std::sync::Arc;

pub struct AppState {
    /// FRP proxies registered by tunnel clients, by port.
    pub tunnels: Arc<crate::tunnel::server::Registry>,
    pub metrics: Arc<Metrics>,
    /// The Docker sidecar behind `/docker/exapp/*`.
    pub docker: crate::docker::Sidecar,
    /// The Kubernetes backend (`HP_K8S_*`), also asked where Kubernetes ExApps run.
    pub k8s: Arc<crate::k8s::Kubernetes>,
    pub settings: Settings,
    /// Shared with the tunnel's `NewProxy` owner check (`tunnel_admission`), as are `apps` and
    /// `bans`.
    pub nextcloud: Arc<NextcloudClient>,
    pub apps: Arc<ExAppDirectory>,
    pub sessions: SessionCache,
    pub bans: Arc<BanList>,
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
        let docker = crate::docker::Sidecar::new(&settings, metrics.clone());
        let mut apps = ExAppDirectory::new(settings.negative_cache_ttl);
        if k8s.enabled() {
            apps = apps.with_upstream_override(k8s.clone());
        }
        Ok(AppState {
            k8s,
            tunnels: Arc::new(crate::tunnel::server::Registry::new()),
            metrics,
            docker,
            nextcloud: Arc::new(nextcloud),
            apps: Arc::new(apps),
            sessions: SessionCache::new(settings.session_lifetime),
            bans: Arc::new(BanList::new(
                settings.blacklist_window,
                settings.blacklist_count,
            )),
            client_ip: ClientIpResolver::new(settings.trusted_proxies.clone()),
            settings,
        })
    }

    /// Constant-time comparison with the shared key (HaRP Q5).
    pub fn is_shared_key(&self, candidate: &[u8]) -> bool {
        guard::is_shared_key(&self.settings.shared_key, candidate)
    }

    pub fn strike(&self, ip: IpAddr) {
        guard::strike(&self.bans, &self.metrics, ip);
    }

    /// What the tunnel server checks its clients against: the same key, ban list and ExApp
    /// records as the gateway.
    pub fn tunnel_admission(&self) -> crate::tunnel::server::Admission {
        crate::tunnel::server::Admission::new(
            &self.settings,
            self.bans.clone(),
            self.metrics.clone(),
            self.apps.clone(),
            self.nextcloud.clone(),
        )
    }
}
