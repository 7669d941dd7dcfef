//! SIGHUP: reload without dropping a connection (HaRP forwards SIGHUP to HAProxy for the same
//! purpose). The HTTPS certificate and the FRP certificates are read again for the connections
//! that come next; the configuration (YAML file and environment) is read again, the settings
//! that can change live are applied and the others are named as needing a restart. Also keeps
//! SIGHUP from killing the process, its default.

use crate::config::Settings;
use crate::gateway::https::ReloadableCert;
use crate::state::AppState;
use crate::tunnel::server::tls::TlsSetup;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The settings applied without a restart.
const LIVE_VARS: [&str; 2] = ["HP_LOG_LEVEL", "HP_TRUSTED_PROXY_IPS"];

pub struct ReloadOnHangup {
    pub https: Option<Arc<ReloadableCert>>,
    pub tunnel_tls: Arc<TlsSetup>,
    pub state: Arc<AppState>,
    /// `--config`; without it `HARP_CONFIG` is looked up again, as at start.
    pub config_path: Option<PathBuf>,
    /// The settings in effect: those of the start plus what SIGHUP applied since.
    pub in_effect: Mutex<Settings>,
}

#[async_trait]
impl BackgroundService for ReloadOnHangup {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangups =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(s) => s,
                Err(e) => {
                    log::error!("cannot listen for SIGHUP: {e}");
                    return;
                }
            };
        loop {
            tokio::select! {
                _ = hangups.recv() => self.reload(),
                _ = shutdown.changed() => return,
            }
        }
    }
}

impl ReloadOnHangup {
    fn reload(&self) {
        match &self.https {
            Some(cert) => match cert.reload() {
                Ok(()) => log::warn!("SIGHUP: HTTPS certificate reloaded"),
                Err(e) => log::error!("SIGHUP: keeping the previous HTTPS certificate: {e}"),
            },
            None => log::warn!("SIGHUP: no HTTPS certificate to reload"),
        }
        match self.tunnel_tls.reload() {
            Ok(()) => log::warn!("SIGHUP: FRP certificates reloaded"),
            Err(e) if self.tunnel_tls.forced() => {
                log::error!("SIGHUP: keeping the previous FRP certificates: {e}");
            }
            Err(e) => log::info!("SIGHUP: no FRP certificates for TLS clients: {e}"),
        }
        self.reload_settings();
    }

    fn reload_settings(&self) {
        let new = match crate::config::load_from_process_env(self.config_path.as_deref()) {
            Ok(s) => s,
            Err(errors) => {
                log::error!("SIGHUP: configuration not reloaded, nothing changed:\n{errors}");
                return;
            }
        };
        let mut in_effect = self
            .in_effect
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let changed = in_effect.changed_vars(&new);
        if changed.is_empty() {
            log::warn!("SIGHUP: configuration unchanged");
            return;
        }
        let (live, later): (Vec<&str>, Vec<&str>) =
            changed.into_iter().partition(|v| LIVE_VARS.contains(v));
        for var in &live {
            match *var {
                "HP_LOG_LEVEL" => {
                    log::set_max_level(new.log_level.to_level_filter());
                    in_effect.log_level = new.log_level;
                }
                "HP_TRUSTED_PROXY_IPS" => {
                    self.state
                        .client_ip
                        .set_trusted(new.trusted_proxies.clone());
                    in_effect.trusted_proxies = new.trusted_proxies.clone();
                }
                _ => unreachable!("LIVE_VARS lists only the variables handled here"),
            }
        }
        if !live.is_empty() {
            log::warn!("SIGHUP: applied {}", live.join(", "));
        }
        if !later.is_empty() {
            log::warn!(
                "SIGHUP: {} changed; they take effect at the next start",
                later.join(", ")
            );
        }
    }
}
