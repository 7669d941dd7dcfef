//! Assembles the Pingora `Server`: the ExApp proxy (HTTP, and HTTPS when a certificate exists)
//! and the ops listener, all sharing one `AppState`.

use crate::config::Settings;
use crate::gateway::admission::Admission;
use crate::gateway::https::ReloadableCert;
use crate::gateway::listener::{GatewayApp, GatewayListener};
use crate::gateway::Gateway;
pub use crate::listeners::listeners;
use crate::listeners::Listener;
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

/// Binds each listener once before Pingora does. Pingora retries a taken port for about 30 s,
/// then panics in that service's thread while the rest of the process runs on; this names the
/// setting and the address at once instead, so `main` can exit 1 as HAProxy does.
/// (`std`'s listener sets `SO_REUSEADDR`, as Pingora's does, so only a real listener clashes.)
fn check_binds(listeners: &[Listener]) -> Result<(), String> {
    for l in listeners {
        if let Err(e) = std::net::TcpListener::bind(l.addr) {
            return Err(match e.kind() {
                std::io::ErrorKind::AddrInUse => format!("{l} is in use"),
                std::io::ErrorKind::PermissionDenied => format!(
                    "{l} cannot be bound: {e} (ports below 1024 need root or \
                     CAP_NET_BIND_SERVICE)"
                ),
                _ => format!("{l} cannot be bound: {e}"),
            });
        }
    }
    Ok(())
}

/// Start-up lines shown at every log level (the default, warning, hides info): written through
/// the logger itself, whose own filter passes everything, past `log`'s global level.
fn announce(args: std::fmt::Arguments<'_>) {
    log::logger().log(
        &log::Record::builder()
            .level(log::Level::Info)
            .target("harp")
            .args(args)
            .build(),
    );
}

/// Should a listener still fail in Pingora (its port taken between our check and its bind),
/// its thread panics with "Failed to build listeners"; end the process then, in one line,
/// rather than run on without it.
fn exit_when_a_listener_fails() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("Failed to build listeners") {
            eprintln!("harp: {}", message.replace(['\n', '\r'], " "));
            std::process::exit(1);
        }
        default(info);
    }));
}

/// `config_path` is the `--config` argument, read again on SIGHUP.
pub fn build(settings: Settings, config_path: Option<PathBuf>) -> Result<Server, String> {
    let listeners = listeners(&settings);
    check_binds(&listeners)?;
    exit_when_a_listener_fails();
    let https_cert = settings.certs_dir.join("cert.pem");
    let threads = settings.threads;
    let (https_addr, ops_addr) = (
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
        &state.settings,
        state.tunnel_admission(),
        state.tunnels.clone(),
        tunnel_tls.clone(),
    ));

    let client_timeout = state.settings.timeout_client;
    let mut gateway =
        pingora::proxy::HttpProxy::new(Gateway::new(state.clone()), server.configuration.clone());
    gateway.handle_init_modules();
    let max_connections = fd_limit::connections_within(state.settings.max_connections);
    let admission = Admission::new(max_connections, state.metrics.clone());
    let app = GatewayApp::new(gateway, client_timeout);
    // `listeners()` decided which gateway listeners exist (HTTPS: when cert.pem is there);
    // serve exactly those.
    let of = |setting: &str| listeners.iter().find(|l| l.setting == setting).cloned();
    let https = if let Some(https_listener) = of("HP_EXAPPS_HTTPS_ADDRESS") {
        let cert = Arc::new(ReloadableCert::new(&https_cert)?);
        // The resolver replaces the paths, so the certificate can be swapped on SIGHUP.
        let mut tls =
            TlsSettings::intermediate("", "").map_err(|e| format!("cannot set up HTTPS: {e}"))?;
        tls.set_cert_resolver(cert.clone());
        // The handshake is the listener's, bounded by HP_TIMEOUT_CLIENT.
        server.add_service(GatewayListener::new(
            https_listener,
            app.clone(),
            Some(tls.build()),
            admission.clone(),
        ));
        log::info!(
            "HTTPS listener on {https_addr} with {}",
            https_cert.display()
        );
        Some(cert)
    } else {
        None
    };
    if let Some(http_listener) = of("HP_EXAPPS_ADDRESS") {
        server.add_service(GatewayListener::new(http_listener, app, None, admission));
    }
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

    let watched = listeners
        .iter()
        .filter(|l| l.setting != "HP_OPS_ADDRESS")
        .cloned()
        .collect();
    let mut ops = Service::new(
        "harp ops".to_string(),
        HttpServer::new_app(OpsApp::new(state.clone()).watching(watched)),
    );
    ops.add_tcp(&ops_addr);
    server.add_service(ops);
    for l in &listeners {
        announce(format_args!(
            "listening on {}://{} ({})",
            l.scheme, l.addr, l.setting
        ));
    }
    Ok(server)
}

/// The file descriptors the connection limit needs, as HAProxy sizes its own from `maxconn`.
mod fd_limit {
    /// Descriptors for all but the gateway's connections: the tunnel's (at most 2,048 before
    /// login, more once logged in), listeners, Nextcloud, Docker and Kubernetes calls.
    const RESERVED: u64 = 2560;
    /// A gateway connection holds its client's socket and, while proxied, one to the ExApp.
    const PER_CONNECTION: u64 = 2;

    /// Raises the soft descriptor limit as far as `HP_MAX_CONNECTIONS` needs (and the hard
    /// limit allows), and returns how many connections fit: `max`, or fewer, with a warning,
    /// when the hard limit is too low. Without this, at the limit every accept fails with
    /// "Too many open files" and new clients hang instead of being refused.
    pub fn connections_within(max: usize) -> usize {
        let want = max as u64 * PER_CONNECTION + RESERVED;
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return max;
        }
        if limit.rlim_cur < want {
            let raised = libc::rlimit {
                rlim_cur: want.min(limit.rlim_max),
                rlim_max: limit.rlim_max,
            };
            // SAFETY: setrlimit reads the struct it is given.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit = raised;
            }
        }
        fitting(max, limit.rlim_cur)
    }

    fn fitting(max: usize, descriptors: u64) -> usize {
        let want = max as u64 * PER_CONNECTION + RESERVED;
        if descriptors >= want {
            return max;
        }
        let fit = (descriptors.saturating_sub(RESERVED) / PER_CONNECTION).max(1) as usize;
        log::warn!(
            "HP_MAX_CONNECTIONS={max} needs {want} file descriptors but the limit is \
             {descriptors} (ulimit -n; with Docker: --ulimit nofile=...): the gateway holds at \
             most {fit} connections"
        );
        fit
    }

    #[cfg(test)]
    mod tests {
        use super::fitting;

        #[test]
        fn a_low_descriptor_limit_lowers_the_connection_limit() {
            assert_eq!(fitting(8192, 1_048_576), 8192);
            assert_eq!(fitting(8192, 2 * 8192 + 2560), 8192);
            assert_eq!(fitting(8192, 4560), 1000);
            assert_eq!(fitting(8192, 1024), 1);
        }
    }
}
