//! The tunnel's TLS server configuration (spec §2.3): HaRP's certificates in
//! `$HP_CERTS_DIR/frp/`, mutual TLS when TLS is on.
//!
//! * TLS on (default): `server.crt`/`server.key` are served and every client must present a
//!   certificate chaining to `ca.crt` (frps with `trustedCaFile`; no name checks on the client
//!   certificate, like Go's `RequireAndVerifyClientCert`).
//! * `HP_FRP_DISABLE_TLS=true`: plain clients are accepted, and TLS clients too (frpc 0.61.1
//!   enables TLS by default), without client certificates: they get `server.crt`/`server.key`
//!   when those are usable, else, as from frps, a self-signed certificate made in memory at
//!   start (frpc without `trustedCaFile` accepts any; nothing is written to disk).
//!
//! Missing or broken files are not fatal at start (the gateway must still come up); they are
//! looked for again, at most every `CERT_RETRY_INTERVAL`, when a TLS client arrives.
//! This module must never log key material, and never accept a client certificate that does
//! not chain to the CA while TLS is on.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustls::pki_types::PrivateKeyDer;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;

use super::limits::CERT_RETRY_INTERVAL;
use crate::tunnel::pem::{read_certs, read_key, read_roots};

pub const CA_FILE: &str = "ca.crt";
pub const CERT_FILE: &str = "server.crt";
pub const KEY_FILE: &str = "server.key";

/// The certificate directory inside `$HP_CERTS_DIR`.
pub fn frp_dir(certs_dir: &Path) -> PathBuf {
    certs_dir.join("frp")
}

pub struct TlsSetup {
    /// TLS required, with client certificates (`HP_FRP_DISABLE_TLS` unset).
    forced: bool,
    dir: PathBuf,
    loaded: Mutex<Loaded>,
    /// TLS optional: what TLS clients get while the files are missing or unusable.
    made_up: Option<Arc<ServerConfig>>,
}

struct Loaded {
    config: Option<Arc<ServerConfig>>,
    last_attempt: Option<Instant>,
}

impl TlsSetup {
    /// Loads the certificates now (logging what is missing); never fails.
    pub fn new(certs_dir: &Path, forced: bool) -> TlsSetup {
        let made_up = if forced {
            None
        } else {
            self_signed()
                .map_err(|e| log::error!("tunnel: {e}; TLS clients need server.crt/server.key"))
                .ok()
                .map(Arc::new)
        };
        let setup = TlsSetup {
            forced,
            dir: frp_dir(certs_dir),
            loaded: Mutex::new(Loaded {
                config: None,
                last_attempt: None,
            }),
            made_up,
        };
        let _ = setup.server_config();
        setup
    }

    /// Whether plain (non-TLS) clients are refused.
    pub fn forced(&self) -> bool {
        self.forced
    }

    /// Settings for [`TlsSetup::new`] from the configuration.
    pub fn from_settings(settings: &crate::config::Settings) -> TlsSetup {
        TlsSetup::new(&settings.certs_dir, !settings.frp_disable_tls)
    }

    /// SIGHUP: reads the files again for the connections that come next; on failure the
    /// certificates in use stay.
    pub fn reload(&self) -> Result<(), String> {
        let config = Arc::new(load(&self.dir, self.forced)?);
        let mut loaded = self
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loaded.config = Some(config);
        loaded.last_attempt = Some(Instant::now());
        Ok(())
    }

    /// The rustls configuration; while the files are missing or invalid, `None` when TLS is
    /// forced, else the self-signed one made at start.
    pub fn server_config(&self) -> Option<Arc<ServerConfig>> {
        let mut loaded = self
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(config) = &loaded.config {
            return Some(config.clone());
        }
        let now = Instant::now();
        if loaded
            .last_attempt
            .is_some_and(|t| now.duration_since(t) < CERT_RETRY_INTERVAL)
        {
            return self.made_up.clone();
        }
        loaded.last_attempt = Some(now);
        match load(&self.dir, self.forced) {
            Ok(config) => {
                log::info!(
                    "tunnel: TLS certificates loaded from {} ({})",
                    self.dir.display(),
                    if self.forced {
                        "TLS required, client certificates verified against ca.crt"
                    } else {
                        "TLS optional, no client certificates"
                    }
                );
                let config = Arc::new(config);
                loaded.config = Some(config.clone());
                Some(config)
            }
            Err(e) if self.forced => {
                log::error!(
                    "tunnel: TLS is on (HP_FRP_DISABLE_TLS is not true) but the certificates \
                     cannot be used, so every tunnel client is refused: {e}"
                );
                None
            }
            Err(e) if self.made_up.is_some() => {
                log::info!(
                    "tunnel: TLS clients get a self-signed certificate made at start, as from \
                     frps ({e})"
                );
                self.made_up.clone()
            }
            Err(e) => {
                log::info!("tunnel: TLS clients will be refused: {e}");
                None
            }
        }
    }
}

/// frps' answer to a TLS client when TLS is optional and no certificate is configured: a
/// certificate made up at start (ECDSA P-256, name `harp.nc`), no client certificates asked.
fn self_signed() -> Result<ServerConfig, String> {
    let made = rcgen::generate_simple_self_signed(vec![crate::certs::SERVER_NAME.to_string()])
        .map_err(|e| format!("cannot make a self-signed certificate: {e}"))?;
    let key = PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
    ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(vec![made.cert.der().clone()], key)
        .map_err(|e| format!("the self-signed certificate is unusable: {e}"))
}

fn load(dir: &Path, verify_clients: bool) -> Result<ServerConfig, String> {
    let chain = read_certs(&dir.join(CERT_FILE))?;
    let key = read_key(&dir.join(KEY_FILE))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let builder = if verify_clients {
        let ca_path = dir.join(CA_FILE);
        let roots = Arc::new(read_roots(&ca_path)?);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| format!("client verification with {}: {e}", ca_path.display()))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    builder.with_single_cert(chain, key).map_err(|e| {
        format!(
            "{} and {} do not form a usable certificate and key: {e}",
            dir.join(CERT_FILE).display(),
            dir.join(KEY_FILE).display()
        )
    })
}
