//! SIGHUP: reload the HTTPS certificate without dropping a connection (HaRP forwards SIGHUP to
//! HAProxy for the same purpose). Also keeps SIGHUP from killing the process, its default.

use crate::gateway::https::ReloadableCert;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;

pub struct ReloadOnHangup {
    pub https: Option<Arc<ReloadableCert>>,
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
        log::warn!("SIGHUP: other settings take effect at the next start");
    }
}
