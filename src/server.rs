//! Assembles the Pingora `Server`: the ExApp proxy (HTTP, and HTTPS when a certificate exists)
//! and the ops listener, all sharing one `AppState`.

use crate::config::Settings;
use crate::gateway::https::ReloadableCert;
use crate::gateway::listener::ClientTimeoutApp;
use crate::gateway::Gateway;
use crate::ops::OpsApp;
use crate::reload::ReloadOnHangup;
use crate::state::AppState;
use crate::tunnel::server::tls::TlsSetup;
use pingora::apps::http_app::HttpServer;
use pingora::listeners::tls::TlsSettings;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Seconds in-flight requests get after SIGTERM before the process exits.
const GRACE_PERIOD_SECS: u64 = 5;

/// `config_path` is the `--config` argument, read again on SIGHUP.
pub fn build(settings: Settings, config_path: Option<PathBuf>) -> Result<Server, String> {
    let https_cert = settings.certs_dir.join("cert.pem");
    let threads = settings.threads;
    let (http_addr, https_addr, ops_addr) = (
        settings.exapps_address.to_string(),
        settings.exapps_https_address.to_string(),
        settings.ops_address.to_string(),
    );
    let state = Arc::new(AppState::new(settings)?);

    let run_dir = std::env::temp_dir();
    let conf = ServerConf {
        threads,
        // One runtime per thread: cheaper scheduling on the per-request path (pingora-notes (e)).
        work_stealing: false,
        grace_period_seconds: Some(GRACE_PERIOD_SECS),
        graceful_shutdown_timeout_seconds: Some(2),
        pid_file: run_dir
            .join(format!("harp-{}.pid", std::process::id()))
            .display()
            .to_string(),
        upgrade_sock: run_dir
            .join(format!("harp-upgrade-{}.sock", std::process::id()))
            .display()
            .to_string(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(Opt::default()), conf);
    server.bootstrap();

    // The FRP tunnel server (frps replacement) on HP_FRP_ADDRESS, with HaRP's certificate set
    // generated on first start (never touching an existing $HP_CERTS_DIR/frp).
    for warning in state.settings.warnings() {
        log::warn!("{warning}");
    }
    let frp_certs = crate::certs::ensure_frp_certs(&state.settings)?;
    if !state.settings.frp_disable_tls {
        for warning in crate::certs::expiry_warnings(&frp_certs.dir) {
            log::warn!("{warning}");
        }
    }
    let tunnel_tls = Arc::new(TlsSetup::from_settings(&state.settings));
    server.add_service(crate::tunnel::server::service(
        state.clone(),
        state.tunnels.clone(),
        tunnel_tls.clone(),
    ));

    let client_timeout = state.settings.timeout_client;
    let mut gateway =
        pingora::proxy::HttpProxy::new(Gateway::new(state.clone()), server.configuration.clone());
    gateway.handle_init_modules();
    let mut proxy = Service::new(
        "harp gateway".to_string(),
        ClientTimeoutApp::new(gateway, client_timeout),
    );
    proxy.add_tcp(&http_addr);
    let https = if https_cert.is_file() {
        let cert = Arc::new(ReloadableCert::new(&https_cert)?);
        // The resolver replaces the paths, so the certificate can be swapped on SIGHUP.
        let mut tls =
            TlsSettings::intermediate("", "").map_err(|e| format!("cannot set up HTTPS: {e}"))?;
        tls.set_cert_resolver(cert.clone());
        proxy.add_tls_with_settings(&https_addr, None, tls);
        log::info!(
            "HTTPS listener on {https_addr} with {}",
            https_cert.display()
        );
        Some(cert)
    } else {
        None
    };
    server.add_service(proxy);
    server.add_service(background_service(
        "reload on SIGHUP",
        ReloadOnHangup {
            https,
            tunnel_tls,
            in_effect: Mutex::new(state.settings.clone()),
            state: state.clone(),
            config_path,
        },
    ));

    let mut ops = Service::new(
        "harp ops".to_string(),
        HttpServer::new_app(OpsApp::new(state.clone())),
    );
    ops.add_tcp(&ops_addr);
    server.add_service(ops);
    Ok(server)
}
